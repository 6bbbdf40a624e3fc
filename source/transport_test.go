package source

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// zeros is an endless reader of zero bytes.
type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// TestUploadLimits: NewClient holds a request's body to the same limits as
// a response's. A server that takes the headers and then never reads the
// body, or reads it a byte at a time, is given up on with an error naming
// the limit; a server that reads the body and then never answers is given
// up on at the idle timeout.
func TestUploadLimits(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		handler func(w http.ResponseWriter, r *http.Request, stop <-chan struct{})
		opts    Options
		size    int64
		want    string
	}{
		{
			name:    "server never reads",
			handler: func(w http.ResponseWriter, r *http.Request, stop <-chan struct{}) { <-stop },
			opts:    Options{Timeout: 300 * time.Millisecond, SpeedLimit: -1},
			size:    1 << 30,
			want:    "the server took no request bytes for 300ms (the idle timeout)",
		},
		{
			name: "server reads a byte at a time",
			handler: func(w http.ResponseWriter, r *http.Request, stop <-chan struct{}) {
				b := make([]byte, 1)
				for {
					if _, err := r.Body.Read(b); err != nil {
						return
					}
					select {
					case <-stop:
						return
					case <-time.After(10 * time.Millisecond):
					}
				}
			},
			// The socket buffers take the first megabytes at once; the
			// window after that sees almost nothing.
			opts: Options{Timeout: time.Minute, SpeedLimit: 1 << 30, SpeedTime: 300 * time.Millisecond},
			size: 1 << 30,
			want: "transfer slower than 1073741824 bytes/s over 300ms",
		},
		{
			name: "server reads all, never answers",
			handler: func(w http.ResponseWriter, r *http.Request, stop <-chan struct{}) {
				_, _ = io.Copy(io.Discard, r.Body)
				<-stop
			},
			opts: Options{Timeout: 300 * time.Millisecond},
			size: 1 << 20,
			want: "no response within 300ms (the idle timeout)",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			// The handlers block until the test ends: a server that has
			// not read a body does not notice the client leave.
			stop := make(chan struct{})
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { tc.handler(w, r, stop) }))
			t.Cleanup(srv.Close)
			t.Cleanup(func() { close(stop) })
			c, err := NewClient(tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			req, err := http.NewRequestWithContext(bg, http.MethodPut, srv.URL+"/upload", io.LimitReader(zeros{}, tc.size))
			if err != nil {
				t.Fatal(err)
			}
			req.ContentLength = tc.size
			resp, err := c.Do(req)
			if err == nil {
				resp.Body.Close()
				t.Fatal("no error")
			}
			var le *limitError
			if !errors.As(err, &le) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want the limit %q", err, tc.want)
			}
		})
	}
}
