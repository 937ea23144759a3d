# Two commands on a fresh machine: `make demo` and `make test`. Both set up what they need.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
CHROMIUM := /usr/bin/chromium
DEMO_REQS := requirements.txt requirements-model.txt requirements-local-aws.txt requirements-demo.txt constraints.txt
# --no-compile: measured on a fresh venv of the demo's set, 397 s instead of 445 s; Python
# then writes each module's .pyc on its first import (~2.5 s once for the demo's imports).
PIP_INSTALL := $(PIP) install --quiet --disable-pip-version-check --no-compile

.PHONY: help setup demo-setup test test-fast demo bench airflow lint env clean

help:
	@echo "make demo    - the whole pipeline offline: sample data, local_aws, the DAG, a summary"
	@echo "make test    - the test suite (sets up .venv first)"
	@echo "make bench   - benchmarks, written to bench/results.json"
	@echo "make airflow - Airflow UI + scheduler + local_aws on 127.0.0.1:8080, no Docker"
	@echo "make env     - generate .env (Fernet key, passwords) for docker compose"

# Two sets, two stamps: the demo's (Airflow, local_aws, the model side) and everything (plus
# the test tools and chromium). The full set includes the demo's, so it stamps both.
setup: $(VENV)/.installed $(CHROMIUM)
demo-setup: $(VENV)/.demo-installed

# The browser test drives Debian's chromium (Playwright's own browser download is unreachable here).
$(CHROMIUM):
	if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq chromium; \
	else echo "warning: run 'sudo apt-get install chromium' for tests/test_ui_browser.py"; fi

# torch and torchvision come from this machine's local wheels; pip (not uv) finds them.
$(VENV)/.demo-installed: $(DEMO_REQS)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP_INSTALL) -r requirements-demo.txt -c constraints.txt
	touch $@

$(VENV)/.installed: $(DEMO_REQS) requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP_INSTALL) -r requirements-dev.txt -c constraints.txt
	touch $@ $(VENV)/.demo-installed

test: setup
	$(PY) -m pytest

test-fast: setup
	$(PY) -m pytest -m "not e2e"

# The demo prints how long its set-up took (0 s once installed). DEMO_ARGS: e.g. --runs 2, --serve.
demo:
	@started=$$(date +%s); $(MAKE) --no-print-directory demo-setup && \
	DEMO_SETUP_SECONDS=$$(( $$(date +%s) - started )) $(PY) -m local_aws.devtools.demo $(DEMO_ARGS)

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
