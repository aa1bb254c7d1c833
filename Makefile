# Two commands do all the set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench clean

PIP := $(BIN)/python -m pip --quiet --disable-pip-version-check

# Recipes are silent (@): what `make demo` prints is meant for a person (tests/test_console.py keeps it short).
$(STAMP): pyproject.toml
	@echo "scanlabel: installing into $(VENV) (when pyproject.toml changes; a few minutes)"
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(PIP) install --upgrade pip
	@$(PIP) install -e ".[cpu,dev]"
	@touch $(STAMP)

demo: $(STAMP)
	@$(BIN)/scanlabel demo --out demo_out

test: $(STAMP)
	$(BIN)/ruff check core cluster jobs tests benchmarks
	$(BIN)/python -m pytest -q tests

lint: $(STAMP)
	$(BIN)/ruff check core cluster jobs tests benchmarks

bench: $(STAMP)
	$(BIN)/python -m jobs.bench label

clean:
	rm -rf demo_out bench_out .pytest_cache
