# Working hours (package mcp.firewall; adds `approve` reasons). OFF unless
# data.mcp_firewall.timewindow.enabled is true (policies/data.json).
#
# A call to a tool that does not declare itself read-only (no
# `readOnlyHint: true`), made outside working hours, is HELD for a human:
# nobody should discover at 9 am what an agent deleted at 3 am.
#
# Working hours come from data.mcp_firewall.timewindow:
#   enabled     true to hold calls outside the window (default false)
#   days        weekday names, e.g. ["Monday", ..., "Friday"]
#   start_hour  first hour inside the window (0-23, UTC)
#   end_hour    first hour outside it (1-24, UTC); 8 and 18 mean 08:00-17:59
# All times are UTC: there is no timezone setting. A missing key falls back to
# `timewindow_defaults` (kept equal to policies/data.json by a test).
#
# The time is the request's own `input.time` (unix seconds, else rfc3339),
# never time.now_ns(), so a decision replays the same way. When neither is
# present the rule does nothing.
#
# Adopt: copy timewindow.rego, timewindow_test.rego and the
# `mcp_firewall.timewindow` key of data.json.
package mcp.firewall

timewindow_defaults := {
	"enabled": false,
	"days": ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday"],
	"start_hour": 8,
	"end_hour": 18,
}

timewindow_settings := object.union(timewindow_defaults, object.get(data, ["mcp_firewall", "timewindow"], {}))

timewindow_now_ns := input.time.unix * 1000000000 if is_number(input.time.unix)

timewindow_now_ns := time.parse_rfc3339_ns(input.time.rfc3339) if {
	not is_number(input.time.unix)
	is_string(input.time.rfc3339)
}

timewindow_day := time.weekday(timewindow_now_ns)

timewindow_hour := time.clock(timewindow_now_ns)[0]

timewindow_inside if {
	timewindow_day in timewindow_settings.days
	timewindow_hour >= timewindow_settings.start_hour
	timewindow_hour < timewindow_settings.end_hour
}

approve contains reason if {
	timewindow_settings.enabled == true
	input.method == "tools/call"
	not trusted_read_only
	timewindow_now_ns
	not timewindow_inside
	reason := sprintf("tool %s is not read-only and it is %s %d:xx UTC, outside working hours (%s, %d:00-%d:00 UTC)", [input.tool.name, timewindow_day, timewindow_hour, concat(", ", timewindow_settings.days), timewindow_settings.start_hour, timewindow_settings.end_hour])
}
