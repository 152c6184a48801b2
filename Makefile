# The two commands that matter: `make serve` and `make test`. Both set everything up first
# (idempotent, and quick once done), so they work on a fresh machine.
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
STAMP := $(VENV)/.lookalike-setup
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: setup serve test test-fast lint format bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml scripts/setup.sh
	VENV=$(VENV) PYTHON=$(PYTHON) bash scripts/setup.sh
	touch $(STAMP)

serve: setup
	$(BIN)/lookalike serve --host $(HOST) --port $(PORT)

test: setup
	bash scripts/system-deps.sh
	$(BIN)/ruff check .
	$(BIN)/pytest $(PYTEST_ARGS)

# Our own quick lane (a few minutes): no slow-marked tests (photo-set ingests, large seeded
# catalogs for plan tests, extra processes and servers, schemathesis) and no browser tests.
# CI always runs `make test`, which runs everything.
test-fast: setup
	$(BIN)/ruff check .
	$(BIN)/pytest -m "not slow" --ignore=tests/web -q $(PYTEST_ARGS)

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: setup
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

bench: setup
	$(BIN)/python bench/encode.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
