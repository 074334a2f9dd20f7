# The decision rules of mcp-firewall (package mcp.firewall).
#
# The firewall evaluates this package once per request (once per item for
# list requests) and reads these rules (see docs/policy-input.md):
#
#   deny      set of strings  any member: refuse, with these reasons
#   approve   set of strings  any member: hold for a human, with these reasons
#   allow     boolean         true (and nothing in deny/approve): forward
#   hide      boolean         list requests: leave this item out of the list
#   message   string          optional model-facing text for a refusal
#   approval  object          optional obligations for a held call
#
# Precedence: deny > approve > allow > default. The default is to HOLD the call
# for a human, so a tool this file says nothing about is never run silently.
# Every file in this directory with `package mcp.firewall` adds to the same
# rules: filesystem.rego and secrets.rego add `deny` reasons.
package mcp.firewall

# The methods that list things. The firewall evaluates the policy once per
# listed item; `allow` keeps the item, `hide` removes it.
list_methods := {"tools/list", "resources/list", "resources/templates/list", "prompts/list"}

# Reading a resource, fetching a prompt, completing one of their arguments
# and (un)subscribing to a resource are allowed unless something denies them
# (secrets.rego denies resources whose URI looks like a secret).
read_methods := {
	"resources/read",
	"resources/subscribe",
	"resources/unsubscribe",
	"prompts/get",
	"completion/complete",
}

# Annotations are claims the upstream server makes about its own tools; a
# hostile server can mark `drop_database` read-only. They are believed only
# for servers configured with `trust_annotations = true` (`--trust-annotations`
# in the wrap form), which the firewall passes as `input.server_trusted`.
trusted_read_only if {
	input.server_trusted == true
	input.tool.annotations.readOnlyHint == true
}

# ... or for a tool whose definition a human approved once and that has not
# changed since (the firewall pins definitions: input.tool.pin).
trusted_read_only if {
	input.tool.pin.status == "pinned"
	input.tool.pin.approved == true
	input.tool.annotations.readOnlyHint == true
}

# Read-only tools of trusted servers run without asking; the deny rules in
# the other files still apply to them. On an untrusted server a read-only
# tool gets no rule here: the default holds it for a human.
allow if {
	input.method == "tools/call"
	trusted_read_only
}

allow if input.method in list_methods

allow if input.method in read_methods

# Task methods (MCP 2025-11-25, and tasks/update of the 2026-07-28 tasks
# extension): the firewall routes them only for tasks this session's own,
# already decided, tools/call created, to the upstream that created each;
# input.tool is that tool. Deny rules still apply; what a task returns goes
# through the response phase, and the input requests it carries are decided
# as server-to-client requests (input.direction == "server_to_client").
task_methods := {"tasks/get", "tasks/result", "tasks/cancel", "tasks/list", "tasks/update"}

allow if input.method in task_methods

# A tool whose definition changed since it was pinned (a "rug pull": same
# name, new description, schema or annotations) is held, naming what changed;
# the approver's approval pins the new definition.
approve contains reason if {
	input.method == "tools/call"
	input.tool.pin.status == "changed"
	reason := sprintf("tool %s on server %s changed since it was pinned (%s); approving pins the new definition", [input.tool.name, input.server, concat(", ", input.tool.pin.changed_fields)])
}

# A tool whose definition carries what tool poisoning looks like (hidden
# instructions, orders to read secret files or call other tools, invisible
# Unicode, base64 blobs, instructions about another server's tools) is held
# until a human approves a call to this exact definition (which pins it): the
# firewall's scan puts them in input.tool.findings.
approve contains reason if {
	input.method == "tools/call"
	count(input.tool.findings) > 0
	not approved_pin
	kinds := {f.kind | some f in input.tool.findings}
	reason := sprintf("the definition of tool %s on server %s looks poisoned (%s)", [input.tool.name, input.server, concat(", ", sort(kinds))])
}

# This exact definition was approved by a human (who was shown the findings).
approved_pin if {
	input.tool.pin.status == "pinned"
	input.tool.pin.approved == true
}

# A pin the firewall could not read is not a pin: hold.
approve contains reason if {
	input.method == "tools/call"
	input.tool.pin.status == "unknown"
	reason := sprintf("the pinned definition of tool %s could not be checked", [input.tool.name])
}

# Tools that declare themselves destructive are held for a human, even if
# they also (contradictorily) claim to be read-only: approve beats allow.
# (A tool with no annotations is held too, by the default; this rule only
# gives the reason a clearer wording.)
approve contains reason if {
	input.method == "tools/call"
	input.tool.annotations.destructiveHint == true
	reason := sprintf("tool %s on server %s is marked destructive", [input.tool.name, input.server])
}

# Nothing is hidden by default. To hide items from list answers, add rules
# such as:
#
#   hide if {
#   	input.method == "tools/list"
#   	startswith(input.tool.name, "debug_")
#   }
#
# A hidden item is neither listed nor callable: before deciding a call (or a
# prompts/get, resources/read, completion ...), the firewall evaluates the
# item's listing input (`input.method == "tools/list"` and so on) and refuses
# the call if `hide` is true there, whatever rule allows the call.
default hide := false
