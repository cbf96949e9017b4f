#!/usr/bin/env bash
# Builds (or reuses) actionlint, the GitHub Actions workflow linter, from the Go module proxy into
# the tool cache and prints its folder (last line of stdout). CI runs it on .github/workflows/
# (tests/chart/test_release_workflow.py). See tools/lib/go-install.sh for the cache and exit codes.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
exec "$here/../lib/go-install.sh" actionlint github.com/rhysd/actionlint/cmd/actionlint v1.7.12
