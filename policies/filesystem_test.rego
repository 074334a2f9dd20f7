# Tests for filesystem.rego (roots come from data.json: /tmp and /srv).
package mcp.firewall_test

import data.mcp.firewall

write(args) := {
	"method": "tools/call",
	"server": "fs",
	"tool": {"name": "write_file", "annotations": {"destructiveHint": true}},
	"arguments": args,
}

test_write_inside_root_not_denied if {
	count(firewall.deny) == 0 with input as write({"path": "/srv/app/config.txt"})
	count(firewall.deny) == 0 with input as write({"path": "/tmp"})
}

test_write_outside_roots_denied if {
	reasons := firewall.deny with input as write({"path": "/etc/passwd"})
	reasons == {"write_file may not write to /etc/passwd: it is outside the allowed roots (/tmp, /srv)"}
}

test_root_prefix_is_not_a_root if {
	count(firewall.deny) == 1 with input as write({"path": "/srv2/x"})
	count(firewall.deny) == 1 with input as write({"path": "/tmpfile"})
}

test_relative_path_denied if {
	count(firewall.deny) == 1 with input as write({"path": "notes.txt"})
}

test_move_checks_source_and_destination if {
	call := {"method": "tools/call", "server": "fs", "tool": {"name": "move_file"}, "arguments": {"source": "/srv/a", "destination": "/home/a"}}
	reasons := firewall.deny with input as call
	count(reasons) == 1
	some r in reasons
	contains(r, "/home/a")
}

test_paths_array_checked if {
	call := {"method": "tools/call", "server": "fs", "tool": {"name": "delete_files"}, "arguments": {"paths": ["/tmp/a", "/var/b"]}}
	reasons := firewall.deny with input as call
	count(reasons) == 1
}

test_read_tool_outside_roots_not_denied if {
	call := {"method": "tools/call", "server": "fs", "server_trusted": true, "tool": {"name": "read_file", "annotations": {"readOnlyHint": true}}, "arguments": {"path": "/etc/hosts"}}
	count(firewall.deny) == 0 with input as call
	firewall.allow with input as call
}

test_traversal_denied_for_any_tool if {
	call := {"method": "tools/call", "server": "fs", "server_trusted": true, "tool": {"name": "read_file", "annotations": {"readOnlyHint": true}}, "arguments": {"path": "/srv/../etc/shadow"}}
	reasons := firewall.deny with input as call
	reasons == {"path /srv/../etc/shadow contains a '..' segment (path traversal)"}
}

test_dots_inside_a_name_are_not_traversal if {
	count(firewall.deny) == 0 with input as write({"path": "/srv/archive..old/x"})
}

test_roots_come_from_data if {
	count(firewall.deny) == 0 with input as write({"path": "/home/me/x"}) with data.mcp_firewall.filesystem.allowed_roots as ["/home/me"]
	count(firewall.deny) == 1 with input as write({"path": "/srv/x"}) with data.mcp_firewall.filesystem.allowed_roots as ["/home/me"]
}

test_trailing_slash_root if {
	count(firewall.deny) == 0 with input as write({"path": "/data/x"}) with data.mcp_firewall.filesystem.allowed_roots as ["/data/"]
}
