// Package sign loads cosign signing keys and produces the signatures a
// release kit carries: cosign blob bundles (for `cosign verify-blob --bundle`)
// and DSSE envelopes over in-toto statements (for
// `cosign verify-blob-attestation --signature`).
//
// Signing happens in process, never through a cosign subprocess. Keys are
// ECDSA P-256 in cosign's encrypted key format; signatures use RFC 6979
// deterministic nonces (crypto/ecdsa's Sign with a nil random source), so the
// same key and the same bytes always give the same signature, and a rebuilt
// kit is byte-identical, signatures included.
//
// Verification (Verifier) is the in-process counterpart bale verify uses: it
// accepts exactly what cosign accepts for these two forms, offline.
package sign

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"strconv"

	"github.com/secure-systems-lab/go-securesystemslib/encrypted"

	"github.com/bale-build/bale/internal/canonjson"
	"github.com/bale-build/bale/internal/digest"
	"github.com/bale-build/bale/internal/strictjson"
)

// Environment variables the key loading reads, named as cosign names them.
const (
	// EnvKey is where the spec's default key reference ("env://COSIGN_KEY")
	// points: the PEM text of the encrypted private key.
	EnvKey = "COSIGN_KEY"
	// EnvPassword holds the private key's password.
	EnvPassword = "COSIGN_PASSWORD"
	// EnvAllowDevKey set to "1" permits the spec's development key.
	EnvAllowDevKey = "COSIGN_ALLOW_DEV_KEY"
)

// PEM types of cosign's encrypted private keys: cosign generate-key-pair
// writes the first; older cosign releases wrote the second.
const (
	SigstorePrivateKeyPEMType = "ENCRYPTED SIGSTORE PRIVATE KEY"
	CosignPrivateKeyPEMType   = "ENCRYPTED COSIGN PRIVATE KEY"
)

// ErrNoKey is wrapped by the error of a release that finds no signing key
// and may not use the development key.
var ErrNoKey = errors.New("no signing key")

// Key is a decrypted ECDSA P-256 signing key.
type Key struct {
	priv   *ecdsa.PrivateKey
	pubPEM []byte
	// text is the sha256 of the encrypted PEM text the key was opened from.
	text   [sha256.Size]byte
	dev    bool
	source string
}

// maxKeyPEM bounds a private key's PEM text; cosign keys are under 1 KiB.
const maxKeyPEM = 64 << 10

// ParsePrivateKey decrypts a private key in cosign's encrypted format
// (PEM "ENCRYPTED SIGSTORE PRIVATE KEY" or "ENCRYPTED COSIGN PRIVATE KEY":
// scrypt and NaCl secretbox around PKCS #8), as cosign.LoadPrivateKey does.
// Only ECDSA P-256 keys are accepted. The repository's development key is
// recognised by its public key, however it is encrypted: Dev reports it.
func ParsePrivateKey(pemText, password []byte) (*Key, error) {
	if len(pemText) > maxKeyPEM {
		return nil, fmt.Errorf("private key is %d bytes, more than %d", len(pemText), maxKeyPEM)
	}
	block, _ := pem.Decode(pemText)
	if block == nil {
		return nil, errors.New("no PEM block: want a cosign encrypted private key")
	}
	if block.Type != SigstorePrivateKeyPEMType && block.Type != CosignPrivateKeyPEMType {
		return nil, fmt.Errorf("PEM type %q: want %q (cosign generate-key-pair)", block.Type, SigstorePrivateKeyPEMType)
	}
	der, err := encrypted.Decrypt(block.Bytes, password)
	if err != nil {
		return nil, fmt.Errorf("decrypt (wrong %s?): %w", EnvPassword, err)
	}
	pk, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return nil, fmt.Errorf("parse PKCS #8 private key: %w", err)
	}
	priv, ok := pk.(*ecdsa.PrivateKey)
	if !ok || priv.Curve != elliptic.P256() {
		return nil, fmt.Errorf("key type %T: only ECDSA P-256 keys are supported", pk)
	}
	pubDER, err := x509.MarshalPKIXPublicKey(&priv.PublicKey)
	if err != nil {
		return nil, fmt.Errorf("encode public key: %w", err)
	}
	return &Key{
		priv:   priv,
		pubPEM: pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER}),
		text:   sha256.Sum256(pemText),
		dev:    isDevPublicKey(&priv.PublicKey),
	}, nil
}

