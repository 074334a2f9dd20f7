# Claude Code's own tools (package mcp.firewall; adds `allow`, `deny` and
# `approve`), decided through `mcp-firewall hook claude-code`.
#
# The hook's input is a `tools/call`-shaped document with
#   input.method     "hook/PreToolUse"
#   input.server     "claude-code" (an MCP tool `mcp__srv__tool`: "srv")
#   input.tool.name  "Bash", "Edit", "Read", "WebFetch" ... (MCP: the tool)
#   input.arguments  the tool input Claude Code gives (file_path, command ...)
#   input.hook       {event, tool_name, tool_use_id, cwd, project_dir,
#                     permission_mode, builtin}
# (docs/claude-code.md has the whole shape).
#
# What this file decides, in the project (input.hook.project_dir, else the
# working directory):
#   allowed   reads inside the project; edits and writes inside the project
#             (not to the protected files below); harmless tools (TodoWrite,
#             Task, WebSearch ...); plain commands from `safe_commands`;
#             WebFetch of an allowed host; MCP tools when `mcp_tools` is
#             "proxy" (their servers run through `mcp-firewall run`, which
#             decides each call with the tool's real definition)
#   denied    reading or grepping secrets (~/.ssh, .env, private keys, cloud
#             credentials), in a tool's path or in a command; writes outside
#             the project; the shell rules' dangerous commands (shell.rego:
#             rm -rf /, curl | sh, mkfs, dd, fork bombs ...)
#   held      recursive deletes, force pushes, history rewrites, sudo,
#             publishing packages; changes to Claude Code's own settings,
#             hooks and MCP config, or to git hooks; a URL to a host not in
#             data.mcp_firewall.egress.allowed_hosts (egress.rego)
# Everything else gets no rule: the default hold, which the hook hands to
# Claude Code's own permission prompt (`--unmatched ask`, the default) or
# to an approver (`--unmatched hold`).
#
# Settings: data.mcp_firewall.claude_code (data.json):
#   safe_commands    command prefixes allowed when the command is one plain
#                    command (no ; & | < > $ ` or newline)
#   protected_paths  path patterns (regex) whose writes are held
#   mcp_tools        "proxy" (allow: the firewall decides them) or "hook"
#
# Adopt: copy claude_code.rego, claude_code_test.rego, shell.rego, egress.rego
# and the `mcp_firewall.claude_code` key of data.json.
package mcp.firewall

cc_settings := object.get(data, ["mcp_firewall", "claude_code"], {})

cc_hook if input.method == "hook/PreToolUse"

cc_builtin if {
	cc_hook
	input.hook.builtin == true
}

cc_tool := input.tool.name if cc_builtin

# The project: where Claude Code was started (CLAUDE_PROJECT_DIR), else the
# working directory, without a trailing slash.
cc_project := trim_suffix(input.hook.project_dir, "/") if {
	is_string(input.hook.project_dir)
	input.hook.project_dir != ""
}

cc_project := trim_suffix(input.session.cwd, "/") if {
	not is_string(input.hook.project_dir)
	is_string(input.session.cwd)
}

cc_read_tools := {"Read", "Glob", "Grep", "LS", "NotebookRead"}

cc_write_tools := {"Edit", "Write", "MultiEdit", "NotebookEdit"}

# Tools that touch nothing outside the conversation (WebSearch sends only
# its query; WebFetch is decided by the URL below).
cc_harmless_tools := {"TodoWrite", "TodoRead", "Task", "ExitPlanMode", "BashOutput", "KillShell", "KillBash", "WebSearch", "SlashCommand", "Skill"}

cc_path_keys := {"file_path", "path", "notebook_path"}

# The paths a tool use names, absolute (a relative one is taken from the
# working directory).
cc_paths contains p if {
	some key in cc_path_keys
	p := input.arguments[key]
	is_string(p)
	startswith(p, "/")
}

cc_paths contains concat("/", [trim_suffix(input.session.cwd, "/"), p]) if {
	some key in cc_path_keys
	p := input.arguments[key]
	is_string(p)
	not startswith(p, "/")
	not startswith(p, "~")
}

cc_paths contains p if {
	some key in cc_path_keys
	p := input.arguments[key]
	is_string(p)
	startswith(p, "~")
}

cc_in_project(p) if {
	not ".." in split(p, "/")
	p == cc_project
}

cc_in_project(p) if {
	not ".." in split(p, "/")
	startswith(p, concat("", [cc_project, "/"]))
}

cc_outside_project contains p if {
	some p in cc_paths
	not cc_in_project(p)
}

# Where secrets live. Matched against tool paths and against commands.
cc_secret_patterns := {
	"an SSH key or config (~/.ssh)": `(^|[/\s'"=~])\.ssh(/|\s|$|['"])`,
	"a .env file": `(^|[/\s'"=])\.env(\.[A-Za-z0-9_-]+)?($|[\s'";|&>*])`,
	"a private key file": `(\.pem|\.key|(^|/)id_(rsa|dsa|ecdsa|ed25519))($|[\s'";|&>])`,
	"cloud credentials": `(\.aws/credentials|\.config/gcloud|\.azure/|\.kube/config|\.docker/config\.json)`,
	"stored passwords or tokens": `((^|/)\.netrc|\.git-credentials|\.npmrc|\.pypirc|\.gnupg/)`,
}

