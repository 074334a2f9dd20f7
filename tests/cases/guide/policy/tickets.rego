package mcp.firewall

# Anyone may read tickets.
allow if {
	input.method == "tools/call"
	input.tool.name == "get_ticket"
}

# Closing a ticket needs a human, except for the ticket's own reporter.
approve contains reason if {
	input.tool.name == "close_ticket"
	input.arguments.reporter != input.principal.id
	reason := sprintf("%s may not close a ticket reported by someone else", [input.principal.id])
}

# Nobody deletes tickets in a project listed in data.
deny contains reason if {
	input.tool.name == "delete_ticket"
	input.arguments.project in data.tickets.protected_projects
	reason := sprintf("project %s is protected", [input.arguments.project])
}
