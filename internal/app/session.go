package app

import "github.com/mark3labs/mcp-go/server"

// optionalSessionIDs hands out session ids on initialize and keeps no state
// (any replica accepts any well-formed id, so a restart or a load balancer
// never strands a client), and also accepts requests that carry no session
// id at all: such a call simply has no session scope.
type optionalSessionIDs struct {
	server.StatelessGeneratingSessionIdManager
}

// Validate accepts an empty id, and otherwise any id of the generated form.
func (m *optionalSessionIDs) Validate(sessionID string) (bool, error) {
	if sessionID == "" {
		return false, nil
	}
	return m.StatelessGeneratingSessionIdManager.Validate(sessionID)
}
