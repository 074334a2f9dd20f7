# Filesystem guard rails (package mcp.firewall; adds `deny` reasons).
#
# 1. Tools whose names look like writes may only touch paths under one of
#    data.mcp_firewall.filesystem.allowed_roots (policies/data.json).
# 2. No tool may be given a path with a `..` segment (path traversal).
#
# The path-like arguments inspected are `path`, `source`, `destination` and
# every string in `paths`.
package mcp.firewall

# The roots writes are allowed under. A missing setting means no root at all,
# so every write is denied (fail closed), never "anything goes".
allowed_roots := object.get(data, ["mcp_firewall", "filesystem", "allowed_roots"], [])

# A tool "looks like a write" when its name starts with one of these verbs,
# followed by `_` or nothing: write_file, edit_file, create_directory,
# move_file, delete_file, remove, ...
write_tool if regex.match(`^(write|edit|create|move|delete|remove|rename|append|copy|mkdir|rm)(_|$)`, input.tool.name)

path_keys := {"path", "source", "destination"}

path_args contains p if {
	some key in path_keys
	p := input.arguments[key]
	is_string(p)
}

path_args contains p if {
	is_array(input.arguments.paths)
	some p in input.arguments.paths
	is_string(p)
}

# `p` is `root` itself or inside it. Matching on "<root>/" as a prefix keeps
# `/srv` from admitting `/srv2`; trimming a trailing "/" first lets a root be
# written as "/srv/" (and makes "/" admit every absolute path).
under_root(p, root) if p == root

under_root(p, root) if startswith(p, concat("", [trim_suffix(root, "/"), "/"]))

under_any_root(p) if {
	some root in allowed_roots
	under_root(p, root)
}

deny contains reason if {
	input.method == "tools/call"
	write_tool
	some p in path_args
	not under_any_root(p)
	reason := sprintf("%s may not write to %s: it is outside the allowed roots (%s)", [input.tool.name, p, concat(", ", allowed_roots)])
}

# Any `..` segment, with either slash style, for every tool (reads included).
deny contains reason if {
	input.method == "tools/call"
	some p in path_args
	".." in split(replace(p, "\\", "/"), "/")
	reason := sprintf("path %s contains a '..' segment (path traversal)", [p])
}
