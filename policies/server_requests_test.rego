# Tests for server_requests.rego.
package mcp.firewall_test

import data.mcp.firewall

elicit(properties) := {
	"direction": "server_to_client",
	"method": "elicitation/create",
	"server": "crm",
	"params": {"message": "Need details", "requestedSchema": {"type": "object", "properties": properties}},
}

test_sampling_allowed if {
	req := {"direction": "server_to_client", "method": "sampling/createMessage", "server": "x", "params": {}}
	firewall.allow with input as req
	count(firewall.deny) == 0 with input as req
}

test_roots_allowed if {
	req := {"direction": "server_to_client", "method": "roots/list", "server": "x", "params": {}}
	firewall.allow with input as req
}

test_plain_elicitation_allowed if {
	req := elicit({"name": {"type": "string", "title": "Your name"}, "keyboard": {"type": "string"}})
	count(firewall.deny) == 0 with input as req
}

test_elicitation_for_a_password_denied if {
	req := elicit({"pw": {"type": "string", "title": "Password"}})
	firewall.deny == {"server crm asks the user for a secret (pw) through elicitation"} with input as req
}

test_elicitation_for_an_api_key_denied if {
	count(firewall.deny) == 1 with input as elicit({"api_key": {"type": "string"}})
	count(firewall.deny) == 1 with input as elicit({"x": {"type": "string", "description": "Your GitHub token"}})
}

test_client_requests_are_not_allowed_by_the_server_rule if {
	req := {"direction": "client_to_server", "method": "tools/call", "server": "x", "tool": {"name": "run", "annotations": {}}, "arguments": {}}
	not firewall.allow with input as req
}
