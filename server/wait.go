package server

import (
	"context"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// A status GET may wait for its export to finish (RFC 7240, "Prefer:
// wait=SECONDS"): it answers as soon as the export has succeeded or
// failed, or when the wait is over with the status then. Clients poll
// without a sleep of their own and learn the outcome at once.

// maxStatusWait caps Prefer: wait, under the idle timeouts of common
// proxies (60s).
const maxStatusWait = 30 * time.Second

// statusPoll is how often a waiting GET reads the export again on
// Postgres, for an export a build on another server finishes: this
// server's own finishes wake it at once (on SQLite every build is this
// server's, and a waiting GET reads nothing until woken).
const statusPoll = 2 * time.Second

// maxTenantWaits bounds each tenant's status requests waiting at once;
// past it the wait preference is not applied (RFC 7240 lets a server
// ignore a preference) and the status is answered at once. Each wait
// holds a connection and, on Postgres, reads the store every statusPoll.
const maxTenantWaits = 64

// preferWait reads the wait preference of a request's Prefer headers: the
// seconds it asks for, capped at maxStatusWait, and whether it asked.
// Preferences are comma-separated, parameters after ';' are ignored, the
// name is case-insensitive and the value a decimal number of seconds,
// possibly quoted; one that is not is ignored, as RFC 7240 asks.
func preferWait(h http.Header) (time.Duration, bool) {
	for _, v := range h.Values("Prefer") {
		for _, pref := range strings.Split(v, ",") {
			pref, _, _ = strings.Cut(pref, ";")
			name, val, ok := strings.Cut(strings.TrimSpace(pref), "=")
			if !ok || !strings.EqualFold(strings.TrimSpace(name), "wait") {
				continue
			}
			n, err := strconv.ParseUint(strings.Trim(strings.TrimSpace(val), `"`), 10, 32)
			if err != nil {
				continue
			}
			return min(time.Duration(n)*time.Second, maxStatusWait), true
		}
	}
	return 0, false
}

// finishes wakes the requests waiting for an export to finish.
type finishes struct {
	mu      sync.Mutex
	waiting map[string]chan struct{}
	// byTenant counts each tenant's requests waiting.
	byTenant map[string]int
	// watched, when set, is told each export id a request begins to
	// wait for: tests use it to finish an export while a request waits.
	watched func(id string)
}

// watch returns a channel closed when export id finishes on this server.
func (f *finishes) watch(id string) <-chan struct{} {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.watched != nil {
		f.watched(id)
	}
	if f.waiting == nil {
		f.waiting = map[string]chan struct{}{}
	}
	ch, ok := f.waiting[id]
	if !ok {
		ch = make(chan struct{})
		f.waiting[id] = ch
	}
	return ch
}

// done wakes every request waiting for export id.
func (f *finishes) done(id string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if ch, ok := f.waiting[id]; ok {
		close(ch)
		delete(f.waiting, id)
	}
}

// forget drops export id's channel when its last waiter gave up, so
// exports nobody waits for hold nothing. A waiter that races it makes
// a new channel; the cost is a poll.
func (f *finishes) forget(id string, ch <-chan struct{}) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if cur, ok := f.waiting[id]; ok && (<-chan struct{})(cur) == ch {
		delete(f.waiting, id)
	}
}

// enter counts a wait of tenant's, or reports false at maxTenantWaits.
func (f *finishes) enter(tenant string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.byTenant == nil {
		f.byTenant = map[string]int{}
	}
	if f.byTenant[tenant] >= maxTenantWaits {
		return false
	}
	f.byTenant[tenant]++
	return true
}

// leave ends a wait of tenant's.
func (f *finishes) leave(tenant string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.byTenant[tenant]--; f.byTenant[tenant] <= 0 {
		delete(f.byTenant, tenant)
	}
}

// finished reports whether an export has its outcome.
func finished(e exportRecord) bool {
	return e.Status == statusSucceeded || e.Status == statusFailed
}

// awaitExport returns export e once it has finished, or as it is when
// wait is over, the request ends or the server shuts down.
func (s *Server) awaitExport(ctx context.Context, e exportRecord, wait time.Duration) (exportRecord, error) {
	if wait <= 0 || finished(e) {
		return e, nil
	}
	deadline := time.NewTimer(wait)
	defer deadline.Stop()
	var poll <-chan time.Time
	if s.store.pg {
		t := time.NewTicker(statusPoll)
		defer t.Stop()
		poll = t.C
	}
	for {
		ch := s.finishes.watch(e.ID)
		// Read again after watching: a finish between the caller's read
		// and the watch would otherwise be missed.
		cur, err := s.store.export(ctx, e.Tenant, e.ID)
		if err != nil {
			return e, err
		}
		e = cur
		if finished(e) {
			return e, nil
		}
		select {
		case <-ch:
		case <-poll:
		case <-deadline.C:
			s.finishes.forget(e.ID, ch)
			return e, nil
		case <-ctx.Done():
			s.finishes.forget(e.ID, ch)
			return e, ctx.Err()
		case <-s.stopping:
			return e, nil
		}
	}
}

// applyWait waits for export e as the request prefers, setting the
// response headers that say so.
func (s *Server) applyWait(w http.ResponseWriter, r *http.Request, e exportRecord) (exportRecord, error) {
	w.Header().Set("Vary", "Prefer")
	wait, ok := preferWait(r.Header)
	if !ok || finished(e) {
		return e, nil
	}
	if !s.finishes.enter(e.Tenant) {
		return e, nil
	}
	defer s.finishes.leave(e.Tenant)
	w.Header().Set("Preference-Applied", "wait="+strconv.Itoa(int(wait/time.Second)))
	return s.awaitExport(r.Context(), e, wait)
}
