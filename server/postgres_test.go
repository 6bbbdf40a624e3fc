package server

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
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

// pgServer is a Postgres cluster in a temporary directory, run with
// initdb and pg_ctl from Debian's postgresql package (as the postgres user
// when running as root).
type pgServer struct {
	bin, dir, data, opts string
	url                  string // postgres://…/postgres
}

// startPostgres starts a Postgres cluster, or names the one in
// BALE_TEST_POSTGRES (which it never stops).
func startPostgres() (string, func(), error) {
	if u := os.Getenv("BALE_TEST_POSTGRES"); u != "" {
		return u, func() {}, nil
	}
	pg, err := newPostgres()
	if err != nil {
		return "", nil, err
	}
	return pg.url, pg.remove, nil
}

// newPostgres makes a cluster and starts it.
func newPostgres() (*pgServer, error) {
	pg := &pgServer{}
	if m, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb"); len(m) > 0 {
		pg.bin = filepath.Dir(m[len(m)-1])
	} else if p, err := exec.LookPath("initdb"); err == nil {
		pg.bin = filepath.Dir(p)
	} else {
		return nil, fmt.Errorf("initdb not found (apt-get install postgresql)")
	}
	dir, err := os.MkdirTemp("", "bale-pg-")
	if err != nil {
		return nil, err
	}
	pg.dir, pg.data = dir, filepath.Join(dir, "data")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	if err := pg.run("initdb", "-D", pg.data, "-A", "trust", "-U", "postgres", "--no-sync"); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	pg.opts = fmt.Sprintf("-c listen_addresses=127.0.0.1 -c port=%d -c unix_socket_directories=%s -c fsync=off -c max_connections=200", port, dir)
	pg.url = fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", port)
	if err := pg.start(); err != nil {
		pg.remove()
		return nil, err
	}
	return pg, nil
}

func (pg *pgServer) run(name string, args ...string) error {
	cmd := exec.Command(filepath.Join(pg.bin, name), args...)
	if os.Geteuid() == 0 {
		// Postgres refuses to run as root.
		os.Chmod(pg.dir, 0o777)
		cmd = exec.Command("runuser", append([]string{"-u", "postgres", "--", filepath.Join(pg.bin, name)}, args...)...)
	}
	cmd.Dir = pg.dir
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("%s: %v\n%s", name, err, out)
	}
	return nil
}

// start starts the cluster and waits until it accepts connections.
func (pg *pgServer) start() error {
	if err := pg.run("pg_ctl", "-D", pg.data, "-o", pg.opts, "-l", filepath.Join(pg.dir, "log"), "-w", "-t", "60", "start"); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for {
		c, err := pgx.Connect(ctx, pg.url)
		if err == nil {
			c.Close(ctx)
			return nil
		}
		if ctx.Err() != nil {
			return err
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// stop stops the cluster, disconnecting its clients (pg_ctl -m fast).
func (pg *pgServer) stop() error {
	return pg.run("pg_ctl", "-D", pg.data, "-m", "fast", "-w", "stop")
}

// remove stops the cluster at once and removes it.
func (pg *pgServer) remove() {
	pg.run("pg_ctl", "-D", pg.data, "-m", "immediate", "stop")
	os.RemoveAll(pg.dir)
}

func TestMain(m *testing.M) {
	code := m.Run()
	if pgCluster.stop != nil {
		pgCluster.stop()
	}
	os.Exit(code)
}

// ownPostgres starts a Postgres cluster for one test, which may stop and
// start it; skipped (failed under BALE_REQUIRE_TOOLS=1) where none can be
// started.
func ownPostgres(t *testing.T) *pgServer {
	t.Helper()
	pg, err := newPostgres()
	if err != nil {
		tooltest.Unavailable(t, "postgres: %v", err)
	}
	t.Cleanup(pg.remove)
	return pg
}

// TestPostgresRestart: while the database is down, requests get 503
// not-ready with Retry-After (not 500 internal), and /readyz fails; once
// it is back, requests succeed again without a restart of the server.
func TestPostgresRestart(t *testing.T) {
	t.Parallel()
	pg := ownPostgres(t)
	h := startServer(t, pg.url)
	first := h.wait(h.export(h.post("rw", `{"spec":"airgap"}`)).ExportID)
	if first.Status != statusSucceeded {
		t.Fatalf("export %s: %s", first.Status, first.Reason)
	}
	if err := pg.stop(); err != nil {
		t.Fatal(err)
	}
	for name, r := range map[string]response{
		"status":   h.do(http.MethodGet, exportsPath+"/"+first.ExportID, "rw", nil),
		"POST":     h.post("rw", `{"spec":"airgap"}`),
		"plan":     h.do(http.MethodGet, "/v1/plans/"+first.PlanID, "rw", nil),
		"download": h.do(http.MethodGet, first.DownloadURI, "rw", nil),
		"readyz":   h.do(http.MethodGet, "/readyz", "", nil),
	} {
		if r.StatusCode != http.StatusServiceUnavailable || problemType(t, r) != "not-ready" || r.Header.Get("Retry-After") == "" {
			t.Errorf("%s with the database down: %d Retry-After %q %s, want 503 not-ready with Retry-After", name, r.StatusCode, r.Header.Get("Retry-After"), r.body)
		}
	}
	if err := pg.start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(time.Minute)
	for {
		r := h.do(http.MethodGet, exportsPath+"/"+first.ExportID, "rw", nil)
		if r.StatusCode == http.StatusOK {
			break
		}
		if r.StatusCode != http.StatusServiceUnavailable || time.Now().After(deadline) {
			t.Fatalf("status after the database restarted: %d %s", r.StatusCode, r.body)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if st := h.wait(h.export(h.post("rw", `{"spec":"airgap"}`)).ExportID); st.Status != statusSucceeded {
		t.Fatalf("export after the database restarted: %s %s", st.Status, st.Reason)
	}
}
