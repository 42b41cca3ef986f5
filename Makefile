# bitmatch: `make demo` runs the main job, `make test` runs the tests. Both install what they need into .venv.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.bitmatch-installed

COMPRESSAI := $(VENV)/compressai/.installed

.PHONY: demo test lint provision postgres shellcheck clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev,train]'
	touch $(STAMP)

# CompressAI's own model code, for the importer tests: its wheel pins numpy < 2 and imports torchvision, so it
# is installed without dependencies into a directory of its own (tests/compressai_loader.py imports it).
$(COMPRESSAI): $(STAMP)
	$(BIN)/python -m pip install -q --no-deps --upgrade --target $(VENV)/compressai compressai==1.2.8
	touch $(COMPRESSAI)

demo: $(STAMP)
	$(BIN)/bitmatch demo

provision: $(STAMP)
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

lint: $(STAMP)
	$(BIN)/ruff check codec worker server tests bench
	$(BIN)/ruff format --check codec worker server tests bench

test: $(STAMP) $(COMPRESSAI) lint provision postgres shellcheck
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) .pytest_cache
