package kit_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/bale-build/bale/kit"
	"github.com/bale-build/bale/sign"
	"github.com/bale-build/bale/testsupport/kittest"
	"github.com/bale-build/bale/testsupport/tooltest"
	"github.com/bale-build/bale/verify"
)

// lookTool finds a real tool the checks drive: $envVar, else the first of
// names on PATH; a missing tool is tooltest.Unavailable (a skip, or a
// failure under BALE_REQUIRE_TOOLS=1 as .ci/run sets).
func lookTool(t *testing.T, envVar string, names ...string) string {
	t.Helper()
	if p := os.Getenv(envVar); envVar != "" && p != "" {
		return p
	}
	for _, n := range names {
		if p, err := exec.LookPath(n); err == nil {
			return p
		}
	}
	tooltest.Unavailable(t, "%v not on PATH (or set %s)", names, envVar)
	return ""
}

// cosignVersions are the cosign releases users run; .ci/run installs both.
var cosignVersions = []struct{ name, env, bin, want string }{
	{"v2", "BALE_COSIGN2", "cosign2", "v2.6.5"},
	{"v3", "BALE_COSIGN3", "cosign3", "v3.1."},
}

// cosignBin finds one cosign version and checks it is that version.
func cosignBin(t *testing.T, i int) string {
	t.Helper()
	v := cosignVersions[i]
	bin := lookTool(t, v.env, v.bin)
	out, err := exec.Command(bin, "version").CombinedOutput()
	if err != nil || !bytes.Contains(out, []byte("GitVersion:    "+v.want)) {
		t.Fatalf("%s is not cosign %s: %v\n%s", bin, v.want, err, out)
	}
	return bin
}

// toolEnv isolates cosign's state (TUF cache under HOME) from the machine.
func toolEnv(t *testing.T) []string {
	home := t.TempDir()
	return append(os.Environ(), "HOME="+home, "TUF_ROOT="+filepath.Join(home, "tuf"), "COSIGN_EXPERIMENTAL=")
}

// run runs a tool in dir and reports success and combined output.
func run(t *testing.T, dir string, env []string, name string, args ...string) (bool, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir, cmd.Env = dir, env
	out, err := cmd.CombinedOutput()
	return err == nil, string(out)
}

// kitNames picks the signed files out of a manifest.
type kitNames struct{ runner, runnerSig, dataset, provenance string }

func namesOf(m *kit.Manifest) kitNames {
	var n kitNames
	for _, a := range m.Artifacts {
		switch a.Kind {
		case kit.KindRunner:
			n.runner, n.runnerSig = a.Name, a.SignedBy
		case kit.KindDataset:
			n.dataset, n.provenance = a.Name, a.SignedBy
		}
	}
	return n
}

// cosignCheck runs one of the kit's cosign verifications, as a user types
// it (plus the offline flag): "runner" (verify-blob --bundle), "dataset"
// (verify-blob-attestation --type slsaprovenance1) or "sums" (verify-blob of
// SHA256SUMS).
func cosignCheck(t *testing.T, bin, dir string, env []string, n kitNames, which, key string) (bool, string) {
	t.Helper()
	switch which {
	case "runner":
		return run(t, dir, env, bin, "verify-blob", "--key", key, "--bundle", n.runnerSig, kit.CosignOfflineFlags, n.runner)
	case "dataset":
		return run(t, dir, env, bin, "verify-blob-attestation", "--key", key, "--type", "slsaprovenance1", "--signature", n.provenance, kit.CosignOfflineFlags, n.dataset)
	case "sums":
		return run(t, dir, env, bin, "verify-blob", "--key", key, "--bundle", kit.SumsSignatureName, kit.CosignOfflineFlags, kit.SumsName)
	}
	t.Fatalf("unknown cosign check %q", which)
	return false, ""
}

