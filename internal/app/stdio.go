package app

import (
	"context"
	"errors"
	"io"
	"log"
	"log/slog"

	"github.com/mark3labs/mcp-go/server"

	"github.com/scopemem/scopemem/scope"
)

// ServeStdio serves MCP over in and out (stdin and stdout of the process)
// as id, the identity from the agent config. It returns nil when in reaches
// end of file (the client went away) or ctx ends.
func (a *App) ServeStdio(ctx context.Context, id scope.Identity, in io.Reader, out io.Writer) error {
	if err := id.Validate(); err != nil {
		return err
	}
	s := server.NewStdioServer(a.MCP)
	s.SetErrorLogger(log.New(slogWriter{a.log}, "", 0))
	s.SetContextFunc(func(ctx context.Context) context.Context { return scope.WithIdentity(ctx, id) })
	err := s.Listen(ctx, in, out)
	if err == nil || errors.Is(err, io.EOF) || errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}

// slogWriter sends the stdio server's log lines to slog (stderr), never to
// stdout.
type slogWriter struct{ l *slog.Logger }

func (w slogWriter) Write(p []byte) (int, error) {
	w.l.Warn("stdio transport", "msg", string(p))
	return len(p), nil
}
