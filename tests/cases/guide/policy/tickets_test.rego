package mcp.firewall_test

import data.mcp.firewall

close(by, reporter) := {
	"method": "tools/call",
	"tool": {"name": "close_ticket"},
	"arguments": {"reporter": reporter},
	"principal": {"id": by},
}

test_reporter_closes_without_asking if {
	count(firewall.approve) == 0 with input as close("alice", "alice")
}

test_others_are_held if {
	firewall.approve == {"bob may not close a ticket reported by someone else"} with input as close("bob", "alice")
}

test_protected_project if {
	call := {"method": "tools/call", "tool": {"name": "delete_ticket"}, "arguments": {"project": "SEC"}}
	firewall.deny == {"project SEC is protected"} with input as call
}
