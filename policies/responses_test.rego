# Tests for responses.rego.
package mcp.firewall_test

import data.mcp.firewall

response(findings) := {
	"phase": "response",
	"method": "tools/call",
	"server": "x",
	"tool": {"name": "read", "annotations": {}},
	"arguments": {},
	"result": {"content": [{"type": "text", "text": "..."}], "findings": findings},
}

test_secrets_redacted if {
	r := response([{"kind": "aws_access_key", "path": "/content/0/text"}, {"kind": "private_key", "path": "/content/0/text"}])
	firewall.redact == {"aws_access_key", "private_key"} with input as r
	count(firewall.warn) == 0 with input as r
}

test_high_entropy_only_reported if {
	count(firewall.redact) == 0 with input as response([{"kind": "high_entropy", "path": "/content/0/text"}])
}

test_injection_marked if {
	count(firewall.warn) == 1 with input as response([{"kind": "prompt_injection", "path": "/content/0/text"}])
}

test_nothing_at_call_time if {
	call := {"method": "tools/call", "server": "x", "tool": {"name": "read", "annotations": {}}, "arguments": {}}
	count(firewall.redact) == 0 with input as call
	count(firewall.warn) == 0 with input as call
}
