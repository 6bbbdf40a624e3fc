package sign

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/sha256"
	"crypto/x509"
	"encoding/asn1"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	ssldsse "github.com/secure-systems-lab/go-securesystemslib/dsse"
	"github.com/secure-systems-lab/go-securesystemslib/encrypted"
	"github.com/sigstore/cosign/v2/pkg/cosign"
	"github.com/sigstore/sigstore/pkg/signature"
	sigdsse "github.com/sigstore/sigstore/pkg/signature/dsse"

	"github.com/bale-build/bale/internal/fixtures"
)

var (
	devKeyPath = filepath.Join("..", "testdata", "keys", "cosign.dev.key")
	devPubPath = filepath.Join("..", "testdata", "keys", "cosign.dev.pub")
)

// env is a fake process environment for Locate.
func env(kv ...string) func(string) string {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return func(k string) string { return m[k] }
}

func readFixture(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// encryptKey writes priv in cosign's encrypted format with password.
func encryptKey(t *testing.T, priv crypto.PrivateKey, password string) []byte {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	enc, err := encrypted.Encrypt(der, []byte(password))
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: SigstorePrivateKeyPEMType, Bytes: enc})
}

func TestLocateOpen(t *testing.T) {
	devPub := readFixture(t, devPubPath)
	other, err := ecdsa.GenerateKey(elliptic.P256(), nil)
	if err != nil {
		t.Fatal(err)
	}
	otherPEM := encryptKey(t, other, "prod-pass")
	otherFile := filepath.Join(t.TempDir(), "release.key")
	if err := os.WriteFile(otherFile, otherPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	otherPub := filepath.Join(t.TempDir(), "other.pub")
	k, err := ParsePrivateKey(otherPEM, []byte("prod-pass"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(otherPub, k.PublicKeyPEM(), 0o644); err != nil {
		t.Fatal(err)
	}
	helloFile := filepath.Join(t.TempDir(), "hello")
	if err := os.WriteFile(helloFile, []byte("hello"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, edPriv, _ := ed25519.GenerateKey(nil)
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), nil)
	// The development key encrypted anew, under another password: the
	// same public key, other text.
	devPriv, err := ParsePrivateKey(readFixture(t, devKeyPath), []byte(fixtures.DevKeyPassword))
	if err != nil {
		t.Fatal(err)
	}
	reencrypted := encryptKey(t, devPriv.priv, "another-password")

	devLocated := func(string, func(string) string) (*Located, error) {
		return &Located{PEM: readFixture(t, devKeyPath), Source: devKeyPath, From: FromFile, Dev: true}, nil
	}
	tests := []struct {
		name     string
		ref      string
		env      func(string) string
		locate   func(string, func(string) string) (*Located, error) // nil: Locate
		devPub   []byte
		password string
		wantNil  bool // Locate finds nothing
		wantFrom string
		wantDev  bool
		wantPub  []byte // nil: the generated release key
		wantErr  string
	}{
		{name: "dev key allowed", locate: devLocated, devPub: devPub, password: fixtures.DevKeyPassword, wantFrom: FromFile, wantDev: true, wantPub: devPub},
		{name: "release key from env", ref: "env://COSIGN_KEY", env: env("COSIGN_KEY", string(otherPEM)), devPub: devPub, password: "prod-pass", wantFrom: FromEnv},
		{name: "release key from file", ref: otherFile, password: "prod-pass", wantFrom: FromFile},
		// The server's --signing-key env://X with X holding a path: a path,
		// as bale build has always read it.
		{name: "release key from a file named by a variable", ref: "env://X", env: env("X", otherFile), password: "prod-pass", wantFrom: FromFile},
		{name: "variable naming a variable", ref: "env://X", env: env("X", "env://Y", "Y", string(otherPEM)), password: "prod-pass", wantFrom: FromEnv},
		{name: "release key as PEM text", ref: string(otherPEM), password: "prod-pass", wantFrom: FromText},
		{name: "no key", ref: "env://COSIGN_KEY", env: env(), wantNil: true},
		{name: "empty reference", ref: "", wantNil: true},
		// Issue 23 point 19: the development key is known by its public
		// key however it is given.
		{name: "repository dev key as COSIGN_KEY", ref: "env://COSIGN_KEY", env: env("COSIGN_KEY", string(readFixture(t, devKeyPath))), password: fixtures.DevKeyPassword, wantFrom: FromEnv, wantDev: true, wantPub: devPub},
		{name: "repository dev key as a file", ref: devKeyPath, password: fixtures.DevKeyPassword, wantFrom: FromFile, wantDev: true, wantPub: devPub},
		{name: "repository dev key encrypted anew", ref: string(reencrypted), password: "another-password", wantFrom: FromText, wantDev: true, wantPub: devPub},
		{name: "a spec's own dev public key marks the key", ref: otherFile, devPub: readFixture(t, otherPub), password: "prod-pass", wantFrom: FromFile, wantDev: true},
		{name: "wrong password", locate: devLocated, password: "nope",
			wantErr: "load development key ../testdata/keys/cosign.dev.key: decrypt (wrong COSIGN_PASSWORD?)"},
		{name: "dev public key mismatch", locate: devLocated, devPub: readFixture(t, otherPub), password: fixtures.DevKeyPassword,
			wantErr: "does not match development key"},
		{name: "missing key file", ref: filepath.Join(t.TempDir(), "absent.key"),
			wantErr: "load signing key"},
		{name: "kms reference refused", ref: "awskms:///alias/x",
			wantErr: "only env://VAR and file paths"},
		{name: "env reference without name", ref: "env://",
			wantErr: "names no environment variable"},
		{name: "not PEM", ref: "env://K", env: env("K", helloFile),
			wantErr: "load signing key " + helloFile + ": no PEM block"},
		{name: "unencrypted PEM", ref: "env://K", env: env("K", string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: []byte{1}}))),
			wantErr: "PEM type \"EC PRIVATE KEY\""},
		{name: "ed25519 refused", ref: "env://K", env: env("K", string(encryptKey(t, edPriv, "p"))), password: "p",
			wantErr: "only ECDSA P-256"},
		{name: "P-384 refused", ref: "env://K", env: env("K", string(encryptKey(t, p384, "p"))), password: "p",
			wantErr: "only ECDSA P-256"},
		{name: "a directory is not a key", ref: t.TempDir(),
			wantErr: "not a regular file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			locate := tt.locate
			if locate == nil {
				locate = Locate
			}
			l, err := locate(tt.ref, tt.env)
			var k *Key
			if err == nil && l != nil {
				k, err = l.Open([]byte(tt.password), tt.devPub)
			}
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Locate/Open: err %v, want containing %q", err, tt.wantErr)
				}
				if tt.name == "missing key file" && !errors.Is(err, os.ErrNotExist) {
					t.Errorf("err %v does not say the file does not exist", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Locate/Open: %v", err)
			}
			if tt.wantNil {
				if l != nil {
					t.Fatalf("Locate found %s, want nothing", l.Source)
				}
				return
			}
			if l == nil {
				t.Fatal("Locate found nothing")
			}
			if l.From != tt.wantFrom {
				t.Errorf("From = %q, want %q", l.From, tt.wantFrom)
			}
			if k.Dev() != tt.wantDev {
				t.Errorf("Dev() = %t, want %t", k.Dev(), tt.wantDev)
			}
			if k.TextDigest() != l.TextDigest() {
				t.Errorf("TextDigest %s, located %s", k.TextDigest(), l.TextDigest())
			}
			want := tt.wantPub
			if want == nil {
				want = readFixture(t, otherPub)
			}
			if !bytes.Equal(k.PublicKeyPEM(), want) {
				t.Errorf("public key:\n%s\nwant:\n%s", k.PublicKeyPEM(), want)
			}
		})
	}
}

