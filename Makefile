# OneFlow AI: development, test, database, container, Kubernetes and monitoring targets.
# `make run` and `make test` set up their own virtual environment (.venv) on first use.
# The docker-* targets need Docker with the compose plugin; the k8s-* targets need kubectl.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000
PYTEST_ARGS ?=
# The suite runs in this many processes (pytest-xdist; every test has its own databases,
# Redis key prefix and ports). 0 runs it in this process.
TEST_WORKERS ?= 2
XDIST := $(if $(filter 0,$(TEST_WORKERS)),,-n $(TEST_WORKERS))
ARGS ?=

# The version's one source is pyproject.toml (the package reads its installed metadata).
VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)
# Hash-locked dependencies (make lock): the runtime's, and the runtime's plus the dev tools.
LOCK := requirements.lock
DEV_LOCK := requirements-dev.lock
LOCK_ARGS ?=
DIST_DIR ?= dist
SBOM_ENV ?= build/sbom-env
# e.g. --no-validate: skip checking the SBOM against the CycloneDX schema (the slow part).
SBOM_ARGS ?=
IMAGE ?= oneflow-ai
# What k8s-release rolls out (CI: <registry>/oneflow-ai:<commit sha>).
IMAGE_REF ?= $(IMAGE):$(VERSION)
# The base image, e.g. python:3.11-slim-bookworm@sha256:... (unset: the Dockerfile's pinned one).
PYTHON_IMAGE ?=
GIT_SHA := $(shell git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
DOCKER ?= docker
FAKES ?=
COMPOSE ?= $(strip $(DOCKER) compose -f docker-compose.yml $(if $(FAKES),-f docker-compose.fakes.yml))
GATEWAY := oneflow-ai
SERVICE ?=
SERVICES ?=
KUBECTL ?= kubectl
# The namespace deploy/k8s/kustomization.yaml puts everything in.
K8S_NAMESPACE := oneflow
K8S_DIR := deploy/k8s
# K8S_OVERLAY=dev or prod: apply deploy/k8s/overlays/<name> instead of the base.
K8S_OVERLAY ?=
K8S_KUSTOMIZATION := $(K8S_DIR)$(if $(K8S_OVERLAY),/overlays/$(K8S_OVERLAY))
K8S_SELECTOR := app.kubernetes.io/name=oneflow-ai
LOCAL_PORT ?= 8000
PROMETHEUS_URL ?= http://localhost:9090
GRAFANA_URL ?= http://localhost:3000
JAEGER_URL ?= http://localhost:16686

# Print a URL and open it in a browser when there is one; never fails without a browser.
open_url = @echo "$(1)"; \
	if command -v xdg-open >/dev/null 2>&1; then xdg-open "$(1)" >/dev/null 2>&1 || true; \
	elif command -v open >/dev/null 2>&1; then open "$(1)" >/dev/null 2>&1 || true; fi

.DEFAULT_GOAL := help

.PHONY: help install install-dev run dev test test-coverage test-property test-node lint format type-check \
        db-migrate db-rollback db-reset db-shell clean clean-all prod-check bench bench-peers bench-scaling fake-providers \
        deploy-check security-check audit docker-build prod-build docker-up docker-down \
        docker-logs docker-restart docker-shell docker-clean k8s-deploy k8s-delete k8s-status \
        k8s-logs k8s-port-forward prometheus grafana jaeger lock dist sbom k8s-release cluster

help: ## list the targets
	@grep -hE '^[a-zA-Z0-9_-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  %-16s %s\n", $$1, $$2}'
	@echo ""
	@echo "Variables (make run PORT=8100):"
	@echo "  PORT=$(PORT) HOST=$(HOST)   where run and dev listen (a port in use: pick another)"

$(BIN)/python:
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11+ is required"'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Dependencies come from a lock file with hashes; the package itself is built with the locked
# setuptools (no build isolation, so nothing unlocked is fetched).
$(VENV)/.installed: pyproject.toml $(LOCK) | $(BIN)/python
	$(BIN)/python -m pip install --quiet --require-hashes -r $(LOCK)
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	@touch $@

$(VENV)/.installed-dev: pyproject.toml $(DEV_LOCK) | $(BIN)/python
	$(BIN)/python -m pip install --quiet --require-hashes -r $(DEV_LOCK)
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	@touch $(VENV)/.installed $@

install: $(VENV)/.installed ## install the gateway into .venv

install-dev: $(VENV)/.installed-dev ## install the gateway and the development tools into .venv

# pip-compile reads pip's configuration (index, mirrors); the files name no index, so they install
# from whatever index pip is configured with. LOCK_ARGS=--upgrade moves every pin to the newest.
PIP_COMPILE = CUSTOM_COMPILE_COMMAND="make lock" $(BIN)/pip-compile --quiet --generate-hashes \
	--allow-unsafe --all-build-deps --strip-extras --no-emit-index-url --no-emit-find-links $(LOCK_ARGS)

lock: install-dev ## regenerate requirements.lock and requirements-dev.lock (hashes) from pyproject.toml
	$(PIP_COMPILE) --output-file $(LOCK) pyproject.toml
	$(PIP_COMPILE) --extra dev --output-file $(DEV_LOCK) pyproject.toml

dist: install-dev ## build the wheel and the sdist into dist/ (version from pyproject.toml)
	rm -rf $(DIST_DIR)
	$(BIN)/python -m build --no-isolation --outdir $(DIST_DIR) .

# The wheel and the runtime lock installed into a fresh environment (pip's index), then described.
sbom: dist ## CycloneDX SBOM of the wheel and its locked dependencies: dist/oneflow-ai-<version>.cdx.json
	rm -rf $(SBOM_ENV)
	$(PYTHON) -m venv --without-pip $(SBOM_ENV)
	$(BIN)/python -m pip --python $(SBOM_ENV)/bin/python install --quiet --no-compile \
		--require-hashes -r $(LOCK)
	$(BIN)/python -m pip --python $(SBOM_ENV)/bin/python install --quiet --no-compile --no-deps \
		$(DIST_DIR)/*.whl
	$(BIN)/cyclonedx-py environment --pyproject pyproject.toml --output-reproducible $(SBOM_ARGS) \
		--output-file $(DIST_DIR)/oneflow-ai-$(VERSION).cdx.json $(SBOM_ENV)/bin/python

run: install ## start the gateway at http://127.0.0.1:8000 (PORT=8100 for another port)
	$(BIN)/oneflow serve --host $(HOST) --port $(PORT)

dev: install-dev ## start the gateway with auto-reload
	$(BIN)/oneflow serve --host $(HOST) --port $(PORT) --reload

test: install-dev ## run the whole test suite (TEST_WORKERS=2 processes; TEST_WORKERS=0: one)
	$(BIN)/python -m pytest $(XDIST) $(PYTEST_ARGS)

test-coverage: install-dev ## run the suite with a coverage report
	$(BIN)/python -m pytest $(XDIST) --cov=oneflow_ai --cov-report=term-missing --cov-report=xml $(PYTEST_ARGS)

test-property: install-dev ## run the Hypothesis property tests only
	$(BIN)/python -m pytest -m property $(PYTEST_ARGS)

test-node: install-dev ## run the Node.js tests only (the openai npm SDK through the gateway; npm ci)
	$(BIN)/python -m pytest -m node $(PYTEST_ARGS)

lint: install-dev ## ruff lint and format check, import layering contract
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/lint-imports

format: install-dev ## format the code
	$(BIN)/ruff check --fix src tests bench
	$(BIN)/ruff format src tests bench

type-check: install-dev ## mypy, strict on src/
	$(BIN)/mypy

db-migrate: install ## apply pending migrations
	$(BIN)/oneflow db upgrade

db-rollback: install ## roll back the last migration
	$(BIN)/oneflow db downgrade

db-reset: install ## drop everything and migrate from scratch (DANGEROUS)
	$(BIN)/oneflow db reset --yes

db-shell: install ## open a shell on the configured database
	$(BIN)/oneflow db shell

fake-providers: install ## run the fake providers on 127.0.0.1:9100
	$(BIN)/oneflow fake-providers --port 9100

bench: install-dev ## benchmark the gateway (SQLite; PostgreSQL + Redis) against the upstream alone (needs wrk)
	$(BIN)/python -m bench.run $(ARGS)

# Optional, never in CI: installs LiteLLM (pip) and Portkey's gateway (npm) into ~/.cache/oneflow-bench.
bench-peers: install-dev ## make bench with LiteLLM's proxy and Portkey's gateway in the same run
	$(BIN)/python -m bench.peers
	$(BIN)/python -m bench.run --peers portkey,litellm $(ARGS)

bench-scaling: install-dev ## 1, 2, 3 replicas behind HAProxy on one PostgreSQL + Redis: req/s, transactions and Redis commands per request
	@command -v haproxy >/dev/null 2>&1 || { echo "make bench-scaling needs HAProxy: apt-get install haproxy"; exit 1; }
	$(BIN)/python -m bench.scaling $(ARGS)

CLUSTER_PORT ?= 8080
# Servers of its own from temporary directories: nothing system-wide is started or stopped.
cluster: install-dev ## 3 replicas behind HAProxy on PostgreSQL + Redis of their own, fake providers (CLUSTER_PORT)
	@command -v haproxy >/dev/null 2>&1 || { echo "make cluster needs HAProxy: apt-get install haproxy"; exit 1; }
	$(BIN)/python scripts/cluster.py run --port $(CLUSTER_PORT) $(ARGS)

deploy-check: ## promtool checks of deploy/prometheus (needs promtool: apt-get install prometheus)
	promtool check rules deploy/prometheus/alerts.yml
	promtool check config deploy/prometheus/prometheus.compose.yml
	cd deploy/prometheus && promtool test rules alerts.test.yml

security-check: install-dev ## bandit static security scan of src (settings in pyproject.toml)
	$(BIN)/bandit -c pyproject.toml -r src

# --strict: a dependency that could not be checked (no network) fails the audit, never passes.
audit: install-dev ## pip-audit of the installed dependencies (needs the network: PyPI advisories)
	$(BIN)/pip-audit --strict --skip-editable --progress-spinner off

prod-check: lint type-check security-check test ## everything that must pass before production

# ---- Docker ---------------------------------------------------------------------------------

docker-build: ## build the image oneflow-ai:<version> and :latest from the Dockerfile
	$(DOCKER) build $(if $(PYTHON_IMAGE),--build-arg PYTHON_IMAGE=$(PYTHON_IMAGE)) \
		-t $(IMAGE):$(VERSION) -t $(IMAGE):latest .

prod-build: ## build the production image: fresh base, OCI labels, tagged <version> and <git sha>
	$(DOCKER) build --pull $(if $(PYTHON_IMAGE),--build-arg PYTHON_IMAGE=$(PYTHON_IMAGE)) \
		--label org.opencontainers.image.title=oneflow-ai \
		--label org.opencontainers.image.version=$(VERSION) \
		--label org.opencontainers.image.revision=$(GIT_SHA) \
		--label org.opencontainers.image.created=$$(date -u +%Y-%m-%dT%H:%M:%SZ) \
		-t $(IMAGE):$(VERSION) -t $(IMAGE):$(GIT_SHA) .

docker-up: ## start the stack: gateway, PostgreSQL, Redis, Prometheus, Grafana, Jaeger (FAKES=1: fakes service)
	$(COMPOSE) up --detach --build --wait $(SERVICES)

docker-down: ## stop the local stack (volumes are kept)
	$(COMPOSE) down

docker-logs: ## follow the stack's logs (SERVICE=oneflow-ai for one service)
	$(COMPOSE) logs --follow --tail=200 $(SERVICE)

docker-restart: ## restart the gateway container (or SERVICE=...)
	$(COMPOSE) restart $(or $(SERVICE),$(GATEWAY))

docker-shell: ## open a shell in the gateway container (or SERVICE=...)
	$(COMPOSE) exec $(or $(SERVICE),$(GATEWAY)) /bin/sh

docker-clean: ## stop the stack and remove its volumes and locally built images
	$(COMPOSE) down --volumes --rmi local --remove-orphans

# ---- Kubernetes ----------------------------------------------------------------------------

k8s-deploy: ## apply deploy/k8s or K8S_OVERLAY=dev|prod (namespace first; the Secret must exist)
	$(KUBECTL) apply -f $(K8S_DIR)/namespace.yaml
	@$(KUBECTL) -n $(K8S_NAMESPACE) get secret oneflow-ai-secrets >/dev/null 2>&1 || { \
		echo "Secret oneflow-ai-secrets is missing in namespace $(K8S_NAMESPACE):"; \
		echo "create it first (see deploy/k8s/secret.example.yaml and deploy/README.md)"; \
		exit 1; }
	$(KUBECTL) apply -k $(K8S_KUSTOMIZATION)
	$(KUBECTL) -n $(K8S_NAMESPACE) rollout status deployment/oneflow-ai --timeout=300s

# CI's deploy: the migration Job of the new image runs to completion, then the Deployment rolls.
k8s-release: ## run the migration Job with IMAGE_REF, then kubectl set image and wait for the rollout
	$(KUBECTL) -n $(K8S_NAMESPACE) delete job oneflow-ai-db-upgrade --ignore-not-found --wait
	$(KUBECTL) set image --local -o yaml -f $(K8S_DIR)/migration-job.yaml db-upgrade=$(IMAGE_REF) \
		| $(KUBECTL) apply -f -
	$(KUBECTL) -n $(K8S_NAMESPACE) wait --for=condition=complete job/oneflow-ai-db-upgrade --timeout=300s
	$(KUBECTL) -n $(K8S_NAMESPACE) set image deployment/oneflow-ai oneflow-ai=$(IMAGE_REF)
	$(KUBECTL) -n $(K8S_NAMESPACE) rollout status deployment/oneflow-ai --timeout=300s

k8s-delete: ## delete everything deploy/k8s created (the namespace too, with its Secret)
	$(KUBECTL) delete -k $(K8S_KUSTOMIZATION) --ignore-not-found

k8s-status: ## the gateway's Deployment, pods, Service, HPA, PDB and migration Job
	$(KUBECTL) -n $(K8S_NAMESPACE) get deployment,pods,service,hpa,pdb,jobs

k8s-logs: ## follow the logs of every gateway pod
	$(KUBECTL) -n $(K8S_NAMESPACE) logs -l $(K8S_SELECTOR) --all-containers --prefix \
		--follow --tail=200 --max-log-requests=20

k8s-port-forward: ## forward the gateway Service to http://localhost:8000
	$(KUBECTL) -n $(K8S_NAMESPACE) port-forward service/oneflow-ai $(LOCAL_PORT):80

# ---- Monitoring (the docker-up stack) -----------------------------------------------------

prometheus: ## open the Prometheus UI (http://localhost:9090)
	$(call open_url,$(PROMETHEUS_URL))

grafana: ## open Grafana (http://localhost:3000, admin/admin)
	$(call open_url,$(GRAFANA_URL))

jaeger: ## open the Jaeger UI (http://localhost:16686; set ENABLE_TRACING=true in .env)
	$(call open_url,$(JAEGER_URL))

clean: ## remove caches and build files
	rm -rf build dist .pytest_cache .mypy_cache .ruff_cache .coverage coverage.xml htmlcov
	find . -name __pycache__ -type d -prune -not -path './.venv/*' -exec rm -rf {} +

clean-all: clean ## also remove .venv and ./var (the embedded database stays: oneflow db reset)
	rm -rf $(VENV) var
