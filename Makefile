# bitmatch: `make demo` runs the main job, `make test` runs the tests. Both install what they need into .venv.
PYTHON ?= python3
VENV ?= .venv
PORT ?= 8100
BIN := $(VENV)/bin
BASE := $(VENV)/.bitmatch-base
TORCH := $(VENV)/.bitmatch-torch
TESTING := $(VENV)/.bitmatch-test

COMPRESSAI := $(VENV)/compressai/.installed

.PHONY: demo test test-fast lint provision postgres shellcheck clean docker-test

# The base package runs the coordinator, the workers and the demo; it never brings in torch. Its dependencies
# are the versions of docker/constraints.txt, the same ones the images install.
$(BASE): pyproject.toml docker/constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c docker/constraints.txt -e .
	touch $(BASE)

# torch (the [train] extra, for training and its tests) as the CPU build: a wheel on local disk when there is
# one, else PyTorch's CPU index. PyPI's default Linux wheel is the multi-GB CUDA build.
$(TORCH): $(BASE)
	$(BIN)/python -m pip install -q --no-deps --no-index 'torch==2.13.0' 2>/dev/null || \
	  $(BIN)/python -m pip install -q --no-deps --index-url https://download.pytorch.org/whl/cpu 'torch==2.13.0'
	touch $(TORCH)

$(TESTING): $(TORCH)
	$(BIN)/python -m pip install -q -c docker/constraints.txt -e '.[dev,train]'
	touch $(TESTING)

# CompressAI's own model code, for the importer tests: its wheel pins numpy < 2 and imports torchvision, so it
# is installed without dependencies into a directory of its own (tests/compressai_loader.py imports it).
$(COMPRESSAI): $(TESTING)
	$(BIN)/python -m pip install -q --no-deps --upgrade --target $(VENV)/compressai compressai==1.2.8
	touch $(COMPRESSAI)

demo: $(BASE)
	$(BIN)/bitmatch demo --port $(PORT)

provision: $(BASE)
	$(BIN)/bitmatch targets setup --all-available

# Debian's PostgreSQL for the tests that run the coordinator on it (they start a throwaway cluster of
# their own, tests/pg_cluster.py; the system's cluster is never started).
postgres:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { apt-get update -q && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends postgresql; }

# actionlint checks the workflows' shell steps with shellcheck when it is on PATH (as on GitHub's runners).
shellcheck:
	@command -v shellcheck >/dev/null 2>&1 || { apt-get update -q && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends shellcheck; }

# The whole tree, one formatter: ruff's (its settings in pyproject.toml).
lint: $(TESTING)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: $(TESTING) $(COMPRESSAI) lint provision postgres shellcheck
	$(BIN)/python -m pytest -q

# The edit-test loop: every test not marked slow, qemu or browser (make test still runs them all).
test-fast: $(TESTING) $(COMPRESSAI) postgres shellcheck
	$(BIN)/python -m pytest -q -m "not slow and not qemu and not browser"

# The compose stack end to end on a private dockerd (tests/docker/stack.py): builds the bases (mmdebstrap) and
# the images offline, runs a job across the x86-64 and the arm64 (binfmt QEMU) worker, tears it down. Root.
docker-test: $(BASE)
	$(BIN)/python -m tests.docker.stack

clean:
	rm -rf $(VENV) .pytest_cache
