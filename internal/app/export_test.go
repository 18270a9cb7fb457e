package app

// HTTPCallsTaken is how many tools/call requests have been answered
// without mcp-go's streamable HTTP transport.
func HTTPCallsTaken() int64 { return httpCallsTaken.Load() }

// HTTPCallsDirect is how many of those the tool's handler answered
// without MCPServer.HandleMessage.
func HTTPCallsDirect() int64 { return httpCallsDirect.Load() }
