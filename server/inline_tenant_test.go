package server

import (
	"net/http"
	"testing"
	"time"
)

// TestInlineSlotsPerTenant: one tenant cannot take every inline slot.
// With two slots, a tenant's spec held in evaluation takes its whole
// share: its next spec waits for the share (and is a 503 inline-busy when
// the wait ends first), while another tenant's spec is evaluated at once,
// without waiting. Without the per-tenant share, the tenant's two specs
// held both slots and the other tenant waited, then got 503.
func TestInlineSlotsPerTenant(t *testing.T) {
	t.Parallel()
	bin := buildBale(t)
	command, g := gatedInline(t, bin)
	var waits chan chan time.Time
	h := startServer(t, "", withInline(bin, time.Minute), func(c *Config) {
		c.InlineSlots = 2
		c.InlineCommand = command
		waits = slotClock(c)
	})
	post := func(role, src string) <-chan response {
		out := make(chan response, 1)
		go func() { out <- h.do(http.MethodPost, exportsPath, role, inlineBody(t, src)) }()
		return out
	}
	held := post("rw", "package p\n\none: 1\n")
	<-g.started
	next := post("rw", "package p\n\ntwo: 1\n")
	var wait chan time.Time
	select {
	case wait = <-waits: // acme's second spec waits for acme's share
	case r := <-next:
		t.Fatalf("acme's second spec did not wait for acme's share: %d %s", r.StatusCode, r.body)
	}

	select {
	case r := <-post("other", "package p\n\nx: 1\n"):
		if r.StatusCode != http.StatusUnprocessableEntity || problemType(t, r) != "spec-invalid" {
			t.Fatalf("another tenant's spec while acme holds its share: %d %s, want 422 spec-invalid (evaluated)", r.StatusCode, r.body)
		}
	case <-waits:
		t.Fatal("another tenant's spec waited for a slot while acme held its share")
	}

	close(wait)
	if r := <-next; r.StatusCode != http.StatusServiceUnavailable || problemType(t, r) != "inline-busy" {
		t.Errorf("acme's second spec while its share is held: %d %s, want 503 inline-busy", r.StatusCode, r.body)
	}
	close(g.open)
	if r := <-held; r.StatusCode != http.StatusUnprocessableEntity || problemType(t, r) != "spec-invalid" {
		t.Errorf("acme's held spec: %d %s, want 422 spec-invalid (evaluated)", r.StatusCode, r.body)
	}
}
