# Requests an upstream server sends the client (package mcp.firewall).
#
# `sampling/createMessage`, `elicitation/create` and `roots/list` reach the
# client only if the policy allows them; the input has
# `input.direction == "server_to_client"`, `input.server`, `input.method`, the
# request's `input.params`, and `input.caused_by` (the client call in flight
# to that server, when there is exactly one). Such a request cannot be held
# for a human (the server is waiting on it): `approve` refuses it.
#
# Allowed by default, except an elicitation that asks the user for a secret
# (a password, token, API key, ...): a server has no business collecting
# credentials through the model's client, and the request would not show in
# the tool call the user approved.
package mcp.firewall

allow if input.direction == "server_to_client"

# Words that mark a field as a secret, in its name, title or description.
secret_field_pattern := `(?i)(pass(word|wd|phrase|code)|secret|token|api[ _-]?key|private[ _-]?key|access[ _-]?key|credential|one[ _-]?time|\botp\b|\bpin\b|\bssn\b|credit[ _-]?card|\bcvv\b)`

deny contains reason if {
	input.direction == "server_to_client"
	input.method == "elicitation/create"
	some name, field in input.params.requestedSchema.properties
	secret_field(name, field)
	reason := sprintf("server %s asks the user for a secret (%s) through elicitation", [input.server, name])
}

secret_field(name, _) if regex.match(secret_field_pattern, name)

secret_field(_, field) if regex.match(secret_field_pattern, field.title)

secret_field(_, field) if regex.match(secret_field_pattern, field.description)
