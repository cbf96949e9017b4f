#!/usr/bin/env bash
# Builds one Go command from the Go module proxy (`go install MODULE/CMD@VERSION`) into the
# git-ignored tool cache, once, and prints the binary's folder. Used by the per-tool scripts
# (tools/actionlint/build.sh, tools/kube-score/build.sh) the way tools/controlplane/build.sh
# builds the control plane.
#
# Usage: tools/lib/go-install.sh NAME PACKAGE VERSION
#   e.g. tools/lib/go-install.sh actionlint github.com/rhysd/actionlint/cmd/actionlint v1.7.12
#
# - The binary goes to
#     ${DATASYNC_OPERATOR_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/datasync-operator}/tools/NAME-VERSION/NAME
#   and is reused while it is there; a build goes into a temporary folder renamed into place, so a
#   killed build never leaves a half-filled cache.
# - The folder path is the LAST line on stdout; progress goes to stderr.
# - Exit code 127 means no `go` toolchain was found (callers may skip on that outside CI).
set -euo pipefail

name="$1"
package="$2"
version="$3"

log() { printf '%s: %s\n' "$name" "$*" >&2; }

cache_root="${DATASYNC_OPERATOR_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/datasync-operator}/tools"
dest="$cache_root/$name-$version"

if [[ -f "$dest/$name" && -x "$dest/$name" ]]; then
    log "cached: $dest"
    printf '%s\n' "$dest"
    exit 0
fi

if ! command -v go >/dev/null 2>&1; then
    log "error: the Go toolchain (go) is not on PATH; it is needed to build $package@$version"
    exit 127
fi

mkdir -p "$cache_root"
exec 9>"$cache_root/.build-$name.lock"
if command -v flock >/dev/null 2>&1; then
    flock 9
fi
if [[ -f "$dest/$name" && -x "$dest/$name" ]]; then # built by another process while we waited
    log "cached: $dest"
    printf '%s\n' "$dest"
    exit 0
fi

tmp="$(mktemp -d "$cache_root/.tmp-$name-$version-XXXXXX")"
chmod 0755 "$tmp"
trap 'rm -rf "$tmp"' EXIT

log "go install $package@$version ($(go env GOVERSION))"
start=$SECONDS
CGO_ENABLED=0 GOBIN="$tmp" GOFLAGS="${GOFLAGS:-} -trimpath" go install "$package@$version" >&2
if [[ ! -x "$tmp/$name" ]]; then
    log "error: go install finished but $tmp/$name is missing"
    exit 1
fi
rm -rf "$dest"
mv -T "$tmp" "$dest"
trap - EXIT
log "built in $((SECONDS - start))s: $dest"
printf '%s\n' "$dest"
