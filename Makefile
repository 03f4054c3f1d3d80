# Every target works on a fresh clone: it creates the virtualenv in $(VENV) and installs what it needs.
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip install --quiet --disable-pip-version-check
SOURCES := embedding_reader tests examples benchmarks setup.py

.PHONY: install install-dev lint black test demo bench clean

$(PY):
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip  # a resolver that handles s3fs's pins

install: $(PY)  ## the package and its core dependencies
	$(PIP) -e .

install-dev: $(PY)  ## the package with the extras the tests exercise (s3, http, ray), plus test and lint tools
	$(PIP) -e ".[s3,http,ray]" -r requirements-test.txt

lint: install-dev  ## format check, linter, type check
	$(PY) -m black --check $(SOURCES)
	$(PY) -m ruff check $(SOURCES)
	$(PY) -m mypy

black: install-dev  ## reformat the code
	$(PY) -m black $(SOURCES)

test: install-dev  ## the whole test suite
	$(PY) -m pytest -q tests

demo: install  ## read a generated sample collection and print what it holds and how fast it reads
	$(PY) examples/demo.py

bench: install-dev  ## the benchmark against the reference release (see benchmarks/README.md)
	$(PY) benchmarks/bench.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
