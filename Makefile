# The two commands of the README: `make demo` and `make test`.
# Both create the virtualenv on first use. Override PYTHON, VENV or TORCH if needed,
# e.g. `make demo TORCH="torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu"`.

PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
BIN := $(VENV)/bin
STAMP := $(VENV)/.recrl-installed

.PHONY: install demo test test-fast lint bench clean

$(STAMP): pyproject.toml setup.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# torch first: a CPU build of the pinned version, so the project's range adds nothing.
	$(BIN)/python -m pip install --quiet $(TORCH)
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/recrl demo

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: lint
	$(BIN)/python -m pytest --durations=15

# The unit tier: no Ray runtime, no services, a tenth of the fuzzing, one pytest worker per
# CPU (pytest-xdist); 45 s on 2 cores.
test-fast: lint
	RECRL_FUZZ_FILES=200 $(BIN)/python -m pytest -m 'unit and not slow' -n auto

bench: $(STAMP)
	$(BIN)/python benchmarks/prepare_bench.py

clean:
	rm -rf runs .pytest_cache .ruff_cache
