#!/usr/bin/env bash
# Builds a real Kubernetes control plane (etcd, kube-apiserver, kubectl) from the Go
# modules pinned in this folder's go.mod/go.sum, for the e2e tests (tests/support/controlplane.py).
#
# Usage: ASSETS=$(tools/controlplane/build.sh | tail -1)
#
# - If KUBEBUILDER_ASSETS names a folder holding executable etcd, kube-apiserver and
#   kubectl, nothing is built and that folder is printed.
# - Otherwise the binaries are built once into
#     ${DATASYNC_OPERATOR_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/datasync-operator}/controlplane/<k8s-version>-<hash>/
#   where <hash> covers go.mod, go.sum, this script, the main packages and the Go toolchain,
#   and reused while that folder holds all three binaries. A build goes into a temporary
#   folder that is renamed into place, so a killed build never leaves a half-filled cache.
# - The folder path is the LAST line on stdout; progress goes to stderr.
# - Exit code 127 means no `go` toolchain was found (callers may skip on that outside CI).
#
# Environment: CONTROLPLANE_BUILD_JOBS (go build -p, default: number of cores, at most 4).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
binaries=(etcd kube-apiserver kubectl)

log() { printf 'controlplane: %s\n' "$*" >&2; }

has_all_binaries() {
    local dir="$1" b
    for b in "${binaries[@]}"; do
        [[ -f "$dir/$b" && -x "$dir/$b" ]] || return 1
    done
}

if [[ -n "${KUBEBUILDER_ASSETS:-}" ]]; then
    if has_all_binaries "$KUBEBUILDER_ASSETS"; then
        log "using KUBEBUILDER_ASSETS=$KUBEBUILDER_ASSETS (nothing built)"
        printf '%s\n' "$KUBEBUILDER_ASSETS"
        exit 0
    fi
    log "KUBEBUILDER_ASSETS=$KUBEBUILDER_ASSETS lacks one of: ${binaries[*]}; building instead"
fi

if ! command -v go >/dev/null 2>&1; then
    log "error: the Go toolchain (go) is not on PATH; it is needed to build etcd/kube-apiserver/kubectl"
    exit 127
fi

# k8s.io/kubernetes version as required in go.mod, e.g. v1.34.4.
k8s_version="$(awk '$1 == "k8s.io/kubernetes" && $2 ~ /^v[0-9]/ { print $2; exit }' "$here/go.mod")"
if [[ ! "$k8s_version" =~ ^v([0-9]+)\.([0-9]+)\.([0-9]+)$ ]]; then
    log "error: cannot read the k8s.io/kubernetes version from $here/go.mod (got '$k8s_version')"
    exit 1
fi
git_major="${BASH_REMATCH[1]}"
git_minor="${BASH_REMATCH[2]}"

go_version="$(go env GOVERSION) $(go env GOOS)/$(go env GOARCH)"
inputs_hash="$(
    {
        cat "$here/go.mod" "$here/go.sum" "$here/build.sh"
        find "$here/cmd" -type f -name '*.go' | LC_ALL=C sort | xargs cat
        printf '%s\n' "$go_version"
    } | sha256sum | cut -c1-12
)"

cache_root="${DATASYNC_OPERATOR_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/datasync-operator}/controlplane"
dest="$cache_root/$k8s_version-$inputs_hash"

if has_all_binaries "$dest"; then
    log "cached: $dest"
    printf '%s\n' "$dest"
    exit 0
fi

mkdir -p "$cache_root"
# Serialise concurrent builds (e.g. parallel test sessions) on one lock file.
exec 9>"$cache_root/.build.lock"
if command -v flock >/dev/null 2>&1; then
    flock 9
fi
if has_all_binaries "$dest"; then # another process built it while we waited
    log "cached: $dest"
    printf '%s\n' "$dest"
    exit 0
fi

tmp="$(mktemp -d "$cache_root/.tmp-$k8s_version-XXXXXX")"
chmod 0755 "$tmp"
trap 'rm -rf "$tmp"' EXIT

# Reproducible build date: the publication time of the k8s.io/kubernetes module version.
build_date="$(cd "$here" && go list -m -f '{{if .Time}}{{.Time.UTC.Format "2006-01-02T15:04:05Z"}}{{end}}' k8s.io/kubernetes 2>/dev/null || true)"
build_date="${build_date:-1970-01-01T00:00:00Z}"

ldflags="-s -w"
# kube-apiserver's /version reads k8s.io/component-base/version, kubectl's client
# version reads k8s.io/client-go/pkg/version: stamp both, as upstream's hack/lib/version.sh does.
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags+=" -X $pkg.gitVersion=$k8s_version"
    ldflags+=" -X $pkg.gitMajor=$git_major"
    ldflags+=" -X $pkg.gitMinor=$git_minor"
    ldflags+=" -X $pkg.gitTreeState=clean"
    ldflags+=" -X $pkg.buildDate=$build_date"
    # Module zips carry no git commit; say where the source came from instead.
    ldflags+=" -X $pkg.gitCommit=go-module-k8s.io/kubernetes@$k8s_version"
done
etcd_version="$(awk '$1 == "go.etcd.io/etcd/server/v3" { print $2; exit }' "$here/go.mod")"
ldflags+=" -X go.etcd.io/etcd/api/v3/version.GitSHA=go-module-go.etcd.io/etcd/server/v3@$etcd_version"

cores="$(nproc 2>/dev/null || echo 2)"
jobs="${CONTROLPLANE_BUILD_JOBS:-$((cores < 4 ? cores : 4))}"

log "building ${binaries[*]} $k8s_version with $go_version, -p $jobs, into $dest"
log "a cold build (module download + compile) takes several minutes; later builds reuse Go's caches"
start=$SECONDS
(
    cd "$here"
    CGO_ENABLED=0 GOFLAGS="${GOFLAGS:-} -buildvcs=false" go build \
        -p "$jobs" \
        -trimpath \
        -ldflags "$ldflags" \
        -o "$tmp/" \
        ./cmd/etcd ./cmd/kube-apiserver ./cmd/kubectl
) >&2
elapsed=$((SECONDS - start))

has_all_binaries "$tmp" || {
    log "error: go build finished but $tmp lacks one of: ${binaries[*]}"
    exit 1
}
rm -rf "$dest" # a partial folder left by hand; the lock keeps others out
mv -T "$tmp" "$dest"
trap - EXIT
log "built in ${elapsed}s ($((elapsed / 60))m$((elapsed % 60))s): $dest"
printf '%s\n' "$dest"
