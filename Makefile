# mlaas: the two commands are `make demo` (whole stack up + the main job) and `make test`.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
PY := $(VENV)/bin/python
STACK := $(PY) -m scripts.localstack

.PHONY: help install system-deps up down status logs demo test test-unit test-integration lint bench clean env deploy-test

help:
	@echo "make demo   bring the local stack up and run the main job end to end"
	@echo "make test   install what the tests need and run them all"
	@echo "make up | down | status | logs   manage the local stack (.stack/)"
	@echo "make lint   ruff and mypy;  make bench   benchmarks"

# Debian packages: Python's venv module and redis-server for the local stack, docker-compose to
# validate docker-compose.yml in the tests (no Docker engine is needed for that), wrk for the
# benchmarks, and Chromium to render the docs page in the tests.
system-deps:
	@missing=""; \
	$(PYTHON) -c "import ensurepip, venv" 2>/dev/null || missing="$$missing python3-venv"; \
	command -v redis-server >/dev/null || [ -x /usr/bin/redis-server ] || missing="$$missing redis-server"; \
	command -v docker-compose >/dev/null || missing="$$missing docker-compose"; command -v wrk >/dev/null || missing="$$missing wrk"; \
	command -v chromium >/dev/null || missing="$$missing chromium"; \
	/sbin/ldconfig -p 2>/dev/null | grep -q libgomp.so.1 || missing="$$missing libgomp1"; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  SUDO=""; [ "$$(id -u)" = 0 ] || SUDO="sudo"; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; \
	fi

$(VENV)/.installed: requirements.txt requirements-dev.txt pyproject.toml
	@$(MAKE) --no-print-directory system-deps
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	$(VENV)/bin/pip install --quiet --disable-pip-version-check --no-deps -e .
	touch $@

install: $(VENV)/.installed

up: install
	$(STACK) up

down:
	@if [ -x $(PY) ]; then $(STACK) down; else echo "nothing to stop"; fi

status: install
	$(STACK) status

logs: install
	$(STACK) logs

demo: up
	$(PY) examples/demo.py

test: install lint
	$(PY) -m pytest
	$(MAKE) --no-print-directory deploy-test

test-unit: install
	$(PY) -m pytest tests/unit

test-integration: install
	$(PY) -m pytest tests/integration

lint: install
	$(VENV)/bin/ruff check mlaas worker tests scripts examples bench
	$(VENV)/bin/mypy

bench: install
	@if ls bench/*.py >/dev/null 2>&1; then for b in bench/bench_*.py; do $(PY) $$b || exit 1; done; \
	else echo "no benchmarks yet"; fi

# A compose .env with random secrets (never overwrites an existing one).
env:
	$(PYTHON) deploy/make_env.py .env

# The shipped docker-compose.yml really runs: images built offline, the stack exercised, then removed.
# Starts dockerd (as root) when no engine runs; without an engine it skips loudly, and fails under CI=true.
deploy-test: install
	@if ! command -v debootstrap >/dev/null && [ "$$(id -u)" = 0 ]; then \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null; fi
	$(PY) deploy/deploy_test.py

clean: down
	rm -rf .stack .test-stack
