package server

import (
	"database/sql/driver"
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// storeRetryAfter is the wait a client is told while the store cannot
// answer: a database restart or a disk freed takes seconds, not minutes.
const storeRetryAfter = 5 * time.Second

// storeUnreachable reports whether err is the database out of reach for
// now (restarting, refusing connections, the connection cut, SQLite's
// lock held past its busy timeout) rather than a fault of the request or
// of the server: a client should retry, not report a bug.
func storeUnreachable(err error) bool {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		// Class 08 is connection exceptions; 57P01-57P03 a server shutting
		// down or starting up; 53300 too many connections.
		return strings.HasPrefix(pe.Code, "08") || pe.Code == "57P01" || pe.Code == "57P02" || pe.Code == "57P03" || pe.Code == "53300"
	}
	var (
		ce *pgconn.ConnectError
		oe *net.OpError
		se *sqlite.Error
	)
	switch {
	case errors.As(err, &ce), errors.As(err, &oe),
		errors.Is(err, driver.ErrBadConn), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, net.ErrClosed),
		errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return true
	case errors.As(err, &se):
		code := se.Code() & 0xff
		return code == sqlite3.SQLITE_BUSY || code == sqlite3.SQLITE_LOCKED
	}
	// pgx reports a connection it closed after a failure by this text
	// alone.
	return strings.Contains(err.Error(), "conn closed")
}

// canWrite checks that the data directory (and SQLite in it) takes a
// write: 64 KiB written to a new file, then removed. A full disk fails it
// at the write, as every file system that allocates at write time does.
func (s *Server) canWrite() error {
	f, err := os.CreateTemp(s.cfg.DataDir, ".readyz-*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	_, err = f.Write(make([]byte, 64<<10))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// storageFull reports whether err is a write the server's storage (its
// data directory, SQLite in it, or Postgres's disk) could not take: no
// space, over quota, or an I/O error under SQLite.
func storageFull(err error) bool {
	if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) {
		return true
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code == "53100" // disk_full
	}
	var se *sqlite.Error
	if errors.As(err, &se) {
		code := se.Code() & 0xff
		return code == sqlite3.SQLITE_FULL || code == sqlite3.SQLITE_IOERR
	}
	return false
}
