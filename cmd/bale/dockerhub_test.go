package main

import (
	"strings"
	"testing"
)

// TestDockerHubShortRefs: "alpine:3.19", "alpine@sha256:…" and
// "library/alpine" mean index.docker.io/library/alpine, as they do to
// docker, crane and helm, in vet (with --strict too) and plan. Nothing here
// reaches Docker Hub: vet does not resolve, and plan runs --offline, naming
// the full reference it would fetch.
func TestDockerHubShortRefs(t *testing.T) {
	const d = "sha256:1349ce72c65098f07ef79be4d6089445426b9ef3eeedb2c0bf24dcc00a39f866"
	tests := []struct {
		ref, full string
		warn      string // vet's warning without --strict, "" for none
	}{
		{"alpine:3.19", "index.docker.io/library/alpine:3.19", "is a tag without a pinned digest"},
		{"alpine@" + d, "index.docker.io/library/alpine@" + d, ""},
		{"library/alpine:3.19@" + d, "index.docker.io/library/alpine:3.19@" + d, ""},
		{"docker.io/bitnami/redis@" + d, "index.docker.io/bitnami/redis@" + d, ""},
		{"library/alpine", "index.docker.io/library/alpine", `has no tag or digest; it resolves ":latest"`},
	}
	for _, tt := range tests {
		t.Run(tt.ref, func(t *testing.T) {
			ws := writeWorkspace(t, map[string]string{
				"spec/pack.cue": "package x\n\nbootstrapPack: {\n\tsourceDateEpoch: 0\n\timages: [{name: \"a\", ref: \"" + tt.ref + "\"}]\n}\n",
			})
			_, errs, code := bale(t, ws, "vet", "spec")
			if code != 0 {
				t.Fatalf("vet: exit %d\n%s", code, errs)
			}
			if tt.warn == "" && errs != "" {
				t.Errorf("vet: want no warning, got\n%s", errs)
			}
			if tt.warn != "" && !strings.Contains(errs, tt.warn) || tt.warn != "" && !strings.Contains(errs, "("+tt.full+")") {
				t.Errorf("vet: want %q naming %s, got\n%s", tt.warn, tt.full, errs)
			}
			_, errs, code = bale(t, ws, "vet", "--strict", "spec")
			if want := map[bool]int{true: 0, false: 1}[tt.warn == ""]; code != want {
				t.Errorf("vet --strict: exit %d, want %d\n%s", code, want, errs)
			}
			_, errs, code = bale(t, ws, "plan", "spec", "--offline")
			if code != 1 || !strings.Contains(errs, tt.full+" needs the network") {
				t.Errorf("plan --offline: exit %d, want 1 naming %s\n%s", code, tt.full, errs)
			}
		})
	}
}