// TestLocateFIFO: a key reference naming a FIFO is refused at once, not
// read (which would block for ever).
func TestLocateFIFO(t *testing.T) {
	p := filepath.Join(t.TempDir(), "key.fifo")
	if err := syscall.Mkfifo(p, 0o600); err != nil {
		t.Skipf("mkfifo: %v", err)
	}
	done := make(chan error, 1)
	go func() { _, err := Locate("env://K", env("K", p)); done <- err }()
	if err := <-done; err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Fatalf("Locate of a FIFO: %v", err)
	}
}

// TestDevKeyPinned: the development key sign recognises is the committed
// one (rotating the key must update sign), known by its text before it is
// decrypted and by its public key after.
func TestDevKeyPinned(t *testing.T) {
	pub := readFixture(t, devPubPath)
	block, _ := pem.Decode(pub)
	if block == nil || base64.StdEncoding.EncodeToString(block.Bytes) != DevPublicKeyBase64 {
		t.Fatalf("DevPublicKeyBase64 is not %s", devPubPath)
	}
	v, err := ParsePublicKey(pub)
	if err != nil || !v.Dev() {
		t.Fatalf("the committed development public key is not recognised: %v", err)
	}
	if sum := sha256.Sum256(readFixture(t, devKeyPath)); hex.EncodeToString(sum[:]) != devKeyTextSHA256 {
		t.Fatalf("devKeyTextSHA256 is not the sha256 of %s", devKeyPath)
	}
	l, err := Locate(devKeyPath, nil)
	if err != nil || !l.KnownDev() {
		t.Fatalf("Locate(%s): KnownDev false (%v)", devKeyPath, err)
	}
	other, _ := ecdsa.GenerateKey(elliptic.P256(), nil)
	if (&Verifier{pub: &other.PublicKey}).Dev() {
		t.Fatal("another key is taken for the development key")
	}
}

