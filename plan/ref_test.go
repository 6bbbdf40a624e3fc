package plan

import (
	"bytes"
	"strings"
	"testing"
)

// badTags are tags an attacker can put in a spec, a docker tarball's
// RepoTags or a hand-edited plan; each once reached a pack's manifest.json.
var badTags = []struct {
	name, tag, want string
}{
	{"rtl override", "r.example/web:1\u202egpj.exe", "tag"},
	{"nul", "r.example/web:1\x00x", "tag"},
	{"traversal tag", "r.example/web:../../x", "repository:tag"},
	{"traversal repository", "../../x:1", `repository "../../x"`},
	{"traversal in path", "r.example/../x:1", `repository "r.example/../x"`},
	{"no tag", "r.example/web", "want repository:tag"},
	{"empty tag", "r.example/web:", "tag"},
	{"tag starts with dot", "r.example/web:.x", "tag"},
	{"tag too long", "r.example/web:" + strings.Repeat("a", 129), "tag"},
	{"uppercase path", "r.example/Web:1", "repository"},
	{"space", "r.example/web app:1", "repository"},
	{"newline", "r.example/web:1\nx", "tag"},
	{"bad domain", "-r.example:5000/web:1", "repository"},
	{"empty component", "r.example//web:1", "repository"},
	{"repository too long", strings.Repeat("a", 256) + ":1", "longer than 255"},
	{"backslash", `r.example\web:1`, "repository"},
}

func TestValidateRepoTag(t *testing.T) {
	for _, good := range []string{
		"r.example/web:1", "stellaops/mirror-agent:0.9.1", "web:latest", "localhost/a:b",
		"localhost:5000/a/b__c:V1.0_x-y", "127.0.0.1:5000/a:1", "[::1]:5000/a:1",
		"docker.io/library/alpine:3.20", "a/b-c/d.e:" + strings.Repeat("x", 128),
	} {
		if err := ValidateRepoTag(good); err != nil {
			t.Errorf("ValidateRepoTag(%q) = %v, want nil", good, err)
		}
	}
	for _, tt := range badTags {
		t.Run(tt.name, func(t *testing.T) {
			err := ValidateRepoTag(tt.tag)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("ValidateRepoTag(%q) = %v, want an error containing %q", tt.tag, err, tt.want)
			}
			// The message quotes the input, so control and bidi
			// characters never reach a terminal raw.
			if strings.ContainsAny(err.Error(), "\x00\u202e\n") {
				t.Errorf("error carries raw control characters: %q", err)
			}
		})
	}
}

// TestDecodeRefusesBadTags: a hand-edited plan with a hostile tag is
// refused before anything is built from it.
func TestDecodeRefusesBadTags(t *testing.T) {
	for _, tt := range badTags {
		t.Run(tt.name, func(t *testing.T) {
			p := sample()
			p.Inputs[1].Image.Tags = []string{tt.tag}
			b, err := Marshal(p)
			if err != nil {
				t.Fatal(err)
			}
			_, err = Decode(bytes.NewReader(b))
			if err == nil || !strings.Contains(err.Error(), "inputs[1] (image/web)") || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Decode = %v, want an error naming inputs[1] and %q", err, tt.want)
			}
		})
	}
	p := sample()
	p.Inputs[1].Name = "../../x"
	b, _ := Marshal(p)
	if _, err := Decode(bytes.NewReader(b)); err == nil || !strings.Contains(err.Error(), "image name") {
		t.Errorf("Decode of an image named ../../x = %v, want an image name error", err)
	}
}

// TestNormalizeRef: Docker Hub's short names mean what they mean to docker,
// crane and helm; full names are kept as written.
func TestNormalizeRef(t *testing.T) {
	const d = "sha256:0000000000000000000000000000000000000000000000000000000000000000"
	for _, tt := range []struct{ in, want string }{
		{"alpine:3.19", "index.docker.io/library/alpine:3.19"},
		{"alpine", "index.docker.io/library/alpine"},
		{"alpine@" + d, "index.docker.io/library/alpine@" + d},
		{"alpine:3.19@" + d, "index.docker.io/library/alpine:3.19@" + d},
		{"library/alpine", "index.docker.io/library/alpine"},
		{"bitnami/redis:7", "index.docker.io/bitnami/redis:7"},
		{"docker.io/library/alpine:3.19", "index.docker.io/library/alpine:3.19"},
		{"docker.io/alpine:3.19", "index.docker.io/library/alpine:3.19"},
		{"index.docker.io/library/alpine:3.19", "index.docker.io/library/alpine:3.19"},
		{"r.example/web:1", "r.example/web:1"},
		{"localhost:5000/a/b:1", "localhost:5000/a/b:1"},
		{"127.0.0.1:5000/a@" + d, "127.0.0.1:5000/a@" + d},
	} {
		got, err := NormalizeRef(tt.in)
		if err != nil || got != tt.want {
			t.Errorf("NormalizeRef(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
	for _, bad := range []string{"", "Alpine:3", "a:b:c", "alpine@sha256:abc"} {
		if got, err := NormalizeRef(bad); err == nil {
			t.Errorf("NormalizeRef(%q) = %q, want an error", bad, got)
		}
	}
}
