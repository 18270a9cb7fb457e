package app

// HTTPCallsTaken is how many tools/call requests have been answered
// without mcp-go's streamable HTTP transport.
func HTTPCallsTaken() int64 { return httpCallsTaken.Load() }
