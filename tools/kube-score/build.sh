#!/usr/bin/env bash
# Builds (or reuses) kube-score, a static checker of Kubernetes manifests, from the Go module proxy
# into the tool cache and prints its folder (last line of stdout). CI runs it on the chart's
# default and HA renders (tests/chart/test_kube_score.py). See tools/lib/go-install.sh for the
# cache and exit codes.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
exec "$here/../lib/go-install.sh" kube-score github.com/zegl/kube-score/cmd/kube-score v1.20.0
