package server

import (
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"testing"
)

// TestUnknownSpecProblem: a spec name the server does not serve is a 404
// unknown-spec problem whose detail names it, on every route that takes
// a spec name, whether or not the name is well-formed (a malformed one
// was answered with no detail at all).
func TestUnknownSpecProblem(t *testing.T) {
	t.Parallel()
	h := startServer(t, "", withRelease(devKeyEnv(true), ""))
	for _, name := range []string{"no-such-spec", "../airgap", "air gap", strings.Repeat("x", 129)} {
		body, _ := json.Marshal(map[string]string{"spec": name})
		for _, path := range []string{exportsPath, releasePath, "/v1/plans"} {
			r := h.do(http.MethodPost, path, "rw", body)
			if r.StatusCode != http.StatusNotFound || problemType(t, r) != "unknown-spec" {
				t.Errorf("POST %s %q: %d %s, want 404 unknown-spec", path, name, r.StatusCode, r.body)
				continue
			}
			var p problem
			json.Unmarshal(r.body, &p)
			if !strings.Contains(p.Detail, strconv.Quote(name)) {
				t.Errorf("POST %s %q: detail %q does not name the spec", path, name, p.Detail)
			}
		}
	}
}
