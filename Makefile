# Two commands do all the set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench clean

PIP := $(BIN)/python -m pip --quiet --disable-pip-version-check
UV := $(BIN)/python -m uv pip install --quiet --compile-bytecode --python $(BIN)/python

# Recipes are silent (@): what `make demo` prints is meant for a person (tests/test_console.py keeps it short).
# uv resolves and downloads in parallel: ~35 s from an empty cache on 2 cores where pip takes ~2 min (BENCHMARKS.md,
# "Demo time"); pip does the install where uv cannot be had.  --compile-bytecode: uv, unlike pip, leaves .pyc
# files to the first import, and where PYTHONDONTWRITEBYTECODE is set (containers, CI) every process would compile
# TensorFlow's and Ray's modules again at each start (BENCHMARKS.md, "Demo time").
$(STAMP): pyproject.toml
	@echo "scanlabel: installing into $(VENV) (when pyproject.toml changes; about a minute)"
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@($(PIP) install "uv>=0.9,<0.10" 2>/dev/null && $(UV) -e ".[cpu,dev]") || \
		($(PIP) install --upgrade pip && $(PIP) install -e ".[cpu,dev]")
	@touch $(STAMP)

demo: $(STAMP)
	@$(BIN)/scanlabel demo --out demo_out

test: $(STAMP)
	$(BIN)/ruff check core cluster jobs tests benchmarks
	$(BIN)/python -m pytest -q --durations=25 tests

lint: $(STAMP)
	$(BIN)/ruff check core cluster jobs tests benchmarks

bench: $(STAMP)
	$(BIN)/python -m jobs.bench label

clean:
	rm -rf demo_out bench_out .pytest_cache
