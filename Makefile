# softras: `make demo` and `make test` do everything on a fresh machine, set-up included.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
READY  := $(VENV)/.ready

.DEFAULT_GOAL := help
.PHONY: help setup demo test test-fast bench lint format cuda-check gpu-check clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  %-12s %s\n", $$1, $$2}'

$(READY): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	# torch 2.13.0 CPU build from the local wheel (an unpinned torch would pull the CUDA build)
	$(BIN)/python -m pip install -q --disable-pip-version-check "torch==2.13.0"
	$(BIN)/python -m pip install -q --disable-pip-version-check -e ".[dev]"
	$(BIN)/python -m softras.build
	touch $(READY)

setup: $(READY)  ## virtual environment, torch (CPU), softras in editable mode, native build

demo: $(READY)  ## run the main job on bundled data: the paper's sphere-to-airplane deformation
	$(BIN)/softras deform

test: $(READY)  ## run the test suite
	$(BIN)/python -m pytest -q -ra tests

bench: $(READY)  ## benchmarks: table + outputs/bench/bench.json
	$(BIN)/python -m bench.bench

lint: $(READY)  ## ruff lint and format check; import-linter layering contracts (pyproject.toml)
	$(BIN)/ruff check softras tests bench
	$(BIN)/ruff format --check softras tests bench
	$(BIN)/lint-imports

format: $(READY)  ## ruff format
	$(BIN)/ruff format softras tests bench
	$(BIN)/ruff check --fix softras tests bench

cuda-check: $(READY)  ## compile the CUDA sources (compile only; needs nvcc)
	$(BIN)/python -m softras.build --cuda-compile-check

gpu-check:  ## on a GPU machine, offline: build, CUDA tests, bench -> outputs/gpu-check/ (uses the machine's torch)
	bash .ci/gpu-check

clean:  ## remove build products and caches (keeps outputs/)
	rm -rf build *.egg-info .pytest_cache .ruff_cache
	find . -name __pycache__ -prune -exec rm -rf {} +
