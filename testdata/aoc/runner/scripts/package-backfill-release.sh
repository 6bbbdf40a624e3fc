#!/bin/sh
# Package the AOC backfill release and offline kit slice with bale.
#
# Production (CI with secrets): COSIGN_PASSWORD and the release key come from CI.
# Development (dev key):
#   COSIGN_ALLOW_DEV_KEY=1 COSIGN_PASSWORD=stellaops-dev \
#     DATASET_HASH=dev-rehearsal-placeholder ./scripts/package-backfill-release.sh
set -eu

spec=${AOC_SPEC:-specs/aoc}
out=${OUT_DIR:-out/aoc}

if ! command -v bale >/dev/null 2>&1; then
	echo "package-backfill-release: bale not found in PATH" >&2
	exit 1
fi
bale vet "$spec"
bale build "$spec" -o "$out"
cd "$out" && sha256sum -c SHA256SUMS
