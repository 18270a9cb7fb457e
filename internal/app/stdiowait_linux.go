//go:build linux

package app

import (
	"io"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// awaitInput returns in, the standard input of a stdio server, as a reader
// that, once its input is exhausted within awaitAfterAnswer of an answer
// written by w, asks the kernel how much input is waiting until that time
// has passed, and only then blocks in read.
//
// A client that calls one tool after another sends its next request a few
// tens of microseconds after it reads the answer. A thread blocked in
// read is woken by the kernel when that request arrives, and on a virtual
// machine whose CPU halted meanwhile the wake-up costs a good part of the
// round trip: on the 2-core machine of BENCHMARKS.md ("stdio: the next
// request awaited"), one session made about a tenth more searches a
// second.
//
// Between two polls the thread yields its CPU to any other thread ready
// to run there (sched_yield): without that, eight servers of one session
// each on two cores lost a sixth of their throughput to each other's
// waits, with it they lost nothing. The wait lasts at most
// awaitAfterAnswer after an answer (Go's scheduler lets a goroutine run
// for 10 ms before it preempts it; other goroutines run on the other
// threads meanwhile), and a server that has not answered anything for
// that long blocks at once: an idle server never polls.
//
// Input other than an *os.File (tests over io.Pipe) is returned as it is.
func awaitInput(in io.Reader, w *countingWriter) io.Reader {
	f, ok := in.(*os.File)
	if !ok {
		return in
	}
	rc, err := f.SyscallConn()
	if err != nil {
		return in
	}
	return &awaitingReader{f: f, w: w, wait: awaitAfterAnswer, poll: func() (ready bool) {
		// Control leaves the descriptor's blocking mode as it is, which
		// Fd would not.
		_ = rc.Control(func(fd uintptr) {
			// The bytes waiting in a pipe, socket or terminal; a regular
			// file answers with an error, and read never blocks on it.
			// At end of file the count stays 0 until the wait ends.
			n, err := unix.IoctlGetInt(int(fd), unix.TIOCINQ)
			ready = err != nil || n > 0
		})
		return ready
	}}
}

// awaitAfterAnswer is how long after an answer the next request is
// awaited by polling; see awaitInput.
const awaitAfterAnswer = 200 * time.Microsecond

type awaitingReader struct {
	f    *os.File
	w    *countingWriter
	wait time.Duration // awaitAfterAnswer, but in tests
	poll func() bool   // reports whether input is waiting
}

func (r *awaitingReader) Read(p []byte) (int, error) {
	for r.w.sinceWrite() < r.wait && !r.poll() {
		// Any other thread ready to run on this CPU runs first.
		_, _, _ = unix.Syscall(unix.SYS_SCHED_YIELD, 0, 0, 0)
	}
	return r.f.Read(p)
}
