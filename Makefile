# Shetphone. `make run` serves on http://127.0.0.1:5000; `make test` runs every test.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PORT ?= 5000
PYTEST_ARGS ?=

.PHONY: run test test-python bench lint frontend venv dev-venv system-packages build-packages config clean

run: venv frontend config
	$(PY) app.py --port $(PORT)

test: dev-venv system-packages frontend
	$(PY) -m pytest $(PYTEST_ARGS)

# The Python tests alone (no browser), e.g. `make test-python PYTHON=python3.13 VENV=.venv-3.13`.
test-python: dev-venv system-packages
	$(PY) -m pytest -m "not browser" $(PYTEST_ARGS)

bench: dev-venv system-packages frontend
	$(PY) bench/run.py

lint: dev-venv
	$(VENV)/bin/ruff check .

venv: $(VENV)/.installed
dev-venv: $(VENV)/.dev-installed

$(VENV)/.installed: requirements.txt | build-packages
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -r requirements.txt
	touch $@

$(VENV)/.dev-installed: requirements-dev.txt $(VENV)/.installed
	$(PY) -m pip install -q --disable-pip-version-check -r requirements-dev.txt
	touch $@

system-packages:
	scripts/system-packages.sh test

build-packages:
	scripts/system-packages.sh build

frontend: static/dist/.vite/manifest.json

static/dist/.vite/manifest.json: frontend/package.json frontend/package-lock.json frontend/vite.config.js $(shell find frontend/src -type f 2>/dev/null)
	cd frontend && npm ci --no-audit --no-fund && npm run build

config: venv
	$(PY) -m shetphone.bootstrap --port $(PORT)

clean:
	rm -rf static/dist frontend/node_modules
