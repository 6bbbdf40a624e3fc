package sign

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/x509"
	"encoding/base64"
)

// DevPublicKeyBase64 is the repository's development public key
// (testdata/keys/cosign.dev.pub), its PKIX DER in base64: the body of its
// PEM text without line breaks. Its private half and password are public,
// so bale recognises it by this public key wherever a key is given
// (COSIGN_KEY, bale serve --signing-key, a spec's signing.key) and treats
// it as the development key: refused without COSIGN_ALLOW_DEV_KEY=1,
// named in offline-kit.json, warned about by bale verify and verify.sh.
// A test pins it to the committed file.
const DevPublicKeyBase64 = "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEwiKbHpO3CRxm7Z9TaL2KlrymxQ9jI7Gj8C0GPx2oijNaDnxml4933d4mr6WCmgK90BqtAYVu8yXkToTIlpibSw=="

// devKeyTextSHA256 is the sha256 of the development private key file's
// text (testdata/keys/cosign.dev.key), so that a build whose signatures
// are cached knows it without decrypting it. A test pins it.
const devKeyTextSHA256 = "eed67a985f94a8b466a931d2c2e145229ee5adaad1bdfa9e22d81f3afbfff90e"

// isDevPublicKey reports whether pub is the repository's development key.
func isDevPublicKey(pub *ecdsa.PublicKey) bool {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return false
	}
	want, err := base64.StdEncoding.DecodeString(DevPublicKeyBase64)
	return err == nil && bytes.Equal(der, want)
}

// Dev reports whether v's key is the repository's development key.
func (v *Verifier) Dev() bool { return isDevPublicKey(v.pub) }