// Dev reports whether this is a development key: the repository's (known
// by its public key, however it was given) or the one a spec names as its
// signing.devKey. Nothing should trust what it signs.
func (k *Key) Dev() bool { return k.dev }

// Source names where the key came from (a file path or env://VAR), or ""
// for a key parsed from text.
func (k *Key) Source() string { return k.source }

// TextDigest is "sha256:HEX" of the encrypted PEM text the key was opened
// from: it names the key without decrypting it (Located.TextDigest is the
// same for the located text), as a release step's cache key does.
func (k *Key) TextDigest() string { return digest.Prefix + hex.EncodeToString(k.text[:]) }

// PublicKeyPEM is the public key as cosign writes cosign.pub (PKIX, PEM
// "PUBLIC KEY").
func (k *Key) PublicKeyPEM() []byte { return bytes.Clone(k.pubPEM) }

// Verifier is the verifier for this key's signatures.
func (k *Key) Verifier() *Verifier { return &Verifier{pub: &k.priv.PublicKey} }

// SignDigest signs a SHA-256 digest with a deterministic (RFC 6979) ECDSA
// signature, ASN.1 DER encoded as cosign expects.
func (k *Key) SignDigest(digest [sha256.Size]byte) ([]byte, error) {
	// A nil random source selects RFC 6979 in crypto/ecdsa (Go 1.24+).
	sig, err := k.priv.Sign(nil, digest[:], crypto.SHA256)
	if err != nil {
		return nil, fmt.Errorf("sign: %w", err)
	}
	return sig, nil
}

// BlobBundle is cosign's local bundle for a blob signed with a key
// (cosign.LocalSignedPayload without a certificate or Rekor entry): what
// `cosign sign-blob --key K --bundle B --tlog-upload=false` writes, and what
// `cosign verify-blob --key cosign.pub --bundle B --insecure-ignore-tlog`
// accepts in cosign v2 and v3.
type BlobBundle struct {
	Base64Signature string `json:"base64Signature"`
}

// SignBlob signs a blob given by its SHA-256 digest and returns the cosign
// bundle JSON for it (one line, newline-terminated).
func (k *Key) SignBlob(digest [sha256.Size]byte) ([]byte, error) {
	sig, err := k.SignDigest(digest)
	if err != nil {
		return nil, err
	}
	return canonjson.Compact(BlobBundle{Base64Signature: base64.StdEncoding.EncodeToString(sig)})
}

// Envelope is a DSSE envelope (https://github.com/secure-systems-lab/dsse).
type Envelope struct {
	PayloadType string      `json:"payloadType"`
	Payload     string      `json:"payload"`
	Signatures  []Signature `json:"signatures"`
}

// Signature is one signature of an Envelope. KeyID is empty, as cosign
// writes it for key-based attestations.
type Signature struct {
	KeyID string `json:"keyid"`
	Sig   string `json:"sig"`
}

// InTotoPayloadType is the DSSE payload type of in-toto statements; cosign
// verify-blob-attestation requires it.
const InTotoPayloadType = "application/vnd.in-toto+json"

// PAE is DSSE's pre-authentication encoding, the bytes actually signed:
// "DSSEv1" SP LEN(type) SP type SP LEN(body) SP body.
func PAE(payloadType string, payload []byte) []byte {
	var b bytes.Buffer
	b.Grow(len(payloadType) + len(payload) + 32)
	b.WriteString("DSSEv1 ")
	b.WriteString(strconv.Itoa(len(payloadType)))
	b.WriteByte(' ')
	b.WriteString(payloadType)
	b.WriteByte(' ')
	b.WriteString(strconv.Itoa(len(payload)))
	b.WriteByte(' ')
	b.Write(payload)
	return b.Bytes()
}

// SignDSSE wraps payload in a DSSE envelope signed over its PAE and returns
// the envelope JSON (one line, newline-terminated).
func (k *Key) SignDSSE(payloadType string, payload []byte) ([]byte, error) {
	sig, err := k.SignDigest(sha256.Sum256(PAE(payloadType, payload)))
	if err != nil {
		return nil, err
	}
	return canonjson.Compact(Envelope{
		PayloadType: payloadType,
		Payload:     base64.StdEncoding.EncodeToString(payload),
		Signatures:  []Signature{{Sig: base64.StdEncoding.EncodeToString(sig)}},
	})
}

