package server

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/bale-build/bale/testsupport/tooltest"
)

// pgCluster is a Postgres server the tests start in a temporary directory
// (once per test binary), or the one named by BALE_TEST_POSTGRES.
var pgCluster struct {
	once sync.Once
	url  string // postgres://…/postgres
	err  error
	stop func()
}

// postgresDB returns the URL of a fresh database, skipping the test when
// no Postgres can be started (failing it under BALE_REQUIRE_TOOLS=1).
func postgresDB(t *testing.T) string {
	t.Helper()
	pgCluster.once.Do(func() { pgCluster.url, pgCluster.stop, pgCluster.err = startPostgres() })
	if pgCluster.err != nil {
		tooltest.Unavailable(t, "postgres: %v", pgCluster.err)
	}
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, pgCluster.url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var b [6]byte
	rand.Read(b[:])
	name := "bale_" + hex.EncodeToString(b[:])
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatal(err)
	}
	return strings.Replace(pgCluster.url, "/postgres?", "/"+name+"?", 1)
}

// startPostgres runs initdb and pg_ctl from Debian's postgresql package in
// a temporary directory, as the postgres user when running as root.
func startPostgres() (string, func(), error) {
	if u := os.Getenv("BALE_TEST_POSTGRES"); u != "" {
		return u, func() {}, nil
	}
	bin := ""
	if m, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb"); len(m) > 0 {
		bin = filepath.Dir(m[len(m)-1])
	} else if p, err := exec.LookPath("initdb"); err == nil {
		bin = filepath.Dir(p)
	} else {
		return "", nil, fmt.Errorf("initdb not found (apt-get install postgresql)")
	}
	dir, err := os.MkdirTemp("", "bale-pg-")
	if err != nil {
		return "", nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	data := filepath.Join(dir, "data")
	run := func(name string, args ...string) error {
		cmd := exec.Command(filepath.Join(bin, name), args...)
		if os.Geteuid() == 0 {
			// Postgres refuses to run as root.
			os.Chmod(dir, 0o777)
			cmd = exec.Command("runuser", append([]string{"-u", "postgres", "--", filepath.Join(bin, name)}, args...)...)
		}
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("%s: %v\n%s", name, err, out)
		}
		return nil
	}
	if err := run("initdb", "-D", data, "-A", "trust", "-U", "postgres", "--no-sync"); err != nil {
		os.RemoveAll(dir)
		return "", nil, err
	}
	opts := fmt.Sprintf("-c listen_addresses=127.0.0.1 -c port=%d -c unix_socket_directories=%s -c fsync=off -c max_connections=200", port, dir)
	if err := run("pg_ctl", "-D", data, "-o", opts, "-l", filepath.Join(dir, "log"), "-w", "-t", "60", "start"); err != nil {
		os.RemoveAll(dir)
		return "", nil, err
	}
	stop := func() {
		run("pg_ctl", "-D", data, "-m", "immediate", "stop")
		os.RemoveAll(dir)
	}
	url := fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", port)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for {
		c, err := pgx.Connect(ctx, url)
		if err == nil {
			c.Close(ctx)
			return url, stop, nil
		}
		if ctx.Err() != nil {
			stop()
			return "", nil, err
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func TestMain(m *testing.M) {
	code := m.Run()
	if pgCluster.stop != nil {
		pgCluster.stop()
	}
	os.Exit(code)
}
