# Two commands do all the set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[cpu,dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/scanlabel demo --out demo_out

test: $(STAMP)
	$(BIN)/ruff check core cluster jobs tests
	$(BIN)/python -m pytest -q tests

lint: $(STAMP)
	$(BIN)/ruff check core cluster jobs tests

bench: $(STAMP)
	$(BIN)/python -m jobs.bench label

clean:
	rm -rf demo_out bench_out .pytest_cache
