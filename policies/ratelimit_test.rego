# Tests for ratelimit.rego.
package mcp.firewall_test

import data.mcp.firewall

rated(rate) := {
	"method": "tools/call",
	"server": "fs",
	"server_trusted": true, "tool": {"name": "read_file", "annotations": {"readOnlyHint": true}},
	"arguments": {},
	"principal": {"id": "alice"},
	"rate": rate,
}

test_under_limits_allowed if {
	call := rated({"principal_tool_last_minute": 29, "principal_tool_last_hour": 299, "principal_last_minute": 119})
	count(firewall.deny) == 0 with input as call
	firewall.allow with input as call
}

test_per_tool_minute_limit if {
	reasons := firewall.deny with input as rated({"principal_tool_last_minute": 30})
	reasons == {"rate limit: alice already made 30 calls to this tool in the last minute (limit 30; read_file on server fs)"}
}

test_hour_and_principal_limits if {
	count(firewall.deny) == 2 with input as rated({"principal_tool_last_hour": 300, "principal_last_minute": 500})
}

test_no_rate_document_does_nothing if {
	call := json.remove(rated({}), ["rate"])
	count(firewall.deny) == 0 with input as call
}

test_limits_from_data if {
	count(firewall.deny) == 1 with input as rated({"principal_tool_last_minute": 3}) with data.mcp_firewall.ratelimit as {"per_tool_per_minute": 3}
	count(firewall.deny) == 0 with input as rated({"principal_tool_last_hour": 299}) with data.mcp_firewall.ratelimit as {"per_tool_per_minute": 3}
}

test_builtin_defaults_match_data_json if {
	firewall.ratelimit_defaults == data.mcp_firewall.ratelimit
}
