package sign

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"

	"github.com/bale-build/bale/internal/capread"
	"github.com/bale-build/bale/internal/digest"
)

// Where a located key's text came from, as Located.From says.
const (
	FromFile = "file" // a key file: the reference, or the path a variable holds
	FromEnv  = "env"  // the key's PEM text in an environment variable
	FromText = "text" // the key's PEM text given as the reference itself
)

// envPrefix marks a key reference naming an environment variable, as
// cosign's env://VAR.
const envPrefix = "env://"

// Located is a signing key found but not yet decrypted: decrypting costs
// about a second of scrypt, which a build whose signatures are cached
// never pays.
type Located struct {
	// PEM is the encrypted private key's PEM text.
	PEM []byte
	// Source names where it came from: a file path, env://VAR, or "PEM
	// text".
	Source string
	// From is FromFile, FromEnv or FromText.
	From string
	// Dev marks the key as a development key before it is decrypted: a
	// spec's signing.devKey. Open then requires the spec's development
	// public key to match it.
	Dev bool
}

// Locate finds the signing key ref names, without decrypting it: the one
// rule for a key reference, for bale build's spec key (COSIGN_KEY by
// default) and bale serve's --signing-key. ref is
//
//   - env://VAR: VAR's value is the key's PEM text, a file path, or (once)
//     another env://VAR; an unset or empty VAR locates nothing;
//   - PEM text ("-----BEGIN ..."): the key itself;
//   - anything else without "://": a file path, relative to the working
//     directory as cosign's --key is, read under a 64 KiB cap (a regular
//     file only: a FIFO or device is refused before it is opened).
//
// KMS and other URL references are refused by name: bale signs offline,
// with a key it holds. An empty ref, or a reference to an unset variable,
// returns (nil, nil). getenv nil means no environment.
func Locate(ref string, getenv func(string) string) (*Located, error) {
	if getenv == nil {
		getenv = func(string) string { return "" }
	}
	for range 2 {
		name, isEnv := strings.CutPrefix(ref, envPrefix)
		if !isEnv {
			break
		}
		if name == "" {
			return nil, fmt.Errorf("signing key reference %q names no environment variable", ref)
		}
		v := getenv(name)
		if v == "" {
			return nil, nil
		}
		if isPEM(v) {
			return &Located{PEM: []byte(v), Source: envPrefix + name, From: FromEnv}, nil
		}
		ref = v
	}
	switch {
	case ref == "":
		return nil, nil
	case isPEM(ref):
		if len(ref) > maxKeyPEM {
			return nil, fmt.Errorf("signing key text is %d bytes, more than %d", len(ref), maxKeyPEM)
		}
		return &Located{PEM: []byte(ref), Source: "PEM text", From: FromText}, nil
	case strings.Contains(ref, "://"):
		return nil, fmt.Errorf("signing key reference %q: only env://VAR and file paths are supported", ref)
	}
	text, err := capread.ReadFile(ref, maxKeyPEM)
	if err != nil {
		if errors.Is(err, capread.ErrTooLarge) {
			return nil, fmt.Errorf("load signing key %s: not a cosign key: %w", ref, err)
		}
		return nil, fmt.Errorf("load signing key %s: %w", ref, err)
	}
	return &Located{PEM: text, Source: ref, From: FromFile}, nil
}

// isPEM reports whether s is PEM text rather than a reference.
func isPEM(s string) bool { return strings.HasPrefix(strings.TrimSpace(s), "-----BEGIN") }

// TextDigest is "sha256:HEX" of the key's PEM text: it names the key
// without decrypting it (the password cannot change what a given key text
// signs, only whether it opens). Key.TextDigest is the same once opened.
func (l *Located) TextDigest() string {
	sum := sha256.Sum256(l.PEM)
	return digest.Prefix + hex.EncodeToString(sum[:])
}

// KnownDev reports whether the key is known to be a development key
// before it is decrypted: located as one (Dev), or the very text of the
// repository's development key file. A development key encrypted anew is
// known only once opened (Key.Dev).
func (l *Located) KnownDev() bool {
	return l.Dev || l.TextDigest() == digest.Prefix+devKeyTextSHA256
}

// Open decrypts the located key with password. devPub, when not nil, is a
// spec's development public key (signing.devKey.publicKey): a key with
// that public key is a development key too, and a key located as the
// development key must have it.
func (l *Located) Open(password, devPub []byte) (*Key, error) {
	what := "signing key"
	if l.Dev {
		what = "development key"
	}
	k, err := ParsePrivateKey(l.PEM, password)
	if err != nil {
		return nil, fmt.Errorf("load %s %s: %w", what, l.Source, err)
	}
	k.source = l.Source
	k.dev = k.dev || l.Dev
	if devPub != nil {
		pub, err := ParsePublicKey(devPub)
		if err != nil {
			return nil, fmt.Errorf("load development public key: %w", err)
		}
		same := pub.Equal(k.Verifier())
		if l.Dev && !same {
			return nil, fmt.Errorf("development public key does not match development key %s", l.Source)
		}
		k.dev = k.dev || same
	}
	return k, nil
}
