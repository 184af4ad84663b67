# Two entry points for a fresh machine with Python 3.11+ (see README.md):
#   make demo   install into .venv and run the demo on the embedded defaults
#   make test   install the system packages the tests need (when that needs no password, else say
#               the one command to run), install into .venv (with dev tools), run linters, type
#               checks, build or reuse the test Kubernetes API server, and run every test
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Every distribution of this repository, installed editable side by side.
DISTRIBUTIONS := -e core -e mappers/virtual -e mappers/modbus -e mappers/mqtt -e mappers/bacnet -e mappers/bluetooth -e 'mappers/zigbee[xbee]' -e cloud
STAMP := $(VENV)/.installed

.PHONY: demo test lint install system-deps test-cluster bench clean

$(STAMP): pyproject.toml core/pyproject.toml $(wildcard mappers/*/pyproject.toml plugins/*/pyproject.toml cloud/pyproject.toml)
	$(PYTHON) -c 'import sys; sys.exit("Python 3.11+ is needed, found " + sys.version.split()[0]) if sys.version_info < (3, 11) else None'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q -U pip
	$(BIN)/python -m pip install -q $(DISTRIBUTIONS) -e '.[dev]'
	touch $@

install: $(STAMP)

demo: install
	$(BIN)/kubeedge demo

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy core/src cloud/src
	$(BIN)/lint-imports

# Before anything else, so a missing package stops the run before lint, with the command to run.
system-deps:
	PYTHON=$(PYTHON) hack/system-deps.sh

test: system-deps
	$(MAKE) --no-print-directory lint
	$(MAKE) --no-print-directory test-cluster
	$(BIN)/python -m pytest

# The real kube-apiserver, etcd and kubectl the Kubernetes tests start (hack/test-cluster.sh):
# built once from Debian's packages into ~/.cache/kubeedge-test-cluster (about 6 minutes on two
# cores), reused after. Before pytest, so the tests only start it.
test-cluster:
	hack/test-cluster.sh build >/dev/null

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
