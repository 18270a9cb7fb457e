//go:build linux

package sqlite

import (
	"os"
	"strconv"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// walView reads the WAL-index header of a database in WAL mode: the
// first 96 bytes of its -shm file, two copies of the 48-byte header that
// every commit rewrites (https://sqlite.org/walformat.html), its change
// counter among them. While the header a reader last saw is unchanged,
// nothing was committed since, and PRAGMA data_version, which opens a
// read transaction (locks taken and released with fcntl), would answer
// as it did then.
//
// The header is read from a read-only mapping of the descriptor SQLite
// itself holds open for the -shm file: a descriptor of this package's own
// could never be closed safely, as closing any descriptor of a file drops
// every POSIX lock the process holds on it, SQLite's included. A mapping
// stays valid whatever becomes of the descriptor it was made from.
type walView struct {
	mem []byte
}

// walHeader is one copy of the WAL-index header, as 6 words.
type walHeader [6]uint64

// openWALView maps the -shm file of the database at path. It returns nil
// when this process holds no descriptor for it (the database is not in
// WAL mode, or SQLite keeps its index in heap memory) or it cannot be
// mapped. The caller must have a connection of its own to the database
// open, with a read transaction run on it, and keep it open while it uses
// the view: SQLite then has the -shm file open, and no process deletes it.
func openWALView(path string) *walView {
	var want unix.Stat_t
	// Reading a mapped page past the end of the file would fault: the
	// header must be in the file.
	if err := unix.Stat(path+"-shm", &want); err != nil || want.Size < 96 {
		return nil
	}
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return nil
	}
	for _, d := range fds {
		fd, err := strconv.Atoi(d.Name())
		if err != nil || !sameFile(fd, &want) {
			continue
		}
		mem, err := unix.Mmap(fd, 0, os.Getpagesize(), unix.PROT_READ, unix.MAP_SHARED)
		if err != nil {
			continue
		}
		// The descriptor may have been closed and its number reused
		// between the two looks: the mapping is only kept when the
		// descriptor still names the file after it was made.
		if !sameFile(fd, &want) {
			unix.Munmap(mem)
			continue
		}
		return &walView{mem: mem}
	}
	return nil
}

// sameFile reports whether descriptor fd names the regular file of st.
func sameFile(fd int, st *unix.Stat_t) bool {
	var got unix.Stat_t
	if unix.Fstat(fd, &got) != nil {
		return false
	}
	return got.Mode&unix.S_IFMT == unix.S_IFREG && got.Dev == st.Dev && got.Ino == st.Ino
}

// header returns the current WAL-index header, or false when the two
// copies differ (a writer is between them) or the index is not built yet.
// SQLite writes the second copy first and readers read the first copy
// first, as here.
func (v *walView) header() (walHeader, bool) {
	var h [2]walHeader
	for c := range h {
		for i := range h[c] {
			h[c][i] = atomic.LoadUint64((*uint64)(unsafe.Pointer(&v.mem[48*c+8*i])))
		}
	}
	// isInit is the byte at offset 12.
	isInit := (*[48]byte)(unsafe.Pointer(&h[0]))[12]
	return h[0], h[0] == h[1] && isInit == 1
}

// close unmaps the view.
func (v *walView) close() error { return unix.Munmap(v.mem) }
