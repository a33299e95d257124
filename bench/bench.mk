# Benchmarks (bench/README.md). Not part of `make test`: nothing here runs in CI's test target.
# Extra driver flags go in BENCH_ARGS, e.g. make bench BENCH_ARGS="--baseline <commit>".
.PHONY: bench bench-quick bench-deps bench-micro

BENCH_ARGS     ?=
BENCH_STAMP    := $(VENV)/.bench-installed
MLSERVER_VENV  := bench/.venv-mlserver
MLSERVER_STAMP := $(MLSERVER_VENV)/.installed
FASTAPI_VENV   := bench/.venv-fastapi
FASTAPI_STAMP  := $(FASTAPI_VENV)/.installed

$(BENCH_STAMP): $(STAMP) bench/requirements.txt
	$(BIN)/pip install --quiet -r bench/requirements.txt
	touch $@

# MLServer pins its own stack, so it lives in its own venv; a failure here is reported, not fatal.
$(MLSERVER_STAMP): bench/requirements-mlserver.txt
	$(PYTHON) -m venv $(MLSERVER_VENV)
	$(MLSERVER_VENV)/bin/pip install --quiet --upgrade pip
	$(MLSERVER_VENV)/bin/pip install --quiet -r bench/requirements-mlserver.txt
	touch $@

# The FastAPI + uvicorn peer (bench/peer_fastapi.py), in its own venv likewise; reported, not fatal.
$(FASTAPI_STAMP): bench/requirements-fastapi.txt
	$(PYTHON) -m venv $(FASTAPI_VENV)
	$(FASTAPI_VENV)/bin/pip install --quiet --upgrade pip
	$(FASTAPI_VENV)/bin/pip install --quiet -r bench/requirements-fastapi.txt
	touch $@

bench-deps: $(BENCH_STAMP)  ## Install the bench's tools: wrk (Debian package), matplotlib, py-spy.
	@command -v wrk >/dev/null || { \
	  echo "wrk is missing: installing the Debian package (needs root)"; \
	  apt-get update -qq && apt-get install -y -qq wrk; }

bench: bench-deps  ## Full benchmark (~9 min): floors, service, FastAPI peer, sync vs gthread, MLServer, batch, micro, training.
	-@$(MAKE) --no-print-directory $(MLSERVER_STAMP) || echo "MLServer venv failed: the results say so"
	-@$(MAKE) --no-print-directory $(FASTAPI_STAMP) || echo "FastAPI peer venv failed: the results say so"
	OPENBLAS_NUM_THREADS=1 $(BIN)/python bench/run.py $(BENCH_ARGS)

bench-quick: bench-deps  ## Short benchmark (~2 min): floors, service, FastAPI peer, training on big data; writes bench/results/quick.md.
	-@$(MAKE) --no-print-directory $(FASTAPI_STAMP) || echo "FastAPI peer venv failed: the results say so"
	OPENBLAS_NUM_THREADS=1 $(BIN)/python bench/run.py --quick $(BENCH_ARGS)

bench-micro: $(BENCH_STAMP)  ## Only the in-process micro-suite (timeit).
	$(BIN)/python -m bench.micro
