package kit

import (
	"bytes"
	"fmt"
	"slices"
	"strings"

	"github.com/bale-build/bale/sign"
)

// Offline flags each cosign version needs to verify a key-signed kit
// without network: the kit has no transparency-log entry, and both cosign
// v2.6 and v3.1 then require --insecure-ignore-tlog with --key.
const CosignOfflineFlags = "--insecure-ignore-tlog"

// ChecksumsOnlyFlag is verify.sh's flag for checking the files against
// SHA256SUMS alone: it proves integrity against a list anyone could have
// rewritten, never origin, and the script says so.
const ChecksumsOnlyFlag = "--checksums-only"

// shellQuote single-quotes s for POSIX sh.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// Script renders verify.sh for the kit m describes: POSIX sh, run as
//
//	sh verify.sh TRUSTED.pub
//
// where TRUSTED.pub is the release's public key obtained out of band. It
// says "verified" only when SHA256SUMS's signature (SHA256SUMS.cosign.bundle)
// verifies with that key — checked with cosign where present (COSIGN names
// it, else cosign on PATH), else with openssl (the bundle's ECDSA P-256
// signature over SHA256SUMS's sha256), else with bale verify — and every
// file matches SHA256SUMS; with cosign it also checks every other
// signature. Every file is checked to be a regular file, not a link,
// before anything reads it, the trusted key too. Exit status: 0 verified;
// 1 a check failed (named on stderr); 2 it cannot verify (no trusted key,
// no sha256sum, no signature verifier, bad usage). With ChecksumsOnlyFlag
// instead of a key it checks the files against SHA256SUMS only, says that
// signatures were NOT checked, and never says "verified". A kit signed
// with a development key (offline-kit.json's devKey, or the repository's
// development key as cosign.pub or the trusted key) is warned about on
// stderr.
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
		extras = append(extras, m.Archive, ArchiveChecksumName(m.Archive))
	}

	var b bytes.Buffer
	w := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	w("#!/bin/sh\n")
	w("# verify.sh - checks the offline kit %s (release %s), written by bale.\n", m.Name, m.Release)
	w("#\n")
	w("#   sh verify.sh TRUSTED.pub\n")
	w("#\n")
	w("# TRUSTED.pub is the release's public key, obtained out of band: not the\n")
	w("# kit's own %s, which whoever carried the kit could have replaced. The kit\n", PublicKeyName)
	w("# is verified only when %s's signature (%s)\n", SumsName, SumsSignatureName)
	w("# verifies with TRUSTED.pub and every file matches %s. The signature\n", SumsName)
	w("# is checked with cosign (COSIGN=/path/to/cosign, or cosign on PATH; it\n")
	w("# then checks every other signature too), else openssl, else bale verify.\n")
	w("#\n")
	w("#   sh verify.sh %s\n", ChecksumsOnlyFlag)
	w("#\n")
	w("# checks the files against %s only: that proves nothing about who made\n", SumsName)
	w("# the kit (anyone can rewrite %s), and the script says so.\n", SumsName)
	w("#\n")
	w("# Exit 0: verified (or, checksums only, every file matches). 1: a check\n")
	w("# failed, named on stderr. 2: cannot verify (no trusted key, no sha256sum,\n")
	w("# no signature verifier, bad usage).\n")
	w("set -u\n")
	w("LC_ALL=C\nexport LC_ALL\n")
	w("usage='usage: sh verify.sh TRUSTED.pub  (the release'\"'\"'s public key, obtained out of band)\n       sh verify.sh %s  (files against %s only; signatures NOT checked)'\n", ChecksumsOnlyFlag, SumsName)
	w("mode=verify\ntrusted=\n")
	w("case ${1-} in\n")
	w("%s) mode=checksums ;;\n", ChecksumsOnlyFlag)
	w("'') printf 'verify.sh: no trusted key given: without the release'\"'\"'s public key nothing shows who made the kit\\n%%s\\n' \"$usage\" >&2; exit 2 ;;\n")
	w("-*) printf 'verify.sh: unknown option %%s\\n%%s\\n' \"$1\" \"$usage\" >&2; exit 2 ;;\n")
	w("*) trusted=$1 ;;\n")
	w("esac\n")
	w("if [ $# -gt 1 ]; then printf '%%s\\n' \"$usage\" >&2; exit 2; fi\n")
	w("case $trusted in ''|/*) ;; *) trusted=$PWD/$trusted ;; esac\n")
	w("# Only a regular file is read, never a link, a FIFO or a device.\n")
	w("regular() { [ -f \"$1\" ] && [ ! -L \"$1\" ]; }\n")
	w("if [ -n \"$trusted\" ] && ! regular \"$trusted\"; then\n\techo \"verify.sh: trusted key $trusted: not a regular file (or missing)\" >&2\n\texit 2\nfi\n")
	w("cd -- \"$(dirname -- \"$0\")\" || exit 2\n")
	w("fail=0\n")
	w("bad() { printf 'verify.sh: FAIL: %%s\\n' \"$*\" >&2; fail=1; }\n")
	w("ok() { printf 'verify.sh: ok: %%s\\n' \"$*\"; }\n\n")

	w("# A development key's private half is public: warn whenever the kit says\n")
	w("# it is signed with one, or its key is the repository's development key.\n")
	w("dev_key=%s\n", shellQuote(sign.DevPublicKeyBase64))
	w("# key_body prints a PEM public key's base64 body on one line: the same\n")
	w("# for the same key however its lines are broken.\n")
	w("key_body() { sed '/^-----/d' \"$1\" | tr -d ' \\t\\r\\n'; }\n")
	w("is_dev_key() { regular \"$1\" && [ \"$(key_body \"$1\")\" = \"$dev_key\" ]; }\n")
	if m.DevKey {
		w("dev=1\n")
	} else {
		w("dev=0\n")
	}
	w("if is_dev_key %s; then dev=1; fi\n", PublicKeyName)
	w("if [ -n \"$trusted\" ] && is_dev_key \"$trusted\"; then dev=1; fi\n")
	w("dev_warning() {\n\tif [ \"$dev\" = 1 ]; then echo 'verify.sh: WARNING: this kit is signed with a DEVELOPMENT key (COSIGN_ALLOW_DEV_KEY=1; its private half is public); do not trust it in production' >&2; fi\n}\n")
	w("dev_warning\n")
	w("finish() {\n\tdev_warning\n\techo %s >&2\n\texit 1\n}\n\n", shellQuote("verify.sh: kit "+m.Name+" FAILED verification"))

	w("command -v sha256sum >/dev/null 2>&1 || { echo 'verify.sh: sha256sum not found on PATH' >&2; exit 2; }\n\n")

	w("# The kit's files: each present and a regular file, nothing else beside\n")
	w("# them. Nothing is read before this holds.\n")
	w("for f in")
	for _, n := range names {
		w(" %s", shellQuote(n))
	}
	w("; do\n\tregular \"$f\" || bad \"$f: missing (or not a regular file)\"\ndone\n")
	w("for f in * .[!.]* ..?*; do\n\t[ -e \"$f\" ] || [ -L \"$f\" ] || continue\n\tcase $f in\n\t")
	all := append(slices.Clone(names), extras...)
	for i, n := range all {
		if i > 0 {
			w("|")
		}
		w("%s", shellQuote(n))
	}
	w(") ;;\n\t*) bad \"$f: not part of the kit\" ;;\n\tesac\ndone\n")
	w("[ \"$fail\" -eq 0 ] || finish\n\n")

	w("# %s lists exactly the kit's files, and each matches.\n", SumsName)
	w("want_listed=%s\n", shellQuote(strings.Join(listed, "\n")))
	w("if [ \"$(sed 's/^[0-9a-f]\\{64\\}  //' %s)\" != \"$want_listed\" ]; then bad '%s: does not list exactly the kit'\"'\"'s files'; fi\n", SumsName, SumsName)
	w("if out=$(sha256sum -c --strict %s 2>&1); then\n\tok %s\nelse\n", SumsName, SumsName)
	w("\tprintf '%%s\\n' \"$out\" | grep -v ': OK$' >&2\n")
	w("\tfor f in $(printf '%%s\\n' \"$out\" | sed -n 's/: FAILED.*$//p'); do bad \"$f: sha256 does not match %s\"; done\n", SumsName)
	w("\tbad '%s: check failed'\nfi\n", SumsName)
	if m.Archive != "" {
		sumFile := ArchiveChecksumName(m.Archive)
		w("if [ -e %s ] || [ -L %s ]; then\n", shellQuote(sumFile), shellQuote(sumFile))
		w("\tif regular %s && regular %s && sha256sum -c --strict --quiet %s >/dev/null 2>&1; then ok %s\n",
			shellQuote(sumFile), shellQuote(m.Archive), shellQuote(sumFile), shellQuote(m.Archive+" matches "+sumFile+" (the archive beside the kit is not covered by its signature)"))
		w("\telse bad %s; fi\nfi\n", shellQuote(m.Archive+": sha256 does not match "+sumFile))
	}
	w("\n")

	w("if [ \"$mode\" = checksums ]; then\n")
	w("\t[ \"$fail\" -eq 0 ] || finish\n")
	w("\tdev_warning\n")
	w("\techo %s >&2\n", shellQuote("verify.sh: checksums only: every file matches "+SumsName+"; signatures were NOT checked, so this does NOT show who made kit "+m.Name))
	w("\texit 0\nfi\n\n")

	w("# %s must be the trusted key.\n", PublicKeyName)
	w("trusted_body=$(key_body \"$trusted\")\n")
	w("if [ -n \"$trusted_body\" ] && [ \"$trusted_body\" = \"$(key_body %s)\" ]; then ok \"%s is the trusted key\"; else bad \"%s: is not the trusted key $trusted\"; fi\n\n", PublicKeyName, PublicKeyName, PublicKeyName)

	w("# %s's signature with the trusted key: what makes the kit verified.\n", SumsName)
	w("# blob BUNDLE FILE checks a cosign blob bundle; attestation ENVELOPE FILE\n")
	w("# a DSSE envelope of SLSA provenance.\n")
	w("signed=\n")
	w("cosign=${COSIGN:-cosign}\n")
	w("if command -v \"$cosign\" >/dev/null 2>&1; then\n")
	w("\t# cosign v2.6 and v3.1 both need %s offline.\n", CosignOfflineFlags)
	w("\tblob() {\n\t\tif out=$(\"$cosign\" verify-blob --key \"$trusted\" %s --bundle \"$1\" \"$2\" 2>&1); then ok \"$2: signature $1\"; [ \"$2\" != %s ] || signed=cosign\n", CosignOfflineFlags, SumsName)
	w("\t\telse printf '%%s\\n' \"$out\" >&2; bad \"$2: signature $1 does not verify with the trusted key\"; fi\n\t}\n")
	w("\tattestation() {\n\t\tif out=$(\"$cosign\" verify-blob-attestation --key \"$trusted\" %s --type slsaprovenance1 --signature \"$1\" \"$2\" 2>&1); then ok \"$2: provenance $1\"\n", CosignOfflineFlags)
	w("\t\telse printf '%%s\\n' \"$out\" >&2; bad \"$2: provenance $1 does not verify with the trusted key\"; fi\n\t}\n")
	w("elif command -v openssl >/dev/null 2>&1; then\n")
	w("\t# A bundle is {\"base64Signature\":\"...\"}: an ECDSA P-256 signature,\n")
	w("\t# DER, over the file's sha256.\n")
	w("\tblob() {\n")
	w("\t\tsig=$(sed -n 's|^{\"base64Signature\":\"\\([A-Za-z0-9+/]*=*\\)\"}$|\\1|p' \"$1\")\n")
	w("\t\tif [ -z \"$sig\" ]; then bad \"$1: not a cosign bundle as bale writes it\"\n")
	w("\t\telif out=$(printf '%%s' \"$sig\" | openssl base64 -d -A | openssl dgst -sha256 -verify \"$trusted\" -signature /dev/stdin \"$2\" 2>&1); then\n")
	w("\t\t\tok \"$2: signature $1 (openssl)\"; [ \"$2\" != %s ] || signed=openssl\n", SumsName)
	w("\t\telse printf '%%s\\n' \"$out\" >&2; bad \"$2: signature $1 does not verify with the trusted key\"; fi\n\t}\n")
	w("\tattestation() { ok \"$2: provenance $1 is covered by %s's signature (cosign or bale verify also checks its own)\"; }\n", SumsName)
	w("elif command -v bale >/dev/null 2>&1; then\n")
	w("\tif out=$(bale verify . --key \"$trusted\" 2>&1); then ok 'every signature (bale verify)'; signed=bale\n")
	w("\telse printf '%%s\\n' \"$out\" >&2; bad 'bale verify failed'; fi\n")
	w("\tblob() { :; }\n\tattestation() { :; }\n")
	w("else\n")
	w("\techo \"verify.sh: no signature verifier: cosign, openssl or bale must be on PATH (or COSIGN=/path/to/cosign); nothing was checked against the trusted key ($0 %s checks the files only)\" >&2\n", ChecksumsOnlyFlag)
	w("\tdev_warning\n\texit 2\nfi\n")
	w("blob %s %s\n", SumsSignatureName, SumsName)
	signers := slices.Clone(m.Artifacts)
	slices.SortFunc(signers, func(a, b Artifact) int { return strings.Compare(a.Name, b.Name) })
	for _, a := range signers {
		switch a.Kind {
		case KindSignature:
			w("blob %s %s\n", shellQuote(a.Name), shellQuote(a.Signs))
		case KindProvenance:
			w("attestation %s %s\n", shellQuote(a.Name), shellQuote(a.Signs))
		}
	}
	w("\n")

	w("if [ \"$fail\" -ne 0 ] || [ -z \"$signed\" ]; then\n\tfinish\nfi\n")
	w("dev_warning\necho %s\"$signed)\"\n", shellQuote("verify.sh: kit "+m.Name+" verified (SHA256SUMS signed by the trusted key, checked with "))
	return b.Bytes(), nil
}
