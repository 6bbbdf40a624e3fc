package server

import "testing"

// TestInlineSlotsPerTenant: one tenant cannot take every inline slot.
// With two slots, a tenant's spec held in evaluation takes its whole
// share: its next spec waits for the share (and is a 503 inline-busy when
// the wait ends first), while another tenant's spec is evaluated at once,
// without waiting. Without the per-tenant share, the tenant's two specs
// held both slots and the other tenant waited, then got 503.
func TestInlineSlotsPerTenant(t *testing.T) {
	t.Parallel()
	s := newSlotServer(t, 2)
	held := s.post("rw", "package p\n\none: 1\n")
	<-s.gate.started
	next := s.post("rw", "package p\n\ntwo: 1\n")
	wait := s.waiting(t, next, "acme's second spec while its share is held")

	s.evaluated(t, s.post("other", "package p\n\nx: 1\n"), "another tenant's spec while acme holds its share")

	close(wait)
	busy(t, <-next, "acme's second spec while its share is held")
	close(s.gate.open)
	s.evaluated(t, held, "acme's held spec")
}
