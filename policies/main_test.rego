# Tests for main.rego. Run with `mcp-firewall policy test policies/`.
package mcp.firewall_test

import data.mcp.firewall

read_only_call := {
	"method": "tools/call",
	"server": "fs",
	"server_trusted": true, "tool": {"name": "read_file", "annotations": {"readOnlyHint": true}},
	"arguments": {"path": "/srv/notes.txt"},
}

destructive_call := {
	"method": "tools/call",
	"server": "fs",
	"tool": {"name": "write_file", "annotations": {"destructiveHint": true}},
	"arguments": {"path": "/srv/notes.txt", "content": "hello"},
}

test_read_only_tool_allowed if {
	firewall.allow with input as read_only_call
	count(firewall.deny) == 0 with input as read_only_call
	count(firewall.approve) == 0 with input as read_only_call
}

test_destructive_tool_inside_roots_held if {
	reasons := firewall.approve with input as destructive_call
	reasons == {"tool write_file on server fs is marked destructive"}
	count(firewall.deny) == 0 with input as destructive_call
}

test_contradictory_annotations_held if {
	call := json.patch(destructive_call, [{"op": "add", "path": "/tool/annotations/readOnlyHint", "value": true}])
	count(firewall.approve) == 1 with input as call
}

# A tool with no annotations gets no rule at all: the firewall's default
# (hold for approval) applies.
test_unannotated_tool_not_allowed if {
	call := {"method": "tools/call", "server": "x", "tool": {"name": "run", "annotations": {}}, "arguments": {}}
	not firewall.allow with input as call
	count(firewall.approve) == 0 with input as call
	count(firewall.deny) == 0 with input as call
}

test_list_methods_allowed if {
	every method in {"tools/list", "resources/list", "prompts/list"} {
		firewall.allow with input as {"method": method, "arguments": {}}
	}
}

test_read_methods_allowed if {
	firewall.allow with input as {"method": "resources/read", "resource": {"uri": "file:///srv/a.txt"}, "arguments": {}}
	firewall.allow with input as {"method": "prompts/get", "prompt": {"name": "greet"}, "arguments": {"name": "bob"}}
}

test_nothing_hidden_by_default if {
	firewall.hide == false with input as {"method": "tools/list", "tool": {"name": "debug_dump"}, "arguments": {}}
}

# The upstream's word is not enough: a read-only claim from a server whose
# annotations are not trusted gets no rule, so the default holds the call.
test_read_only_claim_from_an_untrusted_server_held if {
	call := {"method": "tools/call", "server": "db", "tool": {"name": "drop_database", "description": "Irreversibly drops the production database", "annotations": {"readOnlyHint": true}}, "arguments": {}}
	not firewall.allow with input as call
	not firewall.allow with input as json.patch(call, [{"op": "add", "path": "/server_trusted", "value": false}])
	firewall.allow with input as json.patch(call, [{"op": "add", "path": "/server_trusted", "value": true}])
}

test_changed_tool_held_naming_the_fields if {
	call := {"method": "tools/call", "server": "db", "server_trusted": true,
		"tool": {"name": "query", "annotations": {"readOnlyHint": true},
			"pin": {"status": "changed", "changed_fields": ["description", "annotations"]}},
		"arguments": {}}
	firewall.approve == {"tool query on server db changed since it was pinned (description, annotations); approving pins the new definition"} with input as call
}

test_read_only_tool_approved_once_allowed_on_an_untrusted_server if {
	call := {"method": "tools/call", "server": "db",
		"tool": {"name": "query", "annotations": {"readOnlyHint": true},
			"pin": {"status": "pinned", "approved": true}},
		"arguments": {}}
	firewall.allow with input as call
	not firewall.allow with input as json.patch(call, [{"op": "replace", "path": "/tool/pin/approved", "value": false}])
	not firewall.allow with input as json.patch(call, [{"op": "replace", "path": "/tool/pin/status", "value": "new"}])
}

poisoned_call := {"method": "tools/call", "server": "math", "server_trusted": true,
	"tool": {"name": "add", "annotations": {"readOnlyHint": true},
		"findings": [{"kind": "hidden_instructions", "path": "/description"}, {"kind": "file_access_instruction", "path": "/description"}]},
	"arguments": {}}

test_poisoned_tool_held if {
	firewall.approve == {"the definition of tool add on server math looks poisoned (file_access_instruction, hidden_instructions)"} with input as poisoned_call
}

# That a call to a flagged tool runs once a human approved its exact
# definition (input.tool.pin approved) is tested end to end, in
# tests/hostile_upstream.rs (rug_pulls_are_held_until_a_human_approves_the_new_definition).

task_result := {
	"method": "tasks/result",
	"server": "research",
	"tool": {"name": "simulate-research-query", "annotations": {}},
	"task": {"id": "t-1"},
	"arguments": {},
}

test_task_methods_of_a_decided_call_allowed if {
	firewall.allow with input as task_result
	count(firewall.approve) == 0 with input as task_result
}

task_update := object.union(task_result, {
	"method": "tasks/update",
	"extra_params": {},
	"params": {"taskId": "t-1", "inputResponses": {"confirm": {"action": "accept"}}},
})

test_tasks_update_of_a_decided_call_allowed if {
	firewall.allow with input as task_update
	count(firewall.approve) == 0 with input as task_update
}
