#!/usr/bin/env bash
# Install a pinned helm binary for the chart tests and CI.
#
# Only package registries are reachable from our machines (no release tarball
# downloads), so helm is compiled from its Go module with `go install`.
# The result is cached in ${JOBSTREAM_CACHE:-$HOME/.cache/jobstream}/bin/helm and
# reused on later runs (idempotent). On success the script prints the binary path
# as its last line of stdout; everything else goes to stderr.
set -euo pipefail

HELM_VERSION="${HELM_VERSION:-v3.22.0}"
CACHE_DIR="${JOBSTREAM_CACHE:-$HOME/.cache/jobstream}"
BIN_DIR="$CACHE_DIR/bin"
HELM_BIN="$BIN_DIR/helm"
# `go install` does not inject helm's release version via ldflags, so the binary's
# own `helm version` is not a reliable pin check: keep a stamp file beside it.
STAMP="$BIN_DIR/helm.version"

# Reuse a cached binary only if it was built from the pinned version.
if [[ -x "$HELM_BIN" && -f "$STAMP" && "$(cat "$STAMP")" == "$HELM_VERSION" ]]; then
    echo "$HELM_BIN"
    exit 0
fi

if ! command -v go >/dev/null 2>&1; then
    echo "install-helm.sh: 'go' is not on PATH; a Go toolchain (>= the one helm $HELM_VERSION needs) is required to build helm" >&2
    exit 1
fi

mkdir -p "$BIN_DIR"
echo "install-helm.sh: building helm $HELM_VERSION with go install (takes a few minutes on 2 cores)..." >&2
# Build into a temporary GOBIN, then move into place, so an interrupted build
# never leaves a half-written binary at the cached path.
tmp_bin="$(mktemp -d "$CACHE_DIR/helm-build.XXXXXX")"
trap 'rm -rf "$tmp_bin"' EXIT
# CGO off: a static binary that does not depend on the host's libc.
GOBIN="$tmp_bin" CGO_ENABLED=0 GOFLAGS="${GOFLAGS:--trimpath}" \
    go install "helm.sh/helm/v3/cmd/helm@${HELM_VERSION}"
mv -f "$tmp_bin/helm" "$HELM_BIN"
echo "$HELM_VERSION" > "$STAMP"

"$HELM_BIN" version --short >&2
echo "$HELM_BIN"
