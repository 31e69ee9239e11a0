# healthlake developer commands. `make setup` once, then `make test`.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
TEST_WORKERS ?= 2

.PHONY: setup test lint format clean distclean

## setup: create .venv, install healthlake with its dev extras, warm the Delta jar cache in .cache/ivy
setup:
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	$(PY) -m healthlake.spark --warm

## test: lint and type-check, then run the test suite on two workers (a local Spark session with Delta
## each; tests/conftest.py keeps each module, and the modules sharing the generated region, on one worker)
test:
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadgroup --no-loadscope-reorder

## lint: ruff checks, formatting check and mypy (the library; settings in pyproject.toml)
lint:
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

## format: apply ruff's formatting and safe fixes
format:
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

## clean: remove caches and Spark droppings (keeps .venv, the jar cache and data folders)
clean:
	rm -rf .pytest_cache .ruff_cache .mypy_cache spark-warehouse metastore_db derby.log build *.egg-info
	find . -path ./.venv -prune -o -name __pycache__ -type d -exec rm -rf {} +

## distclean: clean, and remove .venv and .cache too
distclean: clean
	rm -rf $(VENV) .cache
