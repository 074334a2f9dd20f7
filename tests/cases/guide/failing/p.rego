package mcp.firewall

allow if input.tool.name == "get_ticket"
