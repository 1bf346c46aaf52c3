# labeltriage: `make demo` runs the whole loop on this machine, `make test` runs every test,
# `make test-fast` the pure ones (no stack, no model, no server) in under a minute.
SHELL := /bin/bash
VENV := .venv
BIN := $(VENV)/bin
export HF_HUB_DISABLE_TELEMETRY := 1
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: setup demo test test-fast lint format stack-up stack-down bench clean

setup:
	@bash scripts/setup.sh

demo: setup
	$(BIN)/labeltriage demo

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: setup
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

test: setup lint
	bash scripts/run_tests.sh

test-fast: setup
	bash scripts/run_tests.sh fast

stack-up: setup
	$(BIN)/labeltriage stack up

stack-down:
	$(BIN)/labeltriage stack down

bench: setup
	$(BIN)/python benchmarks/stack_scale.py

clean:
	rm -rf $(VENV) .cache .pytest_cache .ruff_cache
