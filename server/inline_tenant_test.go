package server

import (
	"net/http"
	"testing"
	"time"
)

// TestInlineSlotsPerTenant: one tenant cannot take every inline slot. With
// two slots, a tenant posting two slow specs at once gets one evaluated
// and the other waits for its own slot (503 inline-busy past the wait),
// while another tenant's spec is evaluated at once. Without the per-tenant
// share, the two slow specs held both slots and the other tenant got 503.
func TestInlineSlotsPerTenant(t *testing.T) {
	bin := buildBale(t)
	const timeout = 12 * time.Second
	h := startServer(t, "", withInline(bin, timeout), func(c *Config) { c.InlineSlots = 2 })
	// Evaluating this runs until the timeout stops it; the comment makes
	// two distinct sources, so they do not share one child.
	slow := func(n string) string {
		return "package p\n\n// " + n + "\n\na: [for i in [1,2,3,4,5,6,7,8] for j in [1,2,3,4,5,6,7,8] for k in [1,2,3,4,5,6,7,8] for l in [1,2,3,4,5,6,7,8] for m in [1,2,3,4,5,6,7,8] for n in [1,2,3,4,5,6,7,8] for o in [1,2,3,4,5,6,7,8] for q in [1,2,3,4,5,6,7,8] {\"\\(i)\\(j)\\(k)\\(l)\\(m)\\(n)\\(o)\\(q)\"}]\n"
	}
	results := make(chan response, 2)
	for _, n := range []string{"one", "two"} {
		go func() { results <- h.do(http.MethodPost, exportsPath, "rw", inlineBody(t, slow(n))) }()
	}
	time.Sleep(time.Second)

	start := time.Now()
	r := h.do(http.MethodPost, exportsPath, "other", inlineBody(t, "package p\n\nx: 1\n"))
	if r.StatusCode != http.StatusUnprocessableEntity || problemType(t, r) != "spec-invalid" {
		t.Fatalf("another tenant's spec while acme evaluates two: %d %s, want 422 spec-invalid (evaluated)", r.StatusCode, r.body)
	}
	if took := time.Since(start); took > inlineSlotWait {
		t.Errorf("another tenant's spec waited %s", took.Round(time.Millisecond))
	}
	var busy, evaluated int
	for range 2 {
		r := <-results
		switch {
		case r.StatusCode == http.StatusServiceUnavailable && problemType(t, r) == "inline-busy":
			busy++
		case r.StatusCode == http.StatusUnprocessableEntity && problemType(t, r) == "spec-invalid":
			evaluated++
		default:
			t.Errorf("slow spec: %d %s", r.StatusCode, r.body)
		}
	}
	if busy != 1 || evaluated != 1 {
		t.Errorf("acme's two slow specs: %d busy, %d evaluated; want one each", busy, evaluated)
	}
}
