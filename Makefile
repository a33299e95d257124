# Every target sets up what it needs: a fresh machine with make, pip and Python 3.11, 3.12 and
# 3.13 (pyenv's or on PATH; `make test` runs the suites on each) suffices.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# `make test` runs the unit and integration suites on each of these (pyproject's classifiers);
# the version of $(PYTHON) runs every suite in $(VENV), each other one in its own .venv-3.X.
PYTHON_VERSIONS ?= 3.11 3.12 3.13
MAIN_VERSION    := $(shell $(PYTHON) -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null)
OTHER_VERSIONS  := $(filter-out $(MAIN_VERSION),$(PYTHON_VERSIONS))

.DEFAULT_GOAL := help
.PHONY: help venv run test lint typecheck pytest pytest-versions test-packages chromium screenshot lock grpc-stubs clean

help:  ## List the targets.
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml requirements.lock requirements-test.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements-test.lock
	$(BIN)/pip install --quiet --no-deps -e .
	touch $@

venv: $(STAMP)  ## Create .venv with the pinned runtime and test dependencies.

run: $(STAMP)  ## Serve on NEURON_BIND (127.0.0.1:8000) and gRPC on NEURON_GRPC_BIND (:8081).
	$(BIN)/gunicorn -c gunicorn.conf.py service.wsgi:app

test: lint typecheck pytest pytest-versions  ## Lint, type-check and run every test (what CI runs).

lint: $(STAMP)  ## ruff: style and common bugs.
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)  ## mypy --strict over service/.
	$(BIN)/mypy

pytest: $(STAMP) test-packages  ## Unit and integration tests (real gunicorn, PostgreSQL, haproxy).
	$(BIN)/pytest

chromium:  ## Debian's chromium for the browser tests (apt-get, only if absent and root).
	$(PYTHON) -m tests.browser.chromium

screenshot: $(STAMP)  ## Refresh docs/img/docs.png (the README's /docs screenshot) from the browser test.
	NEURON_UPDATE_SCREENSHOT=1 $(BIN)/pytest tests/browser -q -k predicts_and_retrains

pytest-versions: $(addprefix pytest-,$(OTHER_VERSIONS))  ## Unit and integration tests on the other supported Pythons.

pytest-3.%: .venv-3.%/.installed

	.venv-3.$*/bin/pytest -q -p no:cacheprovider --ignore=tests/deploy --ignore=tests/reliability --ignore=tests/browser

.PRECIOUS: .venv-3.%/.installed
# A Python the machine lacks fails here, naming it (.ci/python-for): never a silent pass.
.venv-3.%/.installed: pyproject.toml requirements.lock requirements-test.lock
	interpreter=$$(.ci/python-for 3.$*) && $$interpreter -m venv .venv-3.$*
	.venv-3.$*/bin/pip install --quiet --upgrade pip
	.venv-3.$*/bin/pip install --quiet -r requirements-test.lock
	.venv-3.$*/bin/pip install --quiet --no-deps -e .
	touch $@

test-packages:  ## Install Debian's postgresql and haproxy for the tests if missing (as root).
	bash deploy/scripts/test-packages.sh

lock:  ## Re-pin requirements*.lock from pyproject.toml in a throw-away venv.
	rm -rf .lock-venv && $(PYTHON) -m venv .lock-venv
	.lock-venv/bin/pip install --quiet .
	.lock-venv/bin/pip freeze --exclude neuron-service > requirements.lock
	.lock-venv/bin/pip install --quiet '.[test]'
	.lock-venv/bin/pip freeze --exclude neuron-service > requirements-test.lock
	rm -rf .lock-venv

grpc-stubs: $(STAMP)  ## Regenerate service/oip/rpc's stubs from its .proto (grpcio-tools; a test compares).
	$(BIN)/python -m tests.grpcstubs

clean:  ## Remove the venv, caches and the local model directory.
	rm -rf $(VENV) .venv-3.* var .pytest_cache .mypy_cache .ruff_cache .hypothesis

-include bench/bench.mk deploy/container.mk
