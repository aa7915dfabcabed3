# OneFlow AI: development, test and database targets.
# `make run` and `make test` set up their own virtual environment (.venv) on first use.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000
PYTEST_ARGS ?=
ARGS ?=

.DEFAULT_GOAL := help

.PHONY: help install install-dev run dev test test-coverage test-property lint format type-check \
        db-migrate db-rollback db-reset db-shell clean clean-all prod-check bench fake-providers \
        deploy-check

help: ## list the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  %-16s %s\n", $$1, $$2}'

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

deploy-check: ## promtool checks of deploy/prometheus (needs promtool: apt-get install prometheus)
	promtool check rules deploy/prometheus/alerts.yml
	cd deploy/prometheus && promtool test rules alerts.test.yml

prod-check: lint type-check test ## everything that must pass before production

clean: ## remove caches and build files
	rm -rf build dist .pytest_cache .mypy_cache .ruff_cache .coverage coverage.xml htmlcov
	find . -name __pycache__ -type d -prune -not -path './.venv/*' -exec rm -rf {} +

clean-all: clean ## also remove .venv and the embedded database
	rm -rf $(VENV) var