// TestRealTools verifies a freshly built kit with the real cosign v2 and
// v3, sha256sum and sh verify.sh, offline.
func TestRealTools(t *testing.T) {
	sha := lookTool(t, "", "sha256sum")
	dir, m := kittest.Build(t, kittest.AOCInput(t, kittest.DevKey(t)))
	n := namesOf(m)
	if ok, out := run(t, dir, os.Environ(), sha, "-c", kit.SumsName); !ok {
		t.Fatalf("sha256sum -c: %s", out)
	}
	for i, v := range cosignVersions {
		t.Run("cosign-"+v.name, func(t *testing.T) {
			bin := cosignBin(t, i)
			env := toolEnv(t)
			for _, which := range []string{"runner", "dataset", "sums"} {
				start := time.Now()
				ok, out := cosignCheck(t, bin, dir, env, n, which, kit.PublicKeyName)
				if !ok || !strings.Contains(out, "Verified OK") {
					t.Errorf("cosign %s %s: %s", v.name, which, out)
				}
				t.Logf("cosign %s %s: %v", v.name, which, time.Since(start).Round(time.Millisecond))
			}
			// Without the offline flag both versions go looking for a
			// transparency-log entry the kit does not have: the flag is
			// needed, not decoration.
			if ok, out := run(t, dir, env, bin, "verify-blob", "--key", kit.PublicKeyName, "--bundle", n.runnerSig, n.runner); ok {
				t.Errorf("cosign %s verify-blob without %s passed:\n%s", v.name, kit.CosignOfflineFlags, out)
			}
			ok, out := run(t, dir, append(env, "COSIGN="+bin), "sh", kit.ScriptName, kittest.DevPubPath(t))
			if !ok || !strings.Contains(out, "kit aoc-offline-kit verified") || !strings.Contains(out, "checked with cosign") || strings.Contains(out, "signatures NOT checked") {
				t.Errorf("sh verify.sh with cosign %s: %s", v.name, out)
			}
			if !strings.Contains(out, "DEVELOPMENT key") {
				t.Errorf("verify.sh does not warn about the development key:\n%s", out)
			}
		})
	}
}

// resign plays an attacker who holds key (kittest.Resign).
func resign(t *testing.T, dir string, key *sign.Key) { kittest.Resign(t, dir, key, nil) }

