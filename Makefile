# Each target builds its own virtual environment from nothing on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-pythons lint typecheck bench bench-smoke docs docs-serve clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

$(VENV)/.demo: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[demo]'
	touch $(VENV)/.demo

$(VENV)/.docs: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[dev,docs]'
	touch $(VENV)/.docs

$(VENV)/.bench: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[dev,bench]'
	touch $(VENV)/.bench

## demo: run the demo HTTP service; it prints how to call it (Ctrl-C stops it gracefully)
demo: $(VENV)/.demo
	$(BIN)/python examples/demo.py

## test: lint, type-check and run the whole test suite
test: lint typecheck
	$(BIN)/python -m pytest

## test-pythons: the test suite again on every other Python 3.1x found on the PATH
OTHER_PYTHONS ?= $(shell scripts/other-pythons.sh)
test-pythons:
	@for py in $(OTHER_PYTHONS); do \
		v=$$($$py -c 'import sys; print("%d.%d" % sys.version_info[:2])'); \
		echo "== Python $$v"; \
		$$py -m venv .venv-$$v && \
		.venv-$$v/bin/python -m pip install --quiet --upgrade pip && \
		.venv-$$v/bin/python -m pip install --quiet -e '.[dev]' && \
		.venv-$$v/bin/python -m pytest -q -p no:cacheprovider || exit 1; \
	done

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

## docs: build the documentation site into site/ (warnings are errors);
## docs-serve: the same, served on http://127.0.0.1:8000 with live reload
# Material for MkDocs prints a banner about MkDocs 2.0 on every build; the variable hides it.
docs: $(VENV)/.docs
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

docs-serve: $(VENV)/.docs
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs serve --strict

## bench: the full benchmark table (minutes); bench-smoke: a quick run of each workload
bench: $(VENV)/.bench
	$(BIN)/python benchmarks/run.py

bench-smoke: $(STAMP)
	$(BIN)/python benchmarks/run.py --smoke

clean:
	rm -rf $(VENV) .venv-3.* .pytest_cache .mypy_cache .ruff_cache .hypothesis site
