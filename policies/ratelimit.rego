# Rate limits (package mcp.firewall; adds `deny` reasons).
#
# The proxy adds `input.rate`, counting this principal's PRIOR calls:
#
#   {"principal_tool_last_minute": N,   same principal, same server and tool
#    "principal_tool_last_hour": N,
#    "principal_last_minute": N}        same principal, any tool
#
# A call is denied when a count has already reached its limit, so with a
# limit of 30 the 31st call in a minute is the first refused. Limits come
# from data.mcp_firewall.ratelimit; a missing key falls back to
# `ratelimit_defaults` below (kept equal to policies/data.json by a test).
#
# When `input.rate` (or one counter) is absent these rules do nothing: the
# counters are the proxy's job, and a policy cannot count calls itself.
# Reasons name the principal, the tool and the limit; no arguments.
#
# Adopt: copy ratelimit.rego, ratelimit_test.rego and the
# `mcp_firewall.ratelimit` key of data.json.
package mcp.firewall

ratelimit_defaults := {
	"per_tool_per_minute": 30,
	"per_tool_per_hour": 300,
	"per_principal_per_minute": 120,
}

ratelimit_limits := object.union(ratelimit_defaults, object.get(data, ["mcp_firewall", "ratelimit"], {}))

# One rule per counter. Each limit is a rule of its own, so a firewall that
# knows the limits at load writes each one into its rule as a number: a call
# then costs each rule one lookup and one comparison (a loop over a table of
# counters cost four times as much per decision; docs/performance.md).
ratelimit_per_tool_per_minute := ratelimit_limits.per_tool_per_minute

ratelimit_per_tool_per_hour := ratelimit_limits.per_tool_per_hour

ratelimit_per_principal_per_minute := ratelimit_limits.per_principal_per_minute

ratelimit_target := sprintf("%s on server %s", [input.tool.name, input.server]) if input.tool.name

ratelimit_target := sprintf("%s on server %s", [input.method, input.server]) if not input.tool.name

ratelimit_reason(n, calls, limit) := sprintf(
	"rate limit: %s already made %d %s (limit %d; %s)",
	[object.get(input, ["principal", "id"], "unknown principal"), n, calls, limit, ratelimit_target],
)

deny contains reason if {
	n := input.rate.principal_tool_last_minute
	is_number(n)
	n >= ratelimit_per_tool_per_minute
	reason := ratelimit_reason(n, "calls to this tool in the last minute", ratelimit_per_tool_per_minute)
}

deny contains reason if {
	n := input.rate.principal_tool_last_hour
	is_number(n)
	n >= ratelimit_per_tool_per_hour
	reason := ratelimit_reason(n, "calls to this tool in the last hour", ratelimit_per_tool_per_hour)
}

deny contains reason if {
	n := input.rate.principal_last_minute
	is_number(n)
	n >= ratelimit_per_principal_per_minute
	reason := ratelimit_reason(n, "calls in the last minute", ratelimit_per_principal_per_minute)
}
