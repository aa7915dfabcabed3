# OneFlow AI: development, test, database, container, Kubernetes and monitoring targets.
# `make run` and `make test` set up their own virtual environment (.venv) on first use.
# The docker-* targets need Docker with the compose plugin; the k8s-* targets need kubectl.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000
PYTEST_ARGS ?=
ARGS ?=

VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)
IMAGE ?= oneflow-ai
# prod-build's base image, e.g. python:3.11-slim-bookworm@sha256:... (unset: the Dockerfile's).
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

.PHONY: help install install-dev run dev test test-coverage test-property lint format type-check \
        db-migrate db-rollback db-reset db-shell clean clean-all prod-check bench fake-providers \
        deploy-check security-check audit docker-build prod-build docker-up docker-down \
        docker-logs docker-restart docker-shell docker-clean k8s-deploy k8s-delete k8s-status \
        k8s-logs k8s-port-forward prometheus grafana jaeger

help: ## list the targets
	@grep -hE '^[a-zA-Z0-9_-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  %-16s %s\n", $$1, $$2}'

$(BIN)/python:
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11+ is required"'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	@touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(VENV)/.installed $@

install: $(VENV)/.installed ## install the gateway into .venv

install-dev: $(VENV)/.installed-dev ## install the gateway and the development tools into .venv

run: install ## start the gateway at http://127.0.0.1:8000 on the embedded defaults
	$(BIN)/oneflow serve --host $(HOST) --port $(PORT)

dev: install-dev ## start the gateway with auto-reload
	$(BIN)/oneflow serve --host $(HOST) --port $(PORT) --reload

test: install-dev ## run the whole test suite
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-coverage: install-dev ## run the suite with a coverage report
	$(BIN)/python -m pytest --cov=oneflow_ai --cov-report=term-missing --cov-report=xml $(PYTEST_ARGS)

test-property: install-dev ## run the Hypothesis property tests only
	$(BIN)/python -m pytest -m property $(PYTEST_ARGS)

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

bench: install-dev ## benchmark the gateway against the upstream alone (needs wrk)
	$(BIN)/python -m bench.run $(ARGS)

.PHONY: cluster
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
	$(DOCKER) build -t $(IMAGE):$(VERSION) -t $(IMAGE):latest .

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

k8s-deploy: ## apply deploy/k8s (namespace first; the oneflow-ai-secrets Secret must exist)
	$(KUBECTL) apply -f $(K8S_DIR)/namespace.yaml
	@$(KUBECTL) -n $(K8S_NAMESPACE) get secret oneflow-ai-secrets >/dev/null 2>&1 || { \
		echo "Secret oneflow-ai-secrets is missing in namespace $(K8S_NAMESPACE):"; \
		echo "create it first (see deploy/k8s/secret.example.yaml and deploy/README.md)"; \
		exit 1; }
	$(KUBECTL) apply -k $(K8S_DIR)
	$(KUBECTL) -n $(K8S_NAMESPACE) rollout status deployment/oneflow-ai --timeout=300s

k8s-delete: ## delete everything deploy/k8s created (the namespace too, with its Secret)
	$(KUBECTL) delete -k $(K8S_DIR) --ignore-not-found

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

clean-all: clean ## also remove .venv and the embedded database
	rm -rf $(VENV) var
