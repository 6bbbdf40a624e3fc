package server

import (
	"io"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// benchServer is a server with a succeeded export of the airgap spec and
// no rate limit worth the name.
func benchServer(b *testing.B) (*harness, exportStatus) {
	b.Helper()
	h := startServer(b, "", func(c *Config) { c.Rate, c.Burst = 1e9, 1e9 })
	st := h.wait(h.export(h.post("rw", `{"spec":"airgap"}`)).ExportID)
	return h, st
}

// BenchmarkStatus: GET of an export's status from 8 concurrent clients;
// reports requests per second and the 99th percentile latency.
func BenchmarkStatus(b *testing.B) {
	h, st := benchServer(b)
	url := h.base + exportsPath + "/" + st.ExportID
	tok := "Bearer " + h.tokens["rw"]
	loadBench(b, 8, func(c *http.Client) error {
		req, _ := http.NewRequest(http.MethodGet, url, nil)
		req.Header.Set("Authorization", tok)
		resp, err := c.Do(req)
		if err != nil {
			return err
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return nil
	})
}

// BenchmarkPostBuiltPlan: POST of a plan already built (the export is laid
// out at once) from one client; reports the 99th percentile latency.
func BenchmarkPostBuiltPlan(b *testing.B) {
	h, st := benchServer(b)
	body := `{"planId":"` + st.PlanID + `"}`
	tok := "Bearer " + h.tokens["rw"]
	loadBench(b, 1, func(c *http.Client) error {
		req, _ := http.NewRequest(http.MethodPost, h.base+exportsPath, strings.NewReader(body))
		req.Header.Set("Authorization", tok)
		req.Header.Set("Content-Type", "application/json")
		resp, err := c.Do(req)
		if err != nil {
			return err
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusAccepted {
			b.Errorf("POST: %d", resp.StatusCode)
		}
		return nil
	})
}

// BenchmarkDownload: GET of a large pack (BALE_BENCH_PACK_MIB, default
// 256 MiB of a file laid out as an export) through sendfile; reports bytes
// per second via b.SetBytes and the server's peak RSS.
func BenchmarkDownload(b *testing.B) {
	h, st := benchServer(b)
	mib := 256
	if v, err := strconv.Atoi(os.Getenv("BALE_BENCH_PACK_MIB")); err == nil && v > 0 {
		mib = v
	}
	// Swap the export's file for a big one: the server serves whatever
	// file the export names, so this measures the transfer, not a build.
	path := h.cfg.DataDir + "/exports/acme/" + st.ExportID + "/" + st.File
	f, err := os.Create(path + ".big")
	if err != nil {
		b.Fatal(err)
	}
	chunk := make([]byte, 1<<20)
	for i := 0; i < mib; i++ {
		chunk[0] = byte(i)
		f.Write(chunk)
	}
	f.Close()
	if err := os.Rename(path+".big", path); err != nil {
		b.Fatal(err)
	}
	url := h.base + st.DownloadURI
	tok := "Bearer " + h.tokens["rw"]
	b.SetBytes(int64(mib) << 20)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		req, _ := http.NewRequest(http.MethodGet, url, nil)
		req.Header.Set("Authorization", tok)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		n, _ := io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if n != int64(mib)<<20 {
			b.Fatalf("downloaded %d bytes", n)
		}
	}
	b.StopTimer()
	reportRSS(b)
}

// loadBench runs do b.N times from workers goroutines with keep-alive clients
// and reports req/s, p50 and p99 latency and the process's peak RSS.
func loadBench(b *testing.B, workers int, do func(*http.Client) error) {
	var (
		mu   sync.Mutex
		lats []time.Duration
		next = make(chan struct{}, b.N)
		wg   sync.WaitGroup
	)
	for i := 0; i < b.N; i++ {
		next <- struct{}{}
	}
	close(next)
	b.ResetTimer()
	start := time.Now()
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1}}
			var mine []time.Duration
			for range next {
				t0 := time.Now()
				if err := do(c); err != nil {
					b.Error(err)
					return
				}
				mine = append(mine, time.Since(t0))
			}
			mu.Lock()
			lats = append(lats, mine...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	el := time.Since(start)
	b.StopTimer()
	slices.Sort(lats)
	if len(lats) > 0 {
		b.ReportMetric(float64(len(lats))/el.Seconds(), "req/s")
		b.ReportMetric(float64(lats[len(lats)/2].Microseconds())/1000, "p50-ms")
		b.ReportMetric(float64(lats[len(lats)*99/100].Microseconds())/1000, "p99-ms")
	}
	reportRSS(b)
}

// reportRSS reports the test process's peak RSS (VmHWM): the server runs
// in it, so this bounds the server's.
func reportRSS(b *testing.B) {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return
	}
	for _, l := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(l, "VmHWM:") {
			f := strings.Fields(l)
			if kb, err := strconv.ParseFloat(f[1], 64); err == nil {
				b.ReportMetric(kb/1024, "peak-RSS-MiB")
			}
		}
	}
}
