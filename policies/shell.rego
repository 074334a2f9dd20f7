# Shell and command-execution tools (package mcp.firewall; adds `deny` and
# `approve` reasons).
#
# A tool that runs commands can do anything the upstream server's user can,
# so this file never allows one:
#
# 1. Obviously dangerous commands are DENIED outright: recursive deletion of
#    `/` or the home directory, a download piped into a shell, `mkfs`, `dd
#    if=`, fork bombs, `chmod 777 /`, writes into /etc, writes to a raw disk.
# 2. Every other command is HELD for a human (`approve`), even when the tool
#    claims to be read-only: approve beats allow.
#
# What counts as a shell tool: its name is one of `shell_tool_names`, or has
# `shell`, `bash`, `exec`, `execute` or `command` as an `_`-separated word
# (run_command, exec_sql, shell_exec ...), or its arguments carry a string
# (or array of strings) `command` / `cmd`.
#
# Helpers are defined before the rules that use them: regorus 0.14 can
# compute a stale (empty) partial set under `with input as ...` in tests
# when a rule refers to a set rule defined further down the same file.
#
# The patterns are tripwires for accidents and obvious abuse, not a shell
# parser: `eval "$(echo cm0gLXJmIC8= | base64 -d)"` gets past them. That is
# why everything not denied is still held for a human.
#
# Reasons name the pattern and the tool, never the command itself (it may
# carry credentials, and reasons are shown to the model and logged).
#
# Adopt: copy shell.rego and shell_test.rego. No data keys.
package mcp.firewall

# The command text(s) of this call: `command` / `cmd` as a string, or as an
# array of strings (argv) joined with spaces. An `args` array next to a
# string command is appended, as many exec tools split them that way.
shell_command_keys := {"command", "cmd"}

shell_commands contains c if {
	some key in shell_command_keys
	command := input.arguments[key]
	is_string(command)
	args := [a | some a in object.get(input.arguments, "args", []); is_string(a)]
	c := trim_space(concat(" ", array.concat([command], args)))
}

shell_commands contains concat(" ", c) if {
	some key in shell_command_keys
	c := input.arguments[key]
	is_array(c)
	every part in c {
		is_string(part)
	}
}

shell_tool_names := {"run_command", "run_shell", "exec", "execute", "shell", "bash", "sh", "terminal", "run_terminal_cmd"}

# Why this call counts as a shell call.
shell_tool_signs contains "name" if lower(input.tool.name) in shell_tool_names

shell_tool_signs contains "name word" if regex.match(`(^|_)(shell|bash|exec|execute|command)($|_)`, lower(input.tool.name))

shell_tool_signs contains "command argument" if count(shell_commands) > 0

shell_tool if count(shell_tool_signs) > 0

# Each dangerous pattern: a short name for the reason, and a regular
# expression (Rust `regex` syntax, as regorus uses) matched against the
# command with runs of whitespace collapsed to one space.
shell_dangerous_patterns := {
	"recursive delete of / or the home directory": `(^|[;&|(] *|\bsudo )rm ((-[a-zA-Z-]+|--[a-z-]+) )*-([a-zA-Z]*[rR][a-zA-Z]*|-recursive) ((-\S+) )*(/|/\*|~|~/|~/\*|\$HOME|\$HOME/|\$HOME/\*)( |;|&|\||$)`,
	"download piped into a shell": `\b(curl|wget|fetch)\b[^|;&]*\| *(sudo )?(ba|z|da|k|fi)?sh\b`,
	"mkfs (formats a filesystem)": `\bmkfs(\.[a-z0-9]+)?\b`,
	"dd (raw disk copy)": `\bdd\b.*\bif=`,
	"chmod 777 on /": `\bchmod ((-\S+) )*0?777 /( |;|&|\||$)`,
	"write into /etc": `(>>?|\btee ((-\S+) )*) *"?/etc/|\b(cp|mv|install|ln)\b[^;&|]* "?/etc/[^ ;&|]* *($|[;&|])|\bsed ((-\S+) )*-i\S* .* /etc/`,
	"write to a raw disk device": `> *"?/dev/(sd|hd|nvme|vd|xvd|disk|mmcblk)`,
}

# Fork bombs are checked with all whitespace removed: `:(){ :|:& };:` and the
# same shape with any function name.
shell_fork_bomb(c) if regex.match(`([a-zA-Z_:][a-zA-Z0-9_:]*)\(\)\{[a-zA-Z_:][a-zA-Z0-9_:]*\|[a-zA-Z_:][a-zA-Z0-9_:]*&\};`, replace(replace(c, " ", ""), "\t", ""))

shell_dangers contains name if {
	some c in shell_commands
	normalized := regex.replace(c, `\s+`, " ")
	some name, pattern in shell_dangerous_patterns
	regex.match(pattern, normalized)
}

shell_dangers contains "fork bomb" if {
	some c in shell_commands
	shell_fork_bomb(c)
}

deny contains reason if {
	input.method == "tools/call"
	shell_tool
	some danger in shell_dangers
	reason := sprintf("shell tool %s: command denied: %s", [input.tool.name, danger])
}

approve contains reason if {
	input.method == "tools/call"
	shell_tool
	reason := sprintf("shell tool %s: every command is held for review", [input.tool.name])
}
