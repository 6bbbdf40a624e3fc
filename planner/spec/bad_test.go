package spec

import (
	"context"
	"os"
	"strings"
	"testing"
)

// TestBadSpecs checks the exact text and position of every error of every
// bad spec under testdata/bad: one file a failure class.
func TestBadSpecs(t *testing.T) {
	tests := []struct {
		name string
		want []string
	}{
		{"bad-mode", []string{
			"testdata/bad/bad-mode.cue:10:52: release.runner.files[0].mode: invalid value 511: want 0o644, or 0o755 for an executable file",
		}},
		{"bad-platform", []string{
			"testdata/bad/bad-platform.cue:5:131: bootstrapPack.images[0].platforms[0]: invalid value \"linux-amd64\": want a platform \"os/arch\" or \"os/arch/variant\", e.g. \"linux/arm64/v8\"",
		}},
		{"bad-ref", []string{
			"testdata/bad/bad-ref.cue:5:25: bootstrapPack.images[0].ref: invalid image reference \"R.example/WEB:1\": could not parse reference: R.example/WEB:1",
		}},
		{"bad-tags", []string{
			"testdata/bad/bad-tags.cue:7:10: bootstrapPack.images[0].tags[0]: invalid value \"r.example/web:1\\u202egpj.exe\": want an image tag \"repository:tag\" in the OCI distribution grammar: the repository is lowercase path components joined by '/' after an optional registry host, the tag 1 to 128 of A-Z a-z 0-9 _ . - not starting with '.' or '-'",
			"testdata/bad/bad-tags.cue:7:42: bootstrapPack.images[0].tags[1]: invalid value \"r.example/web:1\\u0000x\": want an image tag \"repository:tag\" in the OCI distribution grammar: the repository is lowercase path components joined by '/' after an optional registry host, the tag 1 to 128 of A-Z a-z 0-9 _ . - not starting with '.' or '-'",
			"testdata/bad/bad-tags.cue:7:68: bootstrapPack.images[0].tags[2]: invalid value \"r.example/web:../../x\": want an image tag \"repository:tag\" in the OCI distribution grammar: the repository is lowercase path components joined by '/' after an optional registry host, the tag 1 to 128 of A-Z a-z 0-9 _ . - not starting with '.' or '-'",
			"testdata/bad/bad-tags.cue:7:93: bootstrapPack.images[0].tags[3]: invalid value \"../../x:1\": want an image tag \"repository:tag\" in the OCI distribution grammar: the repository is lowercase path components joined by '/' after an optional registry host, the tag 1 to 128 of A-Z a-z 0-9 _ . - not starting with '.' or '-'",
			"testdata/bad/bad-tags.cue:7:106: bootstrapPack.images[0].tags[4]: invalid value \"r.example/web\": want an image tag \"repository:tag\" in the OCI distribution grammar: the repository is lowercase path components joined by '/' after an optional registry host, the tag 1 to 128 of A-Z a-z 0-9 _ . - not starting with '.' or '-'",
			"testdata/bad/bad-tags.cue:7:123: bootstrapPack.images[0].tags[5]: invalid value \"r.example/Web:1\": want an image tag \"repository:tag\" in the OCI distribution grammar: the repository is lowercase path components joined by '/' after an optional registry host, the tag 1 to 128 of A-Z a-z 0-9 _ . - not starting with '.' or '-'",
			"testdata/bad/bad-tags.cue:7:164: bootstrapPack.images[0].tags[7]: duplicate tag \"r.example/web:fine\" (first at testdata/bad/bad-tags.cue:7:142)",
			"testdata/bad/bad-tags.cue:9:48: bootstrapPack.images[1].tarball.tag: invalid value \"app:-x\": want an image tag \"repository:tag\" in the OCI distribution grammar: the repository is lowercase path components joined by '/' after an optional registry host, the tag 1 to 128 of A-Z a-z 0-9 _ . - not starting with '.' or '-'",
			"testdata/bad/bad-tags.cue:10:10: bootstrapPack.images[1].tags[0]: image tag \"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"… (258 bytes): repository \"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"… (256 bytes): longer than 255 characters",
			"testdata/bad/bad-tags.cue:12:17: bootstrapPack.images[2].ref: repository \"a..b\": want [host[:port]/]path, path components of lowercase letters and digits joined by '.', '_', \"__\" or '-'",
		}},
		{"bad-timestamp", []string{
			"testdata/bad/bad-timestamp.cue:3:33: bootstrapPack.sourceDateEpoch: invalid value \"2025-13-01T00:00:00Z\": want an RFC 3339 time such as \"2025-01-01T00:00:00Z\", or Unix seconds",
		}},
		{"bad-url", []string{
			"testdata/bad/bad-url.cue:5:131: bootstrapPack.bundles[0].url: invalid value \"ftp://x.example/b.tgz\": want an http:// or https:// URL",
		}},
		{"chart-no-source", []string{
			"testdata/bad/chart-no-source.cue:5:11: bootstrapPack.charts[0]: chart \"web\" has no source: set one of path, repository or oci",
		}},
		{"dest-escapes", []string{
			"testdata/bad/dest-escapes.cue:10:31: release.runner.files[0].dest: invalid value \"../../etc/passwd\": want a relative path inside the artifact: no leading '/', no \".\" or \"..\" segment, no empty segment",
		}},
		{"digest-disagrees", []string{
			"testdata/bad/digest-disagrees.cue:8:3: bootstrapPack.images[0].digest: sha256:2222222222222222222222222222222222222222222222222222222222222222 disagrees with the reference's digest sha256:1111111111111111111111111111111111111111111111111111111111111111",
		}},
		{"dotdot-name", []string{
			"testdata/bad/dotdot-name.cue:4:19: bootstrapPack.name: invalid value \"../escape\": want a name safe as a file name: letters, digits, '.', '_', '+', '-', not starting with '.', no \"..\", at most 128 characters",
		}},
		{"duplicate-image", []string{
			"testdata/bad/duplicate-image.cue:7:4: bootstrapPack.images[1].name: duplicate image name \"web\" (first at testdata/bad/duplicate-image.cue:6:4)",
		}},
		{"empty-spec", []string{
			"testdata/bad/empty-spec.cue:1:1: spec defines nothing: add a bootstrapPack or a release",
		}},
		{"leading-dot-name", []string{
			"testdata/bad/leading-dot-name.cue:4:19: bootstrapPack.name: invalid value \".hidden\": want a name safe as a file name: letters, digits, '.', '_', '+', '-', not starting with '.', no \"..\", at most 128 characters",
		}},
		{"long-name", []string{
			"testdata/bad/long-name.cue:6:19: bootstrapPack.name: invalid value \"paaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\u2026 (203 characters): want a name safe as a file name: letters, digits, '.', '_', '+', '-', not starting with '.', no \"..\", at most 128 characters",
		}},
		{"malformed-digest", []string{
			"testdata/bad/malformed-digest.cue:5:57: bootstrapPack.images[0].digest: invalid value \"sha256:ABC\": want a digest: \"sha256:\" and 64 lowercase hex digits",
		}},
		{"missing-timestamp", []string{
			"testdata/bad/missing-timestamp.cue:3:1: bootstrapPack.sourceDateEpoch: required field is missing",
		}},
		{"no-signing-key", []string{
			"testdata/bad/no-signing-key.cue:6:2: release.signing: set key, devKey, or both",
		}},
		{"oci-chart-range", []string{
			"testdata/bad/oci-chart-range.cue:5:25: bootstrapPack.charts[0].version: chart \"web\" from oci needs an exact version",
		}},
		{"several-errors", []string{
			"testdata/bad/several-errors.cue:4:19: bootstrapPack.sourceDateEpoch: invalid value \"yesterday\": want an RFC 3339 time such as \"2025-01-01T00:00:00Z\", or Unix seconds",
			"testdata/bad/several-errors.cue:5:22: bootstrapPack.compression.level: invalid value 11: want a gzip level from 0 to 9",
			"testdata/bad/several-errors.cue:6:18: bootstrapPack.images[0].name: invalid value \"a b\": want a name safe as a file name: letters, digits, '.', '_', '+', '-', not starting with '.', no \"..\", at most 128 characters",
			"testdata/bad/several-errors.cue:6:57: bootstrapPack.images[0].digest: invalid value \"md5:00\": want a digest: \"sha256:\" and 64 lowercase hex digits",
			"testdata/bad/several-errors.cue:7:11: bootstrapPack.charts[0]: chart \"c\" has no source: set one of path, repository or oci",
			"testdata/bad/several-errors.cue:8:2: bootstrapPack.extra: unknown field \"extra\"",
		}},
		{"slash-name", []string{
			"testdata/bad/slash-name.cue:5:22: bootstrapPack.signatures[0].name: invalid value \"sub/root.json\": want a name safe as a file name: letters, digits, '.', '_', '+', '-', not starting with '.', no \"..\", at most 128 characters",
		}},
		{"syntax-error", []string{
			"testdata/bad/syntax-error.cue:5:24: missing ',' in struct literal",
		}},
		{"two-sources", []string{
			"testdata/bad/two-sources.cue:8:3: bootstrapPack.images[0]: image \"web\" has 2 sources (ref, tarball): set exactly one of ref, layout or tarball",
		}},
		{"unknown-field", []string{
			"testdata/bad/unknown-field.cue:5:2: bootstrapPack.imagez: unknown field \"imagez\"; did you mean \"images\"?",
		}},
		{"url-no-digest", []string{
			"testdata/bad/url-no-digest.cue:10:12: release.runner.files[0].digest: a url file needs a pinned sha256 digest",
		}},
		{"wrong-type", []string{
			"testdata/bad/wrong-type.cue:5:22: bootstrapPack.compression.level: invalid value \"fast\": want a gzip level from 0 to 9",
		}},
	}
	entries, err := os.ReadDir("testdata/bad")
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != len(tests) {
		t.Errorf("testdata/bad holds %d files, the table %d: every bad spec needs its expected errors", len(entries), len(tests))
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			insts, diags, err := Load(context.Background(), []string{"testdata/bad/" + tt.name + ".cue"}, Options{})
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			if len(insts) != 0 {
				t.Errorf("Load returned %d valid instances for a bad spec", len(insts))
			}
			var got []string
			for _, d := range diags {
				if d.Severity != SeverityError {
					continue
				}
				got = append(got, d.String())
			}
			if strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
				t.Errorf("diagnostics:\n got: %q\nwant: %q", got, tt.want)
			}
		})
	}
}
