# Secret guard rails (package mcp.firewall; adds `deny` reasons).
#
# 1. Deny any call whose arguments contain obvious key material: a PEM private
#    key block, or an AWS access key id.
# 2. Deny reading, subscribing to or completing a resource whose URI mentions
#    "secret".
#
# These are cheap tripwires for accidents, not a data-loss-prevention system.
# Reasons never repeat the secret itself: they end up in the audit log and in
# front of the model.
package mcp.firewall

# Every string anywhere in the arguments, however deeply nested.
argument_strings contains s if {
	walk(input.arguments, [_, s])
	is_string(s)
}

deny contains "arguments contain a private key" if {
	some s in argument_strings
	contains(s, "-----BEGIN")
	contains(s, "PRIVATE KEY-----")
}

deny contains "arguments contain an AWS access key id" if {
	some s in argument_strings
	contains(s, "AKIA") # cheap test first: every match holds it
	regex.match(`AKIA[0-9A-Z]{16}`, s)
}

resource_methods := {"resources/read", "resources/subscribe", "resources/unsubscribe", "completion/complete"}

# The URI as written and percent-decoded (the firewall's `uri_decoded`), so
# `evil://public/%73ecret` is read as the `secret` a server would serve.
secret_uri_forms contains lower(input.resource.uri)

secret_uri_forms contains input.resource.uri_decoded

deny contains reason if {
	input.method in resource_methods
	some form in secret_uri_forms
	contains(form, "secret")
	reason := sprintf("resource %s looks like a secret", [input.resource.uri])
}