// Verifier checks signatures against one ECDSA P-256 public key.
type Verifier struct {
	pub *ecdsa.PublicKey
}

// ParsePublicKey reads a PEM "PUBLIC KEY" (cosign.pub) holding an ECDSA
// P-256 key.
func ParsePublicKey(pemText []byte) (*Verifier, error) {
	if len(pemText) > maxKeyPEM {
		return nil, fmt.Errorf("public key is %d bytes, more than %d", len(pemText), maxKeyPEM)
	}
	block, rest := pem.Decode(pemText)
	if block == nil {
		return nil, errors.New("no PEM block: want a PEM \"PUBLIC KEY\"")
	}
	if block.Type != "PUBLIC KEY" {
		return nil, fmt.Errorf("PEM type %q: want \"PUBLIC KEY\"", block.Type)
	}
	if len(bytes.TrimSpace(rest)) != 0 {
		return nil, errors.New("trailing data after the public key")
	}
	pk, err := x509.ParsePKIXPublicKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("parse public key: %w", err)
	}
	pub, ok := pk.(*ecdsa.PublicKey)
	if !ok || pub.Curve != elliptic.P256() {
		return nil, fmt.Errorf("public key type %T: only ECDSA P-256 keys are supported", pk)
	}
	return &Verifier{pub: pub}, nil
}

// ErrBadSignature is wrapped by verification failures of a well-formed
// signature that does not match.
var ErrBadSignature = errors.New("signature does not verify")

// maxSignatureJSON bounds a bundle or envelope read for verification; an
// envelope carries the provenance statement, which is small.
const maxSignatureJSON = 16 << 20

// VerifyDigest checks an ASN.1 ECDSA signature over a SHA-256 digest.
func (v *Verifier) VerifyDigest(digest [sha256.Size]byte, sig []byte) error {
	if !ecdsa.VerifyASN1(v.pub, digest[:], sig) {
		return ErrBadSignature
	}
	return nil
}

// VerifyBlob checks a cosign blob bundle (BlobBundle JSON) against the
// blob's SHA-256 digest. A bundle carrying a certificate or Rekor entry is
// refused: bale's kits are key-signed and offline.
func (v *Verifier) VerifyBlob(bundleJSON []byte, digest [sha256.Size]byte) error {
	var b BlobBundle
	if err := strictjson.Unmarshal(bundleJSON, maxSignatureJSON, &b); err != nil {
		return fmt.Errorf("parse bundle: %w", err)
	}
	sig, err := base64.StdEncoding.DecodeString(b.Base64Signature)
	if err != nil {
		return fmt.Errorf("bundle base64Signature: %w", err)
	}
	return v.VerifyDigest(digest, sig)
}

// VerifyDSSE checks a DSSE envelope: it must carry exactly one signature,
// valid over PAE(payloadType, payload) with this key, and the payload type
// must be wantType. It returns the decoded payload.
func (v *Verifier) VerifyDSSE(envelopeJSON []byte, wantType string) ([]byte, error) {
	var env Envelope
	if err := strictjson.Unmarshal(envelopeJSON, maxSignatureJSON, &env); err != nil {
		return nil, fmt.Errorf("parse DSSE envelope: %w", err)
	}
	if env.PayloadType != wantType {
		return nil, fmt.Errorf("DSSE payloadType %q, want %q", env.PayloadType, wantType)
	}
	if len(env.Signatures) != 1 {
		return nil, fmt.Errorf("DSSE envelope has %d signatures, want 1", len(env.Signatures))
	}
	payload, err := base64.StdEncoding.DecodeString(env.Payload)
	if err != nil {
		return nil, fmt.Errorf("DSSE payload: %w", err)
	}
	sig, err := base64.StdEncoding.DecodeString(env.Signatures[0].Sig)
	if err != nil {
		return nil, fmt.Errorf("DSSE signature: %w", err)
	}
	if err := v.VerifyDigest(sha256.Sum256(PAE(env.PayloadType, payload)), sig); err != nil {
		return nil, fmt.Errorf("DSSE signature over PAE: %w", err)
	}
	return payload, nil
}

// Equal reports whether v and o verify with the same public key.
func (v *Verifier) Equal(o *Verifier) bool { return v.pub.Equal(o.pub) }