func devKey(t testing.TB) *Key {
	t.Helper()
	l := &Located{PEM: readFixtureTB(t, devKeyPath), Source: devKeyPath, From: FromFile, Dev: true}
	k, err := l.Open([]byte(fixtures.DevKeyPassword), readFixtureTB(t, devPubPath))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func readFixtureTB(t testing.TB, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestRFC6979 pins deterministic signing to RFC 6979's P-256/SHA-256
// vectors (A.2.5), so a toolchain that stopped honouring the nil random
// source would be caught here rather than as a drifting golden digest.
func TestRFC6979(t *testing.T) {
	d, _ := hex.DecodeString("C9AFA9D845BA75166B5C215767B1D6934E50C3DB36E89B127B8A622B120F6721")
	priv, err := ecdsa.ParseRawPrivateKey(elliptic.P256(), d)
	if err != nil {
		t.Fatal(err)
	}
	k := &Key{priv: priv}
	for _, tt := range []struct{ msg, r, s string }{
		{"sample", "EFD48B2AACB6A8FD1140DD9CD45E81D69D2C877B56AAF991C34D0EA84EAF3716", "F7CB1C942D657C41D436C7A1B6E29F65F3E900DBB9AFF4064DC4AB2F843ACDA8"},
		{"test", "F1ABB023518351CD71D881567B1EA663ED3EFCF6C5132B354F28D3B0B7D38367", "019F4113742A2B14BD25926B49C649155F267E60D3814B4C0CC84250E46F0083"},
	} {
		sig, err := k.SignDigest(sha256.Sum256([]byte(tt.msg)))
		if err != nil {
			t.Fatal(err)
		}
		var rs struct{ R, S *big.Int }
		if _, err := asn1.Unmarshal(sig, &rs); err != nil {
			t.Fatal(err)
		}
		if got := strings.ToUpper(hex.EncodeToString(rs.R.FillBytes(make([]byte, 32)))); got != tt.r {
			t.Errorf("%s: r = %s, want %s", tt.msg, got, tt.r)
		}
		if got := strings.ToUpper(hex.EncodeToString(rs.S.FillBytes(make([]byte, 32)))); got != tt.s {
			t.Errorf("%s: s = %s, want %s", tt.msg, got, tt.s)
		}
	}
}

// TestPAEVector is the DSSE specification's PAE example
// (secure-systems-lab/dsse, protocol.md).
func TestPAEVector(t *testing.T) {
	got := PAE("http://example.com/HelloWorld", []byte("hello world"))
	if want := "DSSEv1 29 http://example.com/HelloWorld 11 hello world"; string(got) != want {
		t.Fatalf("PAE = %q, want %q", got, want)
	}
	// The same through the reference implementation cosign verifies with.
	if ref := ssldsse.PAE("http://example.com/HelloWorld", []byte("hello world")); !bytes.Equal(got, ref) {
		t.Fatalf("PAE = %q, go-securesystemslib says %q", got, ref)
	}
	if got := PAE("", nil); string(got) != "DSSEv1 0  0 " {
		t.Fatalf("empty PAE = %q", got)
	}
}

// TestSignBlobCosignLibrary checks bale's blob bundle and DSSE envelope with
// cosign's and sigstore's own Go verifiers, and that they are deterministic.
func TestSignBlobCosignLibrary(t *testing.T) {
	k := devKey(t)
	blob := []byte("aoc-backfill-runner.tar.gz bytes")
	digest := sha256.Sum256(blob)
	b1, err := k.SignBlob(digest)
	if err != nil {
		t.Fatal(err)
	}
	b2, _ := k.SignBlob(digest)
	if !bytes.Equal(b1, b2) {
		t.Fatalf("two signatures of the same blob differ:\n%s%s", b1, b2)
	}

	// cosign's own key loader reads the same key, and its verifier accepts
	// bale's signature.
	sv, err := cosign.LoadPrivateKey(readFixture(t, devKeyPath), []byte(fixtures.DevKeyPassword), nil)
	if err != nil {
		t.Fatal(err)
	}
	var lp cosign.LocalSignedPayload
	if err := json.Unmarshal(b1, &lp); err != nil {
		t.Fatal(err)
	}
	sig, _ := base64.StdEncoding.DecodeString(lp.Base64Signature)
	if err := sv.VerifySignature(bytes.NewReader(sig), bytes.NewReader(blob)); err != nil {
		t.Fatalf("cosign's verifier refuses bale's signature: %v", err)
	}
	if err := k.Verifier().VerifyBlob(b1, digest); err != nil {
		t.Fatalf("VerifyBlob: %v", err)
	}
	if err := k.Verifier().VerifyBlob(b1, sha256.Sum256([]byte("other"))); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("VerifyBlob of other content: %v", err)
	}

	payload := []byte(`{"_type":"https://in-toto.io/Statement/v1"}`)
	e1, err := k.SignDSSE(InTotoPayloadType, payload)
	if err != nil {
		t.Fatal(err)
	}
	e2, _ := k.SignDSSE(InTotoPayloadType, payload)
	if !bytes.Equal(e1, e2) {
		t.Fatal("two envelopes of the same payload differ")
	}
	var env ssldsse.Envelope
	if err := json.Unmarshal(e1, &env); err != nil {
		t.Fatal(err)
	}
	pub, _ := sv.PublicKey()
	ver, err := signature.LoadVerifier(pub, crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	dv, err := ssldsse.NewEnvelopeVerifier(&sigdsse.VerifierAdapter{SignatureVerifier: ver})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := dv.Verify(context.Background(), &env); err != nil {
		t.Fatalf("go-securesystemslib refuses bale's envelope: %v", err)
	}
	got, err := k.Verifier().VerifyDSSE(e1, InTotoPayloadType)
	if err != nil || !bytes.Equal(got, payload) {
		t.Fatalf("VerifyDSSE = %q, %v", got, err)
	}
}

func TestVerifyDSSETampered(t *testing.T) {
	k := devKey(t)
	payload := []byte(`{"subject":[]}`)
	good, err := k.SignDSSE(InTotoPayloadType, payload)
	if err != nil {
		t.Fatal(err)
	}
	var env Envelope
	if err := json.Unmarshal(good, &env); err != nil {
		t.Fatal(err)
	}
	other, _ := ecdsa.GenerateKey(elliptic.P256(), nil)
	otherKey := &Key{priv: other}
	mutate := func(f func(*Envelope)) []byte {
		e := env
		e.Signatures = append([]Signature(nil), env.Signatures...)
		f(&e)
		b, _ := json.Marshal(e)
		return b
	}
	tests := []struct {
		name, want string
		env        []byte
		v          *Verifier
	}{
		{"payloadType changed", "DSSE payloadType \"application/json\"", mutate(func(e *Envelope) { e.PayloadType = "application/json" }), nil},
		{"payload changed", "signature does not verify", mutate(func(e *Envelope) { e.Payload = base64.StdEncoding.EncodeToString([]byte(`{"subject":[1]}`)) }), nil},
		{"no signature", "has 0 signatures", mutate(func(e *Envelope) { e.Signatures = nil }), nil},
		{"two signatures", "has 2 signatures", mutate(func(e *Envelope) { e.Signatures = append(e.Signatures, e.Signatures[0]) }), nil},
		{"bad base64", "DSSE payload", mutate(func(e *Envelope) { e.Payload = "!!" }), nil},
		{"wrong key", "signature does not verify", good, otherKey.Verifier()},
		{"unknown field", "unknown field", []byte(`{"payloadType":"x","payload":"","signatures":[],"extra":1}`), nil},
		{"trailing data", "trailing data", append(bytes.Clone(good), "{}"...), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := tt.v
			if v == nil {
				v = k.Verifier()
			}
			_, err := v.VerifyDSSE(tt.env, InTotoPayloadType)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("VerifyDSSE: %v, want %q", err, tt.want)
			}
		})
	}
}

func TestParsePublicKey(t *testing.T) {
	if _, err := ParsePublicKey(readFixture(t, devPubPath)); err != nil {
		t.Fatal(err)
	}
	for name, text := range map[string]string{
		"empty":    "",
		"private":  string(readFixture(t, devKeyPath)),
		"trailing": string(readFixture(t, devPubPath)) + "junk",
	} {
		if _, err := ParsePublicKey([]byte(text)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// TestPEMTypes: the PEM types sign accepts are cosign's own (sign does not
// link cosign for two strings; this test does).
func TestPEMTypes(t *testing.T) {
	if SigstorePrivateKeyPEMType != cosign.SigstorePrivateKeyPemType || CosignPrivateKeyPEMType != cosign.CosignPrivateKeyPemType {
		t.Fatalf("PEM types %q %q, cosign's %q %q", SigstorePrivateKeyPEMType, CosignPrivateKeyPEMType, cosign.SigstorePrivateKeyPemType, cosign.CosignPrivateKeyPemType)
	}
}