cc_secrets contains name if {
	cc_builtin
	some p in cc_paths
	some name, pattern in cc_secret_patterns
	regex.match(pattern, p)
}

cc_secrets contains name if {
	cc_builtin
	cc_tool in {"Grep", "Glob"}
	some key in {"pattern", "glob"}
	is_string(input.arguments[key])
	some name, pattern in cc_secret_patterns
	regex.match(pattern, input.arguments[key])
}

cc_secrets contains name if {
	cc_tool == "Bash"
	some c in shell_commands
	some name, pattern in cc_secret_patterns
	regex.match(pattern, c)
}

deny contains reason if {
	some what in cc_secrets
	reason := sprintf("%s would read or touch %s", [cc_tool, what])
}

# -- reads -----------------------------------------------------------------

allow if {
	cc_tool in cc_read_tools
	count(cc_outside_project) == 0
	count(cc_secrets) == 0
}

# -- edits and writes ------------------------------------------------------

cc_default_protected := [
	`(^|/)\.claude/`,
	`(^|/)\.mcp\.json$`,
	`(^|/)\.git/(hooks/|config$)`,
	`(^|/)\.claude\.json$`,
]

cc_protected_patterns := array.concat(cc_default_protected, object.get(cc_settings, "protected_paths", []))

cc_protected contains p if {
	cc_tool in cc_write_tools
	some p in cc_paths
	some pattern in cc_protected_patterns
	regex.match(pattern, p)
}

deny contains reason if {
	cc_tool in cc_write_tools
	some p in cc_outside_project
	reason := sprintf("%s outside the project (%s) is not allowed: %s", [cc_tool, cc_project, p])
}

approve contains reason if {
	some p in cc_protected
	reason := sprintf("%s changes %s, part of Claude Code's own settings, hooks or MCP servers", [cc_tool, p])
}

allow if {
	cc_tool in cc_write_tools
	count(cc_paths) > 0
	count(cc_outside_project) == 0
	count(cc_protected) == 0
}

allow if cc_tool in cc_harmless_tools

# -- Bash ------------------------------------------------------------------

# Commands held for a human even inside the project: hard to undo, or
# reaching past the machine.
cc_risky_commands := {
	"a recursive delete": `(^|[;&|(] *|\bsudo )rm ((-\S+) )*-([a-zA-Z]*[rR][a-zA-Z]*|-recursive)\b`,
	"a force push": `\bgit\b.*\bpush\b.*( -f\b| --force\b| --force-with-lease\b| \+\S)`,
	"a history rewrite or hard reset": `\bgit\b.*\b(reset --hard|clean -[a-zA-Z]*f|filter-branch|filter-repo)\b`,
	"sudo": `(^|[;&|(] *)sudo\b`,
	"publishing a package or image": `\b(npm|pnpm|yarn|cargo|gem|twine|poetry|docker|podman) (publish|push|upload)\b`,
	"a recursive permission change": `\b(chmod|chown) ((-\S+) )*-[a-zA-Z]*R`,
}

cc_risks contains name if {
	cc_tool == "Bash"
	some c in shell_commands
	normalized := regex.replace(c, `\s+`, " ")
	some name, pattern in cc_risky_commands
	regex.match(pattern, normalized)
}

approve contains reason if {
	some risk in cc_risks
	reason := sprintf("Bash: the command is %s", [risk])
}

# shell.rego's tripwires apply to Claude Code's Bash as to any shell tool.
deny contains reason if {
	cc_tool == "Bash"
	some danger in shell_dangers
	reason := sprintf("Bash: command denied: %s", [danger])
}

cc_safe_commands := object.get(cc_settings, "safe_commands", [])

# One plain command: no chaining, pipes, redirection, substitution.
cc_plain(c) if not regex.match("[;&|<>$`\\n\\\\]|\\(", c)

cc_safe(c) if {
	cc_plain(c)
	some prefix in cc_safe_commands
	words := split(trim_space(regex.replace(c, `\s+`, " ")), " ")
	want := split(prefix, " ")
	count(words) >= count(want)
	array.slice(words, 0, count(want)) == want
}

allow if {
	cc_tool == "Bash"
	count(shell_commands) == 1
	every c in shell_commands {
		cc_safe(c)
	}
	count(cc_hosts_not_allowed) == 0
}

# -- the network -----------------------------------------------------------

cc_hosts_not_allowed contains host if {
	cc_hook
	some host in egress_hosts
	not egress_host_allowed(host)
}

approve contains reason if {
	some host in cc_hosts_not_allowed
	reason := sprintf("%s reaches %s, which is not in data.mcp_firewall.egress.allowed_hosts", [input.tool.name, host])
}

allow if {
	cc_tool == "WebFetch"
	is_string(input.arguments.url)
	count(egress_hosts) > 0
	count(cc_hosts_not_allowed) == 0
}

# -- MCP tools through the hook --------------------------------------------

# Their servers run through `mcp-firewall run` (what `install` sets up),
# which decides every call with the tool's real definition and pins: the
# hook does not decide them twice. Deny rules still apply.
allow if {
	cc_hook
	input.hook.builtin == false
	object.get(cc_settings, "mcp_tools", "proxy") == "proxy"
}