func mustRead(t testing.TB, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

var hexSum = kittest.HexSum

func writeFile(t *testing.T, dir, name string, data []byte) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// flip changes one byte in the middle of a kit file.
func flip(t *testing.T, dir, name string) {
	t.Helper()
	data := mustRead(t, filepath.Join(dir, name))
	data[len(data)/2] ^= 0x01
	writeFile(t, dir, name, data)
}

// setSumsLine rewrites name's line in SHA256SUMS to its current digest, as
// an attacker without the key would after tampering with it.
func setSumsLine(t *testing.T, dir, name string) {
	t.Helper()
	list, err := kit.ParseSums(mustRead(t, filepath.Join(dir, kit.SumsName)))
	if err != nil {
		t.Fatal(err)
	}
	for i := range list {
		if list[i].Name == name {
			list[i].SHA256 = hexSum(mustRead(t, filepath.Join(dir, name)))
		}
	}
	st, _ := kit.MarshalSums(list)
	writeFile(t, dir, kit.SumsName, st)
}

// editEnvelope rewrites the provenance envelope through f.
func editEnvelope(t *testing.T, dir, name string, f func(*sign.Envelope)) {
	t.Helper()
	var env sign.Envelope
	if err := json.Unmarshal(mustRead(t, filepath.Join(dir, name)), &env); err != nil {
		t.Fatal(err)
	}
	f(&env)
	b, _ := json.Marshal(env)
	writeFile(t, dir, name, append(b, '\n'))
}

type tamperCase struct {
	name   string
	mutate func(t *testing.T, dir string, n kitNames)
	// file is the kit file bale verify and verify.sh must name.
	file string
	// check is the check bale verify must report on file.
	check string
	// cosign lists the cosign verifications that must fail ("runner",
	// "dataset", "sums"); sha256sum says `sha256sum -c SHA256SUMS` fails.
	// Together they are the cosign side; a case with neither is invisible
	// to cosign and sha256sum by nature (cosignBlind says why).
	cosign      []string
	sha256sum   bool
	cosignBlind string
	// key is the public key file the cosign commands use ("" = cosign.pub),
	// trusted the key Verify must insist on.
	key     string
	trusted []byte
	// keyHolder marks a tampering by the signing key's holder that only
	// cosign's provenance check sees: verify.sh with openssl checks the
	// signature of SHA256SUMS, which that holder re-signed.
	keyHolder bool
}

// TestTamper builds a good kit, applies each attack of issue 8 to a copy,
// and requires bale's Verify, sh verify.sh (with each cosign version) and
// cosign/sha256sum to fail, naming the file.
func TestTamper(t *testing.T) {
	if testing.Short() {
		t.Skip("runs cosign many times")
	}
	key := kittest.DevKey(t)
	good, m := kittest.Build(t, kittest.AOCInput(t, key))
	n := namesOf(m)
	other := kittest.OtherKey(t)
	otherPub := filepath.Join(t.TempDir(), "other.pub")
	if err := os.WriteFile(otherPub, other.PublicKeyPEM(), 0o644); err != nil {
		t.Fatal(err)
	}

	var cases []tamperCase
	// A flipped byte in every file of the kit.
	entries, _ := os.ReadDir(good)
	for _, e := range entries {
		name := e.Name()
		if name == m.Archive || name == m.Archive+".sha256" {
			continue
		}
		c := tamperCase{name: "flip " + name, file: name, check: verify.CheckSums, sha256sum: true,
			mutate: func(t *testing.T, dir string, _ kitNames) { flip(t, dir, name) }}
		switch name {
		case n.runner, n.runnerSig:
			c.cosign = []string{"runner"}
		case n.dataset, n.provenance:
			c.cosign = []string{"dataset"}
		case kit.SumsName:
			c.cosign, c.check = []string{"sums"}, verify.CheckSumsSignature
		case kit.SumsSignatureName:
			c.cosign, c.sha256sum, c.check = []string{"sums"}, false, verify.CheckSumsSignature
		case kit.PublicKeyName:
			c.cosign, c.check = []string{"runner", "dataset", "sums"}, verify.CheckPublicKey
		case kit.ManifestName:
			c.check = verify.CheckManifest
		}
		cases = append(cases, c)
	}
	cases = append(cases,
		tamperCase{name: "payloadType changed", file: n.provenance, check: verify.CheckDSSE, cosign: []string{"dataset"}, sha256sum: true,
			mutate: func(t *testing.T, dir string, n kitNames) {
				editEnvelope(t, dir, n.provenance, func(e *sign.Envelope) { e.PayloadType = "application/json" })
			}},
		tamperCase{name: "payloadType changed, SHA256SUMS edited", file: n.provenance, check: verify.CheckDSSE, cosign: []string{"dataset", "sums"},
			mutate: func(t *testing.T, dir string, n kitNames) {
				editEnvelope(t, dir, n.provenance, func(e *sign.Envelope) { e.PayloadType = "application/json" })
				setSumsLine(t, dir, n.provenance)
			}},
		tamperCase{name: "subject digest changed", file: n.provenance, check: verify.CheckDSSE, cosign: []string{"dataset"}, sha256sum: true,
			mutate: func(t *testing.T, dir string, n kitNames) {
				editEnvelope(t, dir, n.provenance, func(e *sign.Envelope) {
					p, _ := base64.StdEncoding.DecodeString(e.Payload)
					d := hexSum(mustRead(t, filepath.Join(dir, n.dataset)))
					e.Payload = base64.StdEncoding.EncodeToString(bytes.Replace(p, []byte(d), []byte(strings.Repeat("0", 64)), 1))
				})
			}},
		tamperCase{name: "subject digest changed, re-signed with the key", file: n.dataset, check: verify.CheckProvenance, cosign: []string{"dataset"}, keyHolder: true,
			mutate: func(t *testing.T, dir string, n kitNames) {
				var env sign.Envelope
				_ = json.Unmarshal(mustRead(t, filepath.Join(dir, n.provenance)), &env)
				p, _ := base64.StdEncoding.DecodeString(env.Payload)
				d := hexSum(mustRead(t, filepath.Join(dir, n.dataset)))
				signed, err := key.SignDSSE(env.PayloadType, bytes.Replace(p, []byte(d), []byte(strings.Repeat("0", 64)), 1))
				if err != nil {
					t.Fatal(err)
				}
				writeFile(t, dir, n.provenance, signed)
				resign(t, dir, key)
			}},
		tamperCase{name: "signatures swapped between files", file: n.runner, check: verify.CheckSignature, cosign: []string{"runner", "sums"}, sha256sum: true,
			mutate: func(t *testing.T, dir string, n kitNames) {
				a, b := mustRead(t, filepath.Join(dir, n.runnerSig)), mustRead(t, filepath.Join(dir, kit.SumsSignatureName))
				writeFile(t, dir, n.runnerSig, b)
				writeFile(t, dir, kit.SumsSignatureName, a)
			}},
		tamperCase{name: "signatures swapped, SHA256SUMS re-signed with the key", file: n.runner, check: verify.CheckSignature, cosign: []string{"runner"},
			mutate: func(t *testing.T, dir string, n kitNames) {
				writeFile(t, dir, n.runnerSig, mustRead(t, filepath.Join(dir, kit.SumsSignatureName)))
				resign(t, dir, key)
			}},
		tamperCase{name: "wrong key: cosign.pub replaced", file: kit.PublicKeyName, check: verify.CheckSums, cosign: []string{"runner", "dataset", "sums"}, sha256sum: true,
			mutate: func(t *testing.T, dir string, n kitNames) { writeFile(t, dir, kit.PublicKeyName, other.PublicKeyPEM()) }},
		tamperCase{name: "wrong key: verified with another key", file: kit.PublicKeyName, check: verify.CheckPublicKey, cosign: []string{"runner", "dataset", "sums"},
			key: otherPub, trusted: other.PublicKeyPEM(), mutate: func(*testing.T, string, kitNames) {}},
		tamperCase{name: "wrong key: kit re-signed with another key and its cosign.pub", file: kit.PublicKeyName, check: verify.CheckPublicKey, cosign: []string{"runner", "dataset", "sums"},
			key: kittest.DevPubPath(t), trusted: key.PublicKeyPEM(),
			mutate: func(t *testing.T, dir string, n kitNames) {
				d := sha256.Sum256(mustRead(t, filepath.Join(dir, n.runner)))
				sig, _ := other.SignBlob(d)
				writeFile(t, dir, n.runnerSig, sig)
				var env sign.Envelope
				_ = json.Unmarshal(mustRead(t, filepath.Join(dir, n.provenance)), &env)
				p, _ := base64.StdEncoding.DecodeString(env.Payload)
				signed, _ := other.SignDSSE(env.PayloadType, p)
				writeFile(t, dir, n.provenance, signed)
				writeFile(t, dir, kit.PublicKeyName, other.PublicKeyPEM())
				resign(t, dir, other)
			}},
		tamperCase{name: "SHA256SUMS edited to match a tampered runner", file: n.runner, check: verify.CheckSignature, cosign: []string{"runner", "sums"},
			mutate: func(t *testing.T, dir string, n kitNames) { flip(t, dir, n.runner); setSumsLine(t, dir, n.runner) }},
		tamperCase{name: "SHA256SUMS edited to match a tampered SBOM", file: kit.SumsName, check: verify.CheckSumsSignature, cosign: []string{"sums"},
			mutate: func(t *testing.T, dir string, n kitNames) {
				sb := mustRead(t, filepath.Join(dir, strings.TrimSuffix(n.runner, ".tar.gz")+".sbom.json"))
				writeFile(t, dir, strings.TrimSuffix(n.runner, ".tar.gz")+".sbom.json", bytes.Replace(sb, []byte("StellaOps"), []byte("Mallory"), 1))
				setSumsLine(t, dir, strings.TrimSuffix(n.runner, ".tar.gz")+".sbom.json")
			}},
		tamperCase{name: "file added to the kit", file: "notes.txt", check: verify.CheckFiles,
			cosignBlind: "cosign and sha256sum -c check the files they are given; an extra file is not among them",
			mutate:      func(t *testing.T, dir string, _ kitNames) { writeFile(t, dir, "notes.txt", []byte("hello\n")) }},
		tamperCase{name: "hidden file added to the kit", file: ".profile", check: verify.CheckFiles,
			cosignBlind: "as above",
			mutate:      func(t *testing.T, dir string, _ kitNames) { writeFile(t, dir, ".profile", []byte("x\n")) }},
		tamperCase{name: "SBOM removed", file: strings.TrimSuffix(n.runner, ".tar.gz") + ".sbom.json", check: verify.CheckFiles, sha256sum: true,
			mutate: func(t *testing.T, dir string, n kitNames) {
				os.Remove(filepath.Join(dir, strings.TrimSuffix(n.runner, ".tar.gz")+".sbom.json"))
			}},
	)

	var bins []string
	for i := range cosignVersions {
		if p := func() (p string) {
			ok := t.Run("find-cosign-"+cosignVersions[i].name, func(t *testing.T) { p = cosignBin(t, i) })
			if !ok {
				return ""
			}
			return p
		}(); p != "" {
			bins = append(bins, p)
		}
	}
	sha := lookTool(t, "", "sha256sum")
	posix := posixPath(t)

	for ci, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "kit")
			if err := os.CopyFS(dir, os.DirFS(good)); err != nil {
				t.Fatal(err)
			}
			tc.mutate(t, dir, n)
			// The key the operator trusts: the release's, obtained out of
			// band, unless the case says otherwise.
			trusted := filepath.Join(t.TempDir(), "trusted.pub")
			if tc.trusted != nil {
				writeFile(t, filepath.Dir(trusted), "trusted.pub", tc.trusted)
			} else {
				writeFile(t, filepath.Dir(trusted), "trusted.pub", key.PublicKeyPEM())
			}

			// bale's verifier names the file and the check.
			r, err := verify.Kit(context.Background(), dir, verify.Options{TrustedKey: tc.trusted})
			if err != nil {
				t.Fatal(err)
			}
			found := false
			for _, f := range r.Failures {
				found = found || (f.Check == tc.check && (f.Entry == tc.file || strings.Contains(f.Detail, tc.file)))
			}
			if !found {
				t.Errorf("Verify does not report %s on %s; failures:\n%v", tc.check, tc.file, r.Err())
			}

			// sha256sum -c.
			if ok, out := run(t, dir, os.Environ(), sha, "-c", kit.SumsName); ok == tc.sha256sum {
				t.Errorf("sha256sum -c: ok=%t, want %t:\n%s", ok, !tc.sha256sum, out)
			}

			// cosign and verify.sh, each version (verify.sh alternates
			// versions across cases to bound the run time; both run on
			// every cosign-visible case).
			env := toolEnv(t)
			for bi, bin := range bins {
				keyFile := kit.PublicKeyName
				if tc.key != "" {
					keyFile, _ = filepath.Abs(tc.key)
				}
				for _, which := range tc.cosign {
					if ok, out := cosignCheck(t, bin, dir, env, n, which, keyFile); ok {
						t.Errorf("%s %s passed:\n%s", filepath.Base(bin), which, out)
					}
				}
				if len(bins) > 1 && (ci+bi)%2 == 1 && len(tc.cosign) == 0 {
					continue // nothing for cosign to catch: checked with the other version
				}
				ok, out := run(t, dir, append(env, "COSIGN="+bin), "sh", filepath.Join(dir, kit.ScriptName), trusted)
				if ok || !strings.Contains(out, "FAILED verification") {
					t.Errorf("sh verify.sh with %s passed:\n%s", filepath.Base(bin), out)
				} else if name := tc.file; !strings.Contains(out, name) {
					t.Errorf("verify.sh with %s does not name %s:\n%s", filepath.Base(bin), name, out)
				}
			}
			// Without cosign, as on an air-gapped host: verify.sh checks
			// SHA256SUMS's signature with openssl, so every tampering
			// fails but one made by the key's holder that only cosign's
			// provenance check sees.
			code, out := runScript(t, posix, dir, trusted)
			switch {
			case code == 0 && !tc.keyHolder:
				t.Errorf("sh verify.sh without cosign passed:\n%s", out)
			case code == 0:
				t.Logf("without cosign, verify.sh cannot see what the key's holder did: %s", tc.name)
			case code != 1 || !strings.Contains(out, "FAILED verification") || strings.Contains(out, "kit aoc-offline-kit verified"):
				t.Errorf("sh verify.sh without cosign: exit %d, want 1 and FAILED:\n%s", code, out)
			}
			if tc.cosignBlind != "" {
				t.Logf("cosign/sha256sum blind by nature: %s", tc.cosignBlind)
			}
		})
	}
}

