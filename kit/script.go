package kit

import (
	"bytes"
	"fmt"
	"slices"
	"strings"
)

// Offline flags each cosign version needs to verify a key-signed kit
// without network: the kit has no transparency-log entry, and both cosign
// v2.6 and v3.1 then require --insecure-ignore-tlog with --key.
const CosignOfflineFlags = "--insecure-ignore-tlog"

// shellQuote single-quotes s for POSIX sh.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// Script renders verify.sh for the kit m describes. The script is POSIX sh
// and needs only sha256sum; when cosign is on PATH (or $COSIGN names it) it
// checks every signature with the shipped cosign.pub. It exits 1 naming the
// file on any mismatch, 2 when sha256sum is missing, and warns on stderr for
// a development-key kit and when cosign is absent.
func Script(m *Manifest) ([]byte, error) {
	if !ValidName(m.Name) {
		return nil, fmt.Errorf("%s: kit name %q is not a plain file name", ScriptName, m.Name)
	}
	names := []string{SumsName, SumsSignatureName, ManifestName}
	listed := []string{ManifestName} // what SHA256SUMS lists
	for _, a := range m.Artifacts {
		if !ValidName(a.Name) {
			return nil, fmt.Errorf("%s: artifact name %q is not a plain file name", ScriptName, a.Name)
		}
		names = append(names, a.Name)
		listed = append(listed, a.Name)
	}
	slices.Sort(names)
	slices.Sort(listed)
	extras := []string{}
	if m.Archive != "" {
		extras = append(extras, m.Archive, m.Archive+".sha256")
	}

	var b bytes.Buffer
	w := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	w("#!/bin/sh\n")
	w("# verify.sh - checks the offline kit %s (release %s), written by bale.\n", m.Name, m.Release)
	w("# Needs only sha256sum; checks every signature with the shipped %s when\n", PublicKeyName)
	w("# cosign is on PATH (or COSIGN=/path/to/cosign). Run it from anywhere:\n")
	w("#   sh verify.sh [TRUSTED.pub]\n")
	w("# With TRUSTED.pub (the release key obtained out of band), the shipped\n")
	w("# %s must be that key; without it the kit proves integrity, not origin.\n", PublicKeyName)
	w("# Exit 0: the kit is intact. 1: a check failed (named on stderr). 2: sha256sum missing.\n")
	w("set -u\n")
	w("trusted=${1:-}\n")
	w("case $trusted in ''|/*) ;; *) trusted=$PWD/$trusted ;; esac\n")
	w("cd -- \"$(dirname -- \"$0\")\" || exit 2\n")
	w("fail=0\n")
	w("bad() { printf 'verify.sh: FAIL: %%s\\n' \"$*\" >&2; fail=1; }\n")
	w("ok() { printf 'verify.sh: ok: %%s\\n' \"$*\"; }\n")
	if m.DevKey {
		w("dev_warning() { echo 'verify.sh: WARNING: this kit is signed with a DEVELOPMENT key (COSIGN_ALLOW_DEV_KEY=1); do not trust it in production' >&2; }\n")
	} else {
		w("dev_warning() { :; }\n")
	}
	w("dev_warning\n\n")

	w("command -v sha256sum >/dev/null 2>&1 || { echo 'verify.sh: sha256sum not found on PATH' >&2; exit 2; }\n\n")

	w("if [ -n \"$trusted\" ]; then\n\tif [ ! -f \"$trusted\" ]; then echo \"verify.sh: trusted key $trusted not found\" >&2; exit 2; fi\n")
	w("\tif [ \"$(sha256sum < \"$trusted\")\" = \"$(sha256sum < %s)\" ]; then ok \"%s is the trusted key\"; else bad \"%s: is not the trusted key $trusted\"; fi\n", PublicKeyName, PublicKeyName, PublicKeyName)
	w("else\n\techo 'verify.sh: note: no trusted key given; checking with the shipped %s (integrity, not origin)' >&2\nfi\n\n", PublicKeyName)
	w("# The kit's files: each present, nothing else beside them.\n")
	w("for f in")
	for _, n := range names {
		w(" %s", shellQuote(n))
	}
	w("; do\n\t[ -f \"$f\" ] && [ ! -L \"$f\" ] || bad \"$f: missing (or not a regular file)\"\ndone\n")
	w("for f in * .[!.]* ..?*; do\n\t[ -e \"$f\" ] || [ -L \"$f\" ] || continue\n\tcase $f in\n\t")
	all := append(slices.Clone(names), extras...)
	for i, n := range all {
		if i > 0 {
			w("|")
		}
		w("%s", shellQuote(n))
	}
	w(") ;;\n\t*) bad \"$f: not part of the kit\" ;;\n\tesac\ndone\n\n")

	w("# SHA256SUMS lists exactly the kit's files, and each matches.\n")
	w("want_listed=%s\n", shellQuote(strings.Join(listed, "\n")))
	w("if [ \"$(sed 's/^[0-9a-f]\\{64\\}  //' %s)\" != \"$want_listed\" ]; then bad '%s: does not list exactly the kit'\"'\"'s files'; fi\n", SumsName, SumsName)
	w("if out=$(sha256sum -c --strict %s 2>&1); then\n\tok %s\nelse\n", SumsName, SumsName)
	w("\tprintf '%%s\\n' \"$out\" | grep -v ': OK$' >&2\n")
	w("\tfor f in $(printf '%%s\\n' \"$out\" | sed -n 's/: FAILED.*$//p'); do bad \"$f: sha256 does not match %s\"; done\n", SumsName)
	w("\tbad '%s: check failed'\nfi\n", SumsName)
	if m.Archive != "" {
		w("if [ -f %s ]; then\n\tif sha256sum -c --strict --quiet %s >/dev/null 2>&1; then ok %s; else bad %s; fi\nfi\n",
			shellQuote(m.Archive+".sha256"), shellQuote(m.Archive+".sha256"), shellQuote(m.Archive), shellQuote(m.Archive+": sha256 does not match "+m.Archive+".sha256"))
	}
	w("\n")

	w("# Signatures, with cosign (v2.6 and v3.1 both need %s offline).\n", CosignOfflineFlags)
	w("cosign=${COSIGN:-cosign}\n")
	w("if command -v \"$cosign\" >/dev/null 2>&1; then\n")
	w("\tblob() {\n\t\tif out=$(\"$cosign\" verify-blob --key %s %s --bundle \"$1\" \"$2\" 2>&1); then ok \"$2: signature $1\"\n", PublicKeyName, CosignOfflineFlags)
	w("\t\telse printf '%%s\\n' \"$out\" >&2; bad \"$2: signature $1 does not verify with %s\"; fi\n\t}\n", PublicKeyName)
	w("\tattestation() {\n\t\tif out=$(\"$cosign\" verify-blob-attestation --key %s %s --type slsaprovenance1 --signature \"$1\" \"$2\" 2>&1); then ok \"$2: provenance $1\"\n", PublicKeyName, CosignOfflineFlags)
	w("\t\telse printf '%%s\\n' \"$out\" >&2; bad \"$2: provenance $1 does not verify with %s\"; fi\n\t}\n", PublicKeyName)
	w("\tblob %s %s\n", SumsSignatureName, SumsName)
	signers := slices.Clone(m.Artifacts)
	slices.SortFunc(signers, func(a, b Artifact) int { return strings.Compare(a.Name, b.Name) })
	for _, a := range signers {
		switch a.Kind {
		case KindSignature:
			w("\tblob %s %s\n", shellQuote(a.Name), shellQuote(a.Signs))
		case KindProvenance:
			w("\tattestation %s %s\n", shellQuote(a.Name), shellQuote(a.Signs))
		}
	}
	w("else\n\techo \"verify.sh: WARNING: $cosign not on PATH: signatures NOT checked (only checksums)\" >&2\nfi\n\n")

	w("if [ \"$fail\" -ne 0 ]; then\n\tdev_warning\n\techo %s >&2\n\texit 1\nfi\n", shellQuote("verify.sh: kit "+m.Name+" FAILED verification"))
	w("dev_warning\necho %s\n", shellQuote("verify.sh: kit "+m.Name+" verified"))
	return b.Bytes(), nil
}
