package server

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
)

// dataIDName is the file in the data directory that names it: servers
// sharing a database must share the data directory (plans, builds and
// exports are files in it), and the database records the id of the one
// its servers use.
const dataIDName = "data-id"

var dataIDRE = regexp.MustCompile(`^[0-9a-f]{32}$`)

// dataID returns the data directory's id, making it on first use. Two
// servers making it at once agree: it is linked into place, never
// overwritten.
func dataID(dir string) (string, error) {
	path := filepath.Join(dir, dataIDName)
	if b, err := os.ReadFile(path); err == nil {
		id := string(bytes.TrimSpace(b))
		if !dataIDRE.MatchString(id) {
			return "", fmt.Errorf("data directory %s: %s is not 32 lowercase hex digits", dir, dataIDName)
		}
		return id, nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("data directory %s: %w", dir, err)
	}
	var b [16]byte
	_, _ = rand.Read(b[:])
	tmp, err := os.CreateTemp(dir, "."+dataIDName+".tmp-*")
	if err != nil {
		return "", fmt.Errorf("data directory %s: %w", dir, err)
	}
	defer os.Remove(tmp.Name())
	_, err = tmp.WriteString(hex.EncodeToString(b[:]) + "\n")
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return "", fmt.Errorf("data directory %s: %w", dir, err)
	}
	if err := os.Link(tmp.Name(), path); err != nil && !errors.Is(err, fs.ErrExist) {
		return "", fmt.Errorf("data directory %s: %w", dir, err)
	}
	return dataID(dir)
}

// bindDataDir ties the data directory to the database: the first server
// records the directory's id in the database, and a server whose data
// directory has another id is refused. Two servers on one Postgres
// database with data directories of their own would each find the other's
// plans, builds and exports missing.
func (s *Server) bindDataDir(ctx context.Context) error {
	id, err := dataID(s.cfg.DataDir)
	if err != nil {
		return err
	}
	if _, err := s.store.db.ExecContext(ctx, s.store.q(`INSERT INTO bale_meta (key, value) VALUES ('data_id', ?) ON CONFLICT (key) DO NOTHING`), id); err != nil {
		return fmt.Errorf("record the data directory's id: %w", err)
	}
	var want string
	if err := s.store.db.QueryRowContext(ctx, `SELECT value FROM bale_meta WHERE key = 'data_id'`).Scan(&want); err != nil {
		return fmt.Errorf("read the data directory's id: %w", err)
	}
	if want != strings.TrimSpace(id) {
		return fmt.Errorf("data directory %s (id %s in %s) is not the one this database's servers use (id %s): servers sharing a database must share one data directory (--data); "+
			"if this directory replaces that one, copy its files over, or, to start afresh, clear the record with DELETE FROM bale_meta WHERE key = 'data_id'",
			s.cfg.DataDir, id, dataIDName, want)
	}
	return nil
}
