package mcp.firewall_test

import data.mcp.firewall

test_passes if firewall.allow with input as {"tool": {"name": "get_ticket"}}

test_fails_with_print if {
	print("tool is", "close_ticket")
	firewall.allow with input as {"tool": {"name": "close_ticket"}}
}
