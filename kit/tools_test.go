package kit_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
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
			ok, out := run(t, dir, append(env, "COSIGN="+bin), "sh", kit.ScriptName)
			if !ok || !strings.Contains(out, "kit aoc-offline-kit verified") || strings.Contains(out, "signatures NOT checked") {
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
		tamperCase{name: "subject digest changed, re-signed with the key", file: n.dataset, check: verify.CheckProvenance, cosign: []string{"dataset"},
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

	for ci, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "kit")
			if err := os.CopyFS(dir, os.DirFS(good)); err != nil {
				t.Fatal(err)
			}
			tc.mutate(t, dir, n)

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
				args := []string{filepath.Join(dir, kit.ScriptName)}
				if tc.trusted != nil {
					tf := filepath.Join(t.TempDir(), "trusted.pub")
					writeFile(t, filepath.Dir(tf), "trusted.pub", tc.trusted)
					args = append(args, tf)
				}
				ok, out := run(t, dir, append(env, "COSIGN="+bin), "sh", args...)
				if ok || !strings.Contains(out, "FAILED verification") {
					t.Errorf("sh verify.sh with %s passed:\n%s", filepath.Base(bin), out)
				} else if name := tc.file; !strings.Contains(out, name) {
					t.Errorf("verify.sh with %s does not name %s:\n%s", filepath.Base(bin), name, out)
				}
			}
			if len(bins) == 0 {
				// Without cosign verify.sh still checks names and sums.
				ok, out := run(t, dir, os.Environ(), "sh", filepath.Join(dir, kit.ScriptName))
				if ok && (tc.sha256sum || tc.cosignBlind != "") {
					t.Errorf("sh verify.sh without cosign passed:\n%s", out)
				}
			}
			if tc.cosignBlind != "" {
				t.Logf("cosign/sha256sum blind by nature: %s", tc.cosignBlind)
			}
		})
	}
}
