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

# counter in input.rate -> [limit key, human wording]
ratelimit_checks := {
	"principal_tool_last_minute": ["per_tool_per_minute", "calls to this tool in the last minute"],
	"principal_tool_last_hour": ["per_tool_per_hour", "calls to this tool in the last hour"],
	"principal_last_minute": ["per_principal_per_minute", "calls in the last minute"],
}

ratelimit_target := sprintf("%s on server %s", [input.tool.name, input.server]) if input.tool.name

ratelimit_target := sprintf("%s on server %s", [input.method, input.server]) if not input.tool.name

deny contains reason if {
	some counter, check in ratelimit_checks
	n := input.rate[counter]
	is_number(n)
	limit := ratelimit_limits[check[0]]
	n >= limit
	reason := sprintf("rate limit: %s already made %d %s (limit %d; %s)", [object.get(input, ["principal", "id"], "unknown principal"), n, check[1], limit, ratelimit_target])
}
