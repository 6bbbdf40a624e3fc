package server

import (
	"errors"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Downloads hold a socket and a file descriptor each for as long as the
// client takes, so the server bounds both ways a client can hold them:
// each tenant's downloads open at once (Config.TenantDownloads), and the
// pace of each: one that moves less than Config.DownloadMinRate bytes a
// second over a Config.DownloadWindow is cut. Progress is the bytes the
// kernel took from the server, counted as the body goes out in chunks: a
// chunk is one sendfile(2) call, so the fast path stays zero-copy, and
// its size follows the client's pace (large for a fast client, small for
// a slow one, whose progress is then seen soon).

// Chunk sizes of a download body: see downloadWriter.ReadFrom. The first
// is a quarter of what the minimum rate moves in a window, within these.
const (
	minChunk = 4 << 10
	maxChunk = 4 << 20 // what one sendfile call of Go's moves at most
)

// downloadRetryAfter is the wait a download past the tenant's limit is
// told: how long the others take is not known.
const downloadRetryAfter = 5 * time.Second

// errDownloadCut is a download cut for moving too slowly.
var errDownloadCut = errors.New("download cut: slower than the minimum rate")

// downloads tracks the open downloads.
type downloads struct {
	now       func() time.Time
	minRate   int64 // bytes a second
	window    time.Duration
	perTenant int
	open      prometheus.Gauge
	cut       prometheus.Counter

	mu       sync.Mutex
	byTenant map[string]int
	active   map[*download]struct{}
}

// download is one download in progress.
type download struct {
	tenant string
	rc     *http.ResponseController
	moved  atomic.Int64 // body bytes the kernel took
	isCut  atomic.Bool
	// markAt and markMoved are where the current window began; guarded
	// by downloads.mu.
	markAt    time.Time
	markMoved int64
}

// start opens a download for tenant, or reports false when the tenant has
// perTenant open already.
func (d *downloads) start(tenant string, w http.ResponseWriter) (*download, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.byTenant[tenant] >= d.perTenant {
		return nil, false
	}
	d.byTenant[tenant]++
	dl := &download{tenant: tenant, rc: http.NewResponseController(w), markAt: d.now()}
	d.active[dl] = struct{}{}
	d.open.Inc()
	return dl, true
}

// end closes dl.
func (d *downloads) end(dl *download) {
	d.mu.Lock()
	defer d.mu.Unlock()
	delete(d.active, dl)
	if d.byTenant[dl.tenant]--; d.byTenant[dl.tenant] <= 0 {
		delete(d.byTenant, dl.tenant)
	}
	d.open.Dec()
}

// sweep cuts every download whose window has passed with less than
// minRate × window bytes moved in it, and starts a new window for the
// others. The write deadline in the past fails the write in progress (a
// sendfile blocked on a full socket) at once, and every later one.
func (d *downloads) sweep() {
	now := d.now()
	need := int64(float64(d.minRate) * d.window.Seconds())
	d.mu.Lock()
	defer d.mu.Unlock()
	for dl := range d.active {
		if now.Sub(dl.markAt) < d.window {
			continue
		}
		moved := dl.moved.Load()
		if moved-dl.markMoved >= need {
			dl.markAt, dl.markMoved = now, moved
			continue
		}
		if dl.isCut.CompareAndSwap(false, true) {
			_ = dl.rc.SetWriteDeadline(time.Unix(1, 0))
			d.cut.Inc()
		}
	}
}

// downloadWriter is the response writer of one download: it sends the
// body in chunks, each through the underlying writer's ReadFrom (so a file
// goes out by sendfile), and counts what each moved.
type downloadWriter struct {
	http.ResponseWriter
	dl    *download
	now   func() time.Time
	slow  time.Duration // a chunk slower than this halves the next
	fast  time.Duration // a chunk quicker than this doubles the next
	chunk int64
}

func newDownloadWriter(w http.ResponseWriter, dl *download, d *downloads) *downloadWriter {
	first := min(max(int64(float64(d.minRate)*d.window.Seconds())/4, minChunk), maxChunk)
	return &downloadWriter{ResponseWriter: w, dl: dl, now: d.now, slow: d.window / 8, fast: d.window / 64, chunk: first}
}

func (w *downloadWriter) Write(p []byte) (int, error) {
	if w.dl.isCut.Load() {
		return 0, errDownloadCut
	}
	n, err := w.ResponseWriter.Write(p)
	w.dl.moved.Add(int64(n))
	return n, err
}

// ReadFrom sends src in chunks. src is what http.ServeContent passes: an
// io.LimitedReader of the file, which is kept one level deep (a chunk is
// an io.LimitedReader of the file itself) for net's sendfile to see the
// file.
func (w *downloadWriter) ReadFrom(src io.Reader) (int64, error) {
	rf, ok := w.ResponseWriter.(io.ReaderFrom)
	if !ok {
		return io.Copy(struct{ io.Writer }{w}, src)
	}
	remain := int64(-1) // to EOF
	outer, limited := src.(*io.LimitedReader)
	if limited {
		src, remain = outer.R, outer.N
	}
	var total int64
	chunk := &io.LimitedReader{R: src}
	for remain != 0 {
		if w.dl.isCut.Load() {
			return total, errDownloadCut
		}
		n := w.chunk
		if remain > 0 && remain < n {
			n = remain
		}
		chunk.N = n
		start := w.now()
		m, err := rf.ReadFrom(chunk)
		took := w.now().Sub(start)
		total += m
		w.dl.moved.Add(m)
		if remain > 0 {
			remain -= m
		}
		if limited {
			outer.N -= m
		}
		if err != nil || m < n {
			return total, err
		}
		switch {
		case took > w.slow && w.chunk > minChunk:
			w.chunk /= 2
		case took < w.fast && w.chunk < maxChunk:
			w.chunk *= 2
		}
	}
	return total, nil
}

// Unwrap lets http.ResponseController reach the connection.
func (w *downloadWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
