# Tests for timewindow.rego (working hours from data.json: Mon-Fri 8-18 UTC).
package mcp.firewall_test

import data.mcp.firewall

# The window is off by default (data.json); these tests turn it on.
on := object.union(data.mcp_firewall.timewindow, {"enabled": true})

# 2026-11-23 is a Monday.
at(tool, annotations, rfc3339) := {
	"method": "tools/call",
	"server": "fs",
	"server_trusted": true,
	"tool": {"name": tool, "annotations": annotations},
	"arguments": {},
	"time": {"rfc3339": rfc3339, "unix": time.parse_rfc3339_ns(rfc3339) / 1000000000},
}

test_night_write_held if {
	call := at("write_file", {"destructiveHint": true}, "2026-11-23T03:00:00Z")
	reasons := firewall.approve with input as call with data.mcp_firewall.timewindow as on
	reasons["tool write_file is not read-only and it is Monday 3:xx UTC, outside working hours (Monday, Tuesday, Wednesday, Thursday, Friday, 8:00-18:00 UTC)"]
	count(reasons) == 2
}

test_daytime_write_only_held_for_being_destructive if {
	call := at("write_file", {"destructiveHint": true}, "2026-11-23T10:00:00Z")
	firewall.approve == {"tool write_file on server fs is marked destructive"} with input as call with data.mcp_firewall.timewindow as on
}

test_end_hour_is_exclusive if {
	count(firewall.approve) == 0 with input as at("touch", {}, "2026-11-23T17:59:59Z") with data.mcp_firewall.timewindow as on
	count(firewall.approve) == 1 with input as at("touch", {}, "2026-11-23T18:00:00Z") with data.mcp_firewall.timewindow as on
}

test_weekend_held if {
	count(firewall.approve) == 1 with input as at("touch", {}, "2026-11-28T12:00:00Z") with data.mcp_firewall.timewindow as on
}

test_read_only_any_time_allowed if {
	call := at("read_file", {"readOnlyHint": true}, "2026-11-28T03:00:00Z")
	count(firewall.approve) == 0 with input as call with data.mcp_firewall.timewindow as on
	firewall.allow with input as call with data.mcp_firewall.timewindow as on
}

test_rfc3339_alone_is_enough if {
	call := json.remove(at("touch", {}, "2026-11-23T03:00:00Z"), ["time/unix"])
	count(firewall.approve) == 1 with input as call with data.mcp_firewall.timewindow as on
}

test_no_time_does_nothing if {
	count(firewall.approve) == 0 with input as {"method": "tools/call", "server": "fs", "tool": {"name": "touch", "annotations": {}}, "arguments": {}} with data.mcp_firewall.timewindow as on
}

test_builtin_defaults_match_data_json if {
	firewall.timewindow_defaults == data.mcp_firewall.timewindow
}

test_off_by_default if {
	call := {
		"method": "tools/call", "server": "fs", "tool": {"name": "touch", "annotations": {}}, "arguments": {},
		"time": {"rfc3339": "2026-11-28T03:00:00Z", "unix": 1795834800},
	}
	count(firewall.approve) == 0 with input as call
}