// scriptTools are what verify.sh runs besides sh's built-ins, on a host
// without cosign: POSIX tools, sha256sum and openssl.
var scriptTools = []string{"sha256sum", "sed", "tr", "grep", "dirname", "openssl"}

// posixPath returns a directory holding links to scriptTools only: a PATH
// of an air-gapped host with no cosign and no bale.
func posixPath(t *testing.T, tools ...string) string {
	t.Helper()
	if tools == nil {
		tools = scriptTools
	}
	dir := t.TempDir()
	for _, name := range tools {
		p := tooltest.Require(t, name)
		if err := os.Symlink(p, filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// runScript runs sh verify.sh ARGS in dir with PATH set to path only and
// returns its exit status and output.
func runScript(t *testing.T, path, dir string, args ...string) (int, string) {
	t.Helper()
	sh := tooltest.Require(t, "sh")
	cmd := exec.Command(sh, append([]string{filepath.Join(dir, kit.ScriptName)}, args...)...)
	cmd.Dir = t.TempDir() // verify.sh works from anywhere
	cmd.Env = []string{"PATH=" + path, "HOME=" + t.TempDir()}
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return 0, string(out)
	case errors.As(err, &exit):
		return exit.ExitCode(), string(out)
	}
	t.Fatalf("sh verify.sh: %v\n%s", err, out)
	return 0, ""
}

// TestScriptWithoutCosign runs verify.sh as on an air-gapped host: no
// cosign, no bale, only POSIX tools, sha256sum and openssl on PATH (issue
// 23 point 8). It says "verified" only when SHA256SUMS's signature
// verifies with the trusted key; a runner replaced with SHA256SUMS
// rewritten to match fails, as does a bundle re-signed by another key;
// with no trusted key, or no signature verifier, it cannot verify (2);
// --checksums-only never says verified. Special files are refused before
// they are read (point 11), and the repository's development key is
// warned about even when offline-kit.json says devKey false (point 19).
func TestScriptWithoutCosign(t *testing.T) {
	key := kittest.DevKey(t)
	in := kittest.AOCInput(t, key)
	good, m := kittest.Build(t, in)
	n := namesOf(m)
	posix := posixPath(t)
	trusted := filepath.Join(t.TempDir(), "trusted.pub")
	writeFile(t, filepath.Dir(trusted), "trusted.pub", key.PublicKeyPEM())
	other := kittest.OtherKey(t)
	const verified = "kit aoc-offline-kit verified"

	type result struct {
		code int
		says []string // substrings the output must hold
	}
	tests := []struct {
		name   string
		mutate func(t *testing.T, dir string)
		args   func(dir string) []string // nil: the trusted key
		path   string                    // "": posix
		want   result
	}{
		{name: "intact kit, trusted key", want: result{0, []string{verified, "checked with openssl", "DEVELOPMENT key"}}},
		{name: "runner replaced, SHA256SUMS rewritten to match", mutate: func(t *testing.T, dir string) {
			writeFile(t, dir, n.runner, []byte("not the runner\n"))
			setSumsLine(t, dir, n.runner)
		}, want: result{1, []string{"SHA256SUMS: signature SHA256SUMS.cosign.bundle does not verify with the trusted key", "FAILED verification"}}},
		{name: "SHA256SUMS re-signed by another key", mutate: func(t *testing.T, dir string) {
			writeFile(t, dir, n.runner, []byte("not the runner\n"))
			setSumsLine(t, dir, n.runner)
			sig, err := other.SignBlob(sha256.Sum256(mustRead(t, filepath.Join(dir, kit.SumsName))))
			if err != nil {
				t.Fatal(err)
			}
			writeFile(t, dir, kit.SumsSignatureName, sig)
		}, want: result{1, []string{"does not verify with the trusted key", "FAILED verification"}}},
		{name: "whole kit re-signed by another key with its cosign.pub", mutate: func(t *testing.T, dir string) {
			writeFile(t, dir, n.runner, []byte("not the runner\n"))
			sig, _ := other.SignBlob(sha256.Sum256([]byte("not the runner\n")))
			writeFile(t, dir, n.runnerSig, sig)
			writeFile(t, dir, kit.PublicKeyName, other.PublicKeyPEM())
			kittest.Resign(t, dir, other, nil)
		}, want: result{1, []string{"cosign.pub: is not the trusted key", "FAILED verification"}}},
		{name: "runner signature swapped", mutate: func(t *testing.T, dir string) {
			writeFile(t, dir, n.runnerSig, mustRead(t, filepath.Join(dir, kit.SumsSignatureName)))
			kittest.Resign(t, dir, key, nil)
		}, want: result{1, []string{n.runner + ": signature " + n.runnerSig + " does not verify"}}},
		{name: "trusted key with CRLF line ends", args: func(dir string) []string {
			p := filepath.Join(t.TempDir(), "crlf.pub")
			writeFile(t, filepath.Dir(p), "crlf.pub", bytes.ReplaceAll(key.PublicKeyPEM(), []byte("\n"), []byte("\r\n")))
			return []string{p}
		}, want: result{0, []string{verified}}},
		{name: "empty trusted key", args: func(dir string) []string {
			p := filepath.Join(t.TempDir(), "empty.pub")
			writeFile(t, filepath.Dir(p), "empty.pub", nil)
			return []string{p}
		}, want: result{1, []string{"is not the trusted key"}}},
		{name: "no trusted key", args: func(string) []string { return nil }, want: result{2, []string{"no trusted key given", "usage"}}},
		{name: "trusted key missing", args: func(dir string) []string { return []string{filepath.Join(dir, "nope.pub")} }, want: result{2, []string{"not a regular file"}}},
		{name: "trusted key a link to /dev/zero", args: func(dir string) []string {
			p := filepath.Join(t.TempDir(), "zero.pub")
			if err := os.Symlink("/dev/zero", p); err != nil {
				t.Fatal(err)
			}
			return []string{p}
		}, want: result{2, []string{"not a regular file"}}},
		{name: "cosign.pub a link to /dev/zero", mutate: func(t *testing.T, dir string) {
			os.Remove(filepath.Join(dir, kit.PublicKeyName))
			if err := os.Symlink("/dev/zero", filepath.Join(dir, kit.PublicKeyName)); err != nil {
				t.Fatal(err)
			}
		}, want: result{1, []string{"cosign.pub: missing (or not a regular file)"}}},
		{name: "offline-kit.json a FIFO", mutate: func(t *testing.T, dir string) {
			os.Remove(filepath.Join(dir, kit.ManifestName))
			if err := syscall.Mkfifo(filepath.Join(dir, kit.ManifestName), 0o644); err != nil {
				t.Skipf("mkfifo: %v", err)
			}
		}, want: result{1, []string{"offline-kit.json: missing (or not a regular file)"}}},
		{name: "checksums only, intact", args: func(string) []string { return []string{kit.ChecksumsOnlyFlag} },
			want: result{0, []string{"signatures were NOT checked", "does NOT show who made"}}},
		{name: "checksums only, runner replaced and SHA256SUMS rewritten", mutate: func(t *testing.T, dir string) {
			writeFile(t, dir, n.runner, []byte("not the runner\n"))
			setSumsLine(t, dir, n.runner)
		}, args: func(string) []string { return []string{kit.ChecksumsOnlyFlag} }, want: result{0, []string{"signatures were NOT checked"}}},
		{name: "checksums only, runner flipped", mutate: func(t *testing.T, dir string) { flip(t, dir, n.runner) },
			args: func(string) []string { return []string{kit.ChecksumsOnlyFlag} }, want: result{1, []string{n.runner + ": sha256 does not match SHA256SUMS"}}},
		{name: "no signature verifier", path: "sha256sum sed tr grep dirname", want: result{2, []string{"no signature verifier"}}},
		{name: "unknown option", args: func(string) []string { return []string{"--no-check"} }, want: result{2, []string{"unknown option"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "kit")
			if err := os.CopyFS(dir, os.DirFS(good)); err != nil {
				t.Fatal(err)
			}
			if tt.mutate != nil {
				tt.mutate(t, dir)
			}
			args := []string{trusted}
			if tt.args != nil {
				args = tt.args(dir)
			}
			path := posix
			if tt.path != "" {
				path = posixPath(t, strings.Fields(tt.path)...)
			}
			code, out := runScript(t, path, dir, args...)
			if code != tt.want.code {
				t.Errorf("exit %d, want %d:\n%s", code, tt.want.code, out)
			}
			for _, s := range tt.want.says {
				if !strings.Contains(out, s) {
					t.Errorf("output does not say %q:\n%s", s, out)
				}
			}
			if tt.want.code != 0 || (len(args) > 0 && args[0] == kit.ChecksumsOnlyFlag) {
				if strings.Contains(out, "verified (") || strings.Contains(out, verified) {
					t.Errorf("says verified:\n%s", out)
				}
			}
		})
	}
}

// TestScriptDevKeyByPublicKey: verify.sh warns about the repository's
// development key when it is the kit's key, even if offline-kit.json
// says devKey false (issue 23 point 19).
func TestScriptDevKeyByPublicKey(t *testing.T) {
	key := kittest.DevKey(t)
	dir, m := kittest.Build(t, kittest.AOCInput(t, key))
	m.DevKey = false
	script, err := kit.Script(m)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, dir, kit.ScriptName, script)
	kittest.Resign(t, dir, key, func(m *kit.Manifest) { m.DevKey = false })
	if strings.Contains(string(mustRead(t, filepath.Join(dir, kit.ManifestName))), `"devKey": true`) {
		t.Fatal("the manifest still says devKey true")
	}
	code, out := runScript(t, posixPath(t), dir, kittest.DevPubPath(t))
	if code != 0 || !strings.Contains(out, "DEVELOPMENT key") {
		t.Fatalf("exit %d, no development-key warning:\n%s", code, out)
	}
}
