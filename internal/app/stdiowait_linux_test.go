//go:build linux

package app

import (
	"bytes"
	"errors"
	"io"
	"os"
	"sync/atomic"
	"testing"
	"time"
)

// TestAwaitInput reads a pipe through awaitInput with the next line
// arriving at different times, or the client closing its end, after an
// answer written just before or long ago, and counts the polls: a server
// that answered nothing lately never polls, one that just answered polls
// only until awaitAfterAnswer has passed, and every byte (or end of file)
// comes through. The wait is 20 ms here, so that a busy machine's
// scheduling does not decide the outcome.
func TestAwaitInput(t *testing.T) {
	const wait = 20 * time.Millisecond
	tests := []struct {
		name     string
		answered bool          // an answer was written just before the read
		after    time.Duration // when the client writes (or closes)
		close    bool          // the client closes its end instead
		polls    bool          // whether the read may poll at all
	}{
		{name: "request already there", answered: true, polls: true},
		{name: "request during the wait", answered: true, after: wait / 10, polls: true},
		{name: "request after the wait", answered: true, after: 4 * wait, polls: true},
		{name: "client gone during the wait", answered: true, after: wait / 10, close: true, polls: true},
		{name: "idle server", after: wait / 4},
		{name: "idle server, client gone", after: wait / 4, close: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pr, pw, err := os.Pipe()
			if err != nil {
				t.Fatal(err)
			}
			defer pr.Close()
			defer pw.Close()
			w := newDrainTracker().writer(io.Discard)
			r, ok := awaitInput(pr, w).(*awaitingReader)
			if !ok {
				t.Fatalf("awaitInput(%T) does not poll", pr)
			}
			r.wait = wait
			var polls, lastPoll atomic.Int64
			poll := r.poll
			r.poll = func() bool {
				polls.Add(1)
				lastPoll.Store(int64(time.Since(processStart)))
				return poll()
			}

			const line = `{"jsonrpc":"2.0","id":7,"method":"tools/call"}` + "\n"
			if tt.answered {
				if err := w.writeLine([]byte("{}\n")); err != nil {
					t.Fatal(err)
				}
			}
			answered := time.Since(processStart)
			sent := make(chan time.Duration, 1)
			go func() {
				time.Sleep(tt.after)
				sent <- time.Since(processStart)
				if tt.close {
					pw.Close()
					return
				}
				_, _ = pw.Write([]byte(line))
			}()

			buf := make([]byte, 4096)
			n, err := r.Read(buf)
			switch {
			case tt.close && !errors.Is(err, io.EOF):
				t.Fatalf("Read after the client closed its end: %d bytes, %v; want io.EOF", n, err)
			case !tt.close && (err != nil || !bytes.Equal(buf[:n], []byte(line))):
				t.Fatalf("Read = %q, %v; want %q", buf[:n], err, line)
			}
			at := <-sent

			if !tt.polls {
				if polls.Load() != 0 {
					t.Fatalf("an idle server polled %d times; want none", polls.Load())
				}
				return
			}
			if polls.Load() == 0 {
				t.Fatal("no poll after an answer")
			}
			// Polling stops once the wait has passed since the answer.
			if last := time.Duration(lastPoll.Load()); at > answered+3*wait && last > answered+2*wait {
				t.Fatalf("polled until %v after the answer (the request came %v after it); want polling to stop %v after it",
					last-answered, at-answered, wait)
			}
		})
	}
}

// TestAwaitInputOtherReaders leaves input that is not a file as it is.
func TestAwaitInputOtherReaders(t *testing.T) {
	pr, pw := io.Pipe()
	defer pw.Close()
	if got := awaitInput(pr, newDrainTracker().writer(io.Discard)); got != io.Reader(pr) {
		t.Fatalf("awaitInput(*io.PipeReader) = %T; want the pipe itself", got)
	}
}

// TestAwaitInputFile reads input redirected from a file, which the
// kernel cannot count bytes of: right after an answer the read goes
// ahead after one poll.
func TestAwaitInputFile(t *testing.T) {
	const line = `{"jsonrpc":"2.0","id":1,"method":"tools/list"}` + "\n"
	name := t.TempDir() + "/input"
	if err := os.WriteFile(name, []byte(line), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w := newDrainTracker().writer(io.Discard)
	r := awaitInput(f, w).(*awaitingReader)
	r.wait = time.Second // however slowly this test runs
	polls := 0
	poll := r.poll
	r.poll = func() bool { polls++; return poll() }
	if err := w.writeLine([]byte("{}\n")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4096)
	if n, err := r.Read(buf); err != nil || string(buf[:n]) != line {
		t.Fatalf("Read = %q, %v; want %q", buf[:n], err, line)
	}
	if polls != 1 {
		t.Fatalf("%d polls before reading a file; want 1", polls)
	}
}
