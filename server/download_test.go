package server

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/bale-build/bale/testsupport/fakeclock"
)

// stalledDownload starts a GET of path as tok over a connection whose
// receive buffer is 4 KiB, reads the headers and the first KiB of the
// body, and then reads nothing more: a client that holds a download open
// while it takes almost nothing. It returns the response, whose body the
// caller may drain later.
func stalledDownload(t *testing.T, h *harness, path, tok string) *http.Response {
	t.Helper()
	d := net.Dialer{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		if err := c.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096)
		}); err != nil {
			return err
		}
		return serr
	}}
	conn, err := d.Dial("tcp", strings.TrimPrefix(h.base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: bale\r\nAuthorization: Bearer %s\r\n\r\n", path, tok)
	resp, err := http.ReadResponse(bufio.NewReaderSize(conn, 1024), nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", path, resp.Status)
	}
	if _, err := io.ReadFull(resp.Body, make([]byte, 1024)); err != nil {
		t.Fatal(err)
	}
	return resp
}

// sweepUntilCut moves the server's clock a window at a time and sweeps
// the downloads until want downloads have been cut, at most rounds times.
func sweepUntilCut(t *testing.T, h *harness, clock *fakeclock.Clock, want float64, rounds int) {
	t.Helper()
	for i := 0; i < rounds; i++ {
		if testutil.ToFloat64(h.s.metrics.downloadsCut) >= want {
			return
		}
		clock.Advance(h.cfg.DownloadWindow)
		h.s.downloads.sweep()
	}
	t.Fatalf("after %d windows, %v downloads cut, want %v", rounds, testutil.ToFloat64(h.s.metrics.downloadsCut), want)
}

// TestDownloadLimits: a client that stops reading is cut once a window
// passes with less than the minimum rate moved, while one reading at a
// normal pace through the same windows gets the whole pack; each tenant
// has at most TenantDownloads open, past which a download is 429, and
// /metrics counts the open downloads.
func TestDownloadLimits(t *testing.T) {
	t.Parallel()
	clock := fakeclock.New(time.Now())
	dir := bigSpec(t, 32)
	h := startServer(t, "", func(c *Config) {
		c.Specs, c.Now = []string{dir}, clock.Now
		c.DownloadMinRate, c.DownloadWindow, c.TenantDownloads = 64<<10, 2*time.Second, 2
	})
	st := h.wait(h.export(h.post("rw", `{"spec":"big"}`)).ExportID)
	if st.Status != statusSucceeded {
		t.Fatalf("export: %s %s", st.Status, st.Reason)
	}
	tok := h.tokens["rw"]

	// Two stalled downloads: the tenant's limit.
	slow := []*http.Response{stalledDownload(t, h, st.DownloadURI, tok), stalledDownload(t, h, st.DownloadURI, tok)}
	if n := testutil.ToFloat64(h.s.metrics.downloadsOpen); n != 2 {
		t.Fatalf("%v downloads open, want 2", n)
	}
	r := h.do(http.MethodGet, st.ChecksumURI, "rw", nil)
	if r.StatusCode != http.StatusTooManyRequests || problemType(t, r) != "download-limit" || r.Header.Get("Retry-After") == "" {
		t.Fatalf("a third download: %d %s (Retry-After %q), want 429 download-limit", r.StatusCode, r.body, r.Header.Get("Retry-After"))
	}
	// Another tenant's downloads are its own.
	other := h.waitAs("other", h.export(h.post("other", `{"spec":"big"}`)).ExportID)
	if r := h.do(http.MethodGet, exportsPath+"/"+other.ExportID+"/download.sha256", "other", nil); r.StatusCode != http.StatusOK {
		t.Fatalf("another tenant's download while acme is at its limit: %d %s", r.StatusCode, r.body)
	}
	// The stalled downloads are cut, each with far less than the pack
	// read.
	sweepUntilCut(t, h, clock, 2, 20)
	for i, resp := range slow {
		n, err := io.Copy(io.Discard, resp.Body)
		if err == nil || n+1024 >= st.Size {
			t.Fatalf("stalled download %d: read %d more bytes of %d, err %v; want it cut short", i, n, st.Size, err)
		}
	}
	if !strings.Contains(h.logs.String(), `"msg":"download cut: slower than the minimum rate"`) {
		t.Error("the cut is not logged")
	}

	// A normal reader, through windows of the same clock: 8 MiB a second,
	// far over the minimum rate (and over what the socket buffers and a
	// chunk in flight hide), is never cut.
	req, _ := http.NewRequest(http.MethodGet, h.base+st.DownloadURI, nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("normal download: %v %v", err, resp)
	}
	sum := sha256.New()
	buf := make([]byte, 1<<20)
	for {
		n, err := io.ReadFull(resp.Body, buf)
		sum.Write(buf[:n])
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			break
		}
		if err != nil {
			t.Fatalf("normal download: %v", err)
		}
		clock.Advance(time.Second / 8)
		h.s.downloads.sweep()
	}
	resp.Body.Close()
	if got := hex.EncodeToString(sum.Sum(nil)); got != st.ArtifactSha256 {
		t.Fatalf("normal download: sha256 %s, want %s (cut after %v windows?)", got, st.ArtifactSha256, testutil.ToFloat64(h.s.metrics.downloadsCut))
	}
	if c := testutil.ToFloat64(h.s.metrics.downloadsCut); c != 2 {
		t.Fatalf("%v downloads cut, want 2 (the stalled ones, not the normal reader)", c)
	}
	// Ended downloads leave the count (and the limit) as they go.
	clock.Advance(metricsTTL)
	if n := h.metric("bale_downloads_open"); n != 0 {
		t.Fatalf("bale_downloads_open = %v after every download ended", n)
	}
	if n := h.metric("bale_downloads_cut_total"); n != 2 {
		t.Fatalf("bale_downloads_cut_total = %v, want 2", n)
	}
	if r := h.do(http.MethodGet, st.ChecksumURI, "rw", nil); r.StatusCode != http.StatusOK {
		t.Fatalf("download after the others ended: %d", r.StatusCode)
	}
}
