# Network and data egress (package mcp.firewall; adds `approve` reasons).
#
# Data leaving through a tool is the classic exfiltration path, so these calls
# are HELD for a human (not denied: they are often legitimate):
#
# 1. tools whose names say they send data out: upload, send email/message,
#    post to a webhook, publish ...;
# 2. HTTP-request tools (`http_request`, `fetch`, `request` ... or any tool
#    with both `url` and `method` arguments) using a method other than GET,
#    HEAD or OPTIONS;
# 3. any call whose arguments, however deeply nested, contain an http(s) URL
#    whose host is not in data.mcp_firewall.egress.allowed_hosts. An entry
#    "example.com" admits exactly that host; ".example.com" admits its
#    subdomains. Hosts come from two readings, and either one holds the call:
#    the firewall's WHATWG parse of every network URL (`input.urls`, the host
#    Node or a browser would really contact, whatever the spelling:
#    `https:evil.example`, `https://evil.example\@127.0.0.1/`, ...) and a
#    plain pattern match over the strings (for inputs built by hand).
#
# A missing allowed_hosts list means no host is allowed (fail closed): every
# URL argument is held. Reasons name the tool, the HTTP method or the host,
# never the full URL (its query string may carry a token).
#
# Adopt: copy egress.rego, egress_test.rego and the `mcp_firewall.egress`
# key of data.json.
package mcp.firewall

egress_allowed_hosts := object.get(data, ["mcp_firewall", "egress", "allowed_hosts"], [])

# Every string anywhere in the arguments.
egress_strings contains s if {
	walk(input.arguments, [_, s])
	is_string(s)
}

# The host of every http(s) URL in the arguments: the authority without
# user info and port, lower-cased.
egress_hosts contains host if {
	some s in egress_strings
	# Every match holds "://": the plain test first spares the regex
	# search (regorus builds a fresh matcher for each one) on strings
	# without a URL, which is nearly all of them.
	contains(s, "://")
	some url in regex.find_n(`(?i)https?://[^/\s?#"'<>]+`, s, -1)
	authority := regex.replace(url, `(?i)^https?://`, "")
	parts := split(authority, "@")
	host_port := parts[count(parts) - 1]
	host := lower(split(host_port, ":")[0])
	host != ""
}

# The firewall's parse: the host each network URL really reaches.
egress_hosts contains url.host if {
	some url in input.urls
	url.host != ""
}

egress_host_allowed(host) if host in egress_allowed_hosts

egress_host_allowed(host) if {
	some entry in egress_allowed_hosts
	startswith(entry, ".")
	endswith(host, entry)
}

# Name words of tools that send data somewhere.
egress_sender if regex.match(`(^|_)(upload|send|email|mail|webhook|post|publish|tweet|share|notify)($|_)`, lower(input.tool.name))

egress_http_tool if regex.match(`(^|_)(http|https|fetch|request|curl|api)($|_)`, lower(input.tool.name))

egress_http_tool if {
	is_string(input.arguments.url)
	is_string(input.arguments.method)
}

egress_read_methods := {"GET", "HEAD", "OPTIONS"}

approve contains reason if {
	input.method == "tools/call"
	egress_sender
	reason := sprintf("tool %s sends data out (upload, message, email or webhook)", [input.tool.name])
}

approve contains reason if {
	input.method == "tools/call"
	egress_http_tool
	method := upper(input.arguments.method)
	not method in egress_read_methods
	reason := sprintf("tool %s makes an HTTP %s request", [input.tool.name, method])
}

approve contains reason if {
	input.method == "tools/call"
	some host in egress_hosts
	not egress_host_allowed(host)
	reason := sprintf("tool %s sends a request to %s, which is not in data.mcp_firewall.egress.allowed_hosts", [input.tool.name, host])
}
