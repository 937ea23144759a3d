# Two commands on a fresh machine: `make demo` and `make test`. Both set up what they need.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
CHROMIUM := /usr/bin/chromium
REQS := requirements.txt requirements-model.txt requirements-local-aws.txt requirements-dev.txt constraints.txt

.PHONY: help setup test test-fast demo bench airflow lint env clean

help:
	@echo "make demo    - the whole pipeline offline: sample data, local_aws, the DAG, a summary"
	@echo "make test    - the test suite (sets up .venv first)"
	@echo "make bench   - benchmarks, written to bench/results.json"
	@echo "make airflow - Airflow UI + scheduler + local_aws on 127.0.0.1:8080, no Docker"
	@echo "make env     - generate .env (Fernet key, passwords) for docker compose"

setup: $(VENV)/.installed $(CHROMIUM)

# The browser test drives Debian's chromium (Playwright's own browser download is unreachable here).
$(CHROMIUM):
	if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq chromium; \
	else echo "warning: run 'sudo apt-get install chromium' for tests/test_ui_browser.py"; fi

# torch and torchvision come from this machine's local wheels; pip (not uv) finds them.
$(VENV)/.installed: $(REQS)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --disable-pip-version-check -r requirements-dev.txt -c constraints.txt
	touch $@

test: setup
	$(PY) -m pytest

test-fast: setup
	$(PY) -m pytest -m "not e2e"

demo: setup
	$(PY) -m local_aws.devtools.demo

bench: setup
	$(PY) -m bench

airflow: setup
	$(PY) -m local_aws.devtools.airflow_stack

lint: setup
	$(VENV)/bin/ruff check .

env:
	$(PYTHON) -m local_aws.devtools.compose_env .env

clean:
	rm -rf .airflow .demo .local_aws .pytest_cache .ruff_cache
