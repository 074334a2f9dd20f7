# Tests for secrets.rego.
package mcp.firewall_test

import data.mcp.firewall

call_with(args) := {
	"method": "tools/call",
	"server": "notes",
	"server_trusted": true, "tool": {"name": "search_notes", "annotations": {"readOnlyHint": true}},
	"arguments": args,
}

test_private_key_in_arguments_denied if {
	key := "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----"
	reasons := firewall.deny with input as call_with({"query": key})
	reasons == {"arguments contain a private key"}
}

test_aws_key_nested_in_arguments_denied if {
	args := {"options": {"headers": ["x", "token AKIAIOSFODNN7EXAMPLE"]}}
	reasons := firewall.deny with input as call_with(args)
	reasons == {"arguments contain an AWS access key id"}
}

# Read-only does not beat deny: the firewall's precedence puts deny first.
test_read_only_tool_with_secret_is_still_denied if {
	input_doc := call_with({"query": "AKIAIOSFODNN7EXAMPLE"})
	firewall.allow with input as input_doc
	count(firewall.deny) == 1 with input as input_doc
}

test_public_key_not_denied if {
	count(firewall.deny) == 0 with input as call_with({"query": "-----BEGIN PUBLIC KEY-----"})
	count(firewall.deny) == 0 with input as call_with({"query": "akia lowercase is not a key"})
}

test_secret_resource_denied if {
	read := {"method": "resources/read", "server": "fs", "resource": {"uri": "file:///srv/Secrets/db.txt"}, "arguments": {}}
	reasons := firewall.deny with input as read
	reasons == {"resource file:///srv/Secrets/db.txt looks like a secret"}
}

test_ordinary_resource_allowed if {
	read := {"method": "resources/read", "server": "fs", "resource": {"uri": "file:///srv/readme.md"}, "arguments": {}}
	count(firewall.deny) == 0 with input as read
	firewall.allow with input as read
}

test_percent_encoded_secret_uri_denied if {
	read := {"method": "resources/read", "resource": {"uri": "evil://public/%73ecret", "uri_decoded": "evil://public/secret"}, "arguments": {}}
	count(firewall.deny) == 1 with input as read
}

# Among other strings, anywhere in a longer one: the plain "AKIA" test first
# keeps every key the pattern finds.
test_aws_key_found_among_other_strings if {
	args := {"a": "akiaiosfodnn7example", "b": ["x", {"c": "prefixAKIAIOSFODNN7EXAMPLEsuffix"}]}
	firewall.deny == {"arguments contain an AWS access key id"} with input as call_with(args)
	count(firewall.deny) == 0 with input as call_with({"a": "akiaiosfodnn7example", "b": "AKIA-not-a-key"})
}
