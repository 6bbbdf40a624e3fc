package server

import (
	"net/http"
	"testing"
	"time"
)

// TestPreferWait: the wait preference as RFC 7240 writes it, capped.
func TestPreferWait(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		prefer []string
		want   time.Duration
		ok     bool
	}{
		{nil, 0, false},
		{[]string{"wait=10"}, 10 * time.Second, true},
		{[]string{"respond-async, wait=5"}, 5 * time.Second, true},
		{[]string{"return=minimal", "WAIT = 7"}, 7 * time.Second, true},
		{[]string{`wait="3"; foo=bar`}, 3 * time.Second, true},
		{[]string{"wait=0"}, 0, true},
		{[]string{"wait=3600"}, maxStatusWait, true},
		{[]string{"wait=-1"}, 0, false},
		{[]string{"wait=soon"}, 0, false},
		{[]string{"waiting=3"}, 0, false},
		{[]string{"wait=99999999999999999999"}, 0, false},
	} {
		h := http.Header{}
		for _, v := range tc.prefer {
			h.Add("Prefer", v)
		}
		if got, ok := preferWait(h); got != tc.want || ok != tc.ok {
			t.Errorf("Prefer %q: %v %v, want %v %v", tc.prefer, got, ok, tc.want, tc.ok)
		}
	}
}

// TestStatusLongPoll: a status GET with Prefer: wait answers as soon as
// its export finishes, not before; a wait that ends first answers with
// the status then; Preference-Applied says the wait applied, capped; a
// tenant with maxTenantWaits waiting gets no more.
func TestStatusLongPoll(t *testing.T) {
	t.Parallel()
	g := startGatedRegistry(t)
	dir := registryWorkspace(t, g)
	h := startServer(t, "", func(c *Config) { c.Specs, c.Resolve.Offline = []string{dir}, false })
	r := h.post("rw", `{"spec":"regpack"}`)
	if r.StatusCode != http.StatusAccepted {
		t.Fatalf("POST: %d %s", r.StatusCode, r.body)
	}
	id := h.export(r).ExportID
	<-g.reached // the build waits for the layer until the gate opens
	// Past the tenant's waits at once, the preference is not applied:
	// the status now.
	for i := 0; i < maxTenantWaits; i++ {
		h.s.finishes.enter("acme")
	}
	r = h.do(http.MethodGet, exportsPath+"/"+id, "rw", nil, "Prefer", "wait=30")
	if st := h.export(r); st.Status != statusRunning || r.Header.Get("Preference-Applied") != "" {
		t.Fatalf("GET with wait=30 past the tenant's waits: %s, Preference-Applied %q; want running at once", st.Status, r.Header.Get("Preference-Applied"))
	}
	for i := 0; i < maxTenantWaits; i++ {
		h.s.finishes.leave("acme")
	}
	// A wait that ends before the build: the status then.
	r = h.do(http.MethodGet, exportsPath+"/"+id, "rw", nil, "Prefer", "wait=1")
	if st := h.export(r); st.Status != statusRunning || r.Header.Get("Preference-Applied") != "wait=1" {
		t.Fatalf("GET with wait=1 during the build: %s, Preference-Applied %q", st.Status, r.Header.Get("Preference-Applied"))
	}
	// A wait that the build's end ends.
	watched := make(chan string, 1)
	h.s.finishes.mu.Lock()
	h.s.finishes.watched = func(w string) {
		select {
		case watched <- w:
		default:
		}
	}
	h.s.finishes.mu.Unlock()
	got := make(chan response, 1)
	go func() { got <- h.do(http.MethodGet, exportsPath+"/"+id, "rw", nil, "Prefer", "wait=3600") }()
	if w := <-watched; w != id {
		t.Fatalf("waiting for %s, want %s", w, id)
	}
	g.open()
	r = <-got
	st := h.export(r)
	if st.Status != statusSucceeded || r.Header.Get("Preference-Applied") != "wait=30" {
		t.Fatalf("GET with wait=3600: %s %s, Preference-Applied %q (want succeeded, wait=30)", st.Status, st.Reason, r.Header.Get("Preference-Applied"))
	}
	// A finished export answers at once, wait or not.
	r = h.do(http.MethodGet, exportsPath+"/"+id, "rw", nil, "Prefer", "wait=30")
	if h.export(r).Status != statusSucceeded {
		t.Fatalf("GET of a finished export with wait: %s", r.body)
	}
}
