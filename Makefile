# Every target works on a fresh clone: it creates the virtualenv in $(VENV) and installs what it needs.
# Installs are remembered by stamp files inside the virtualenvs: they run again only when what they
# install from changes (pyproject.toml, the requirements or constraints files), or the virtualenv is gone.
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip install --quiet --disable-pip-version-check
SOURCES := embedding_reader tests examples benchmarks
INSTALLED := $(VENV)/.installed-core
INSTALLED_DEV := $(VENV)/.installed-dev

# autofaiss 2.18.0 next to this package, with the pins of tests/autofaiss/constraints.txt (numpy 1.x).
AF_VENV ?= .venv-autofaiss
AF_PY := $(AF_VENV)/bin/python
AF_CONSTRAINTS := tests/autofaiss/constraints.txt
AF_INSTALLED := $(AF_VENV)/.installed

.PHONY: install install-dev lint black test test-packaging test-autofaiss autofaiss-env demo bench clean

$(PY):
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip  # a resolver that handles s3fs's pins

$(INSTALLED): pyproject.toml | $(PY)
	$(PIP) -e .
	touch $@

$(INSTALLED_DEV): pyproject.toml requirements-test.txt | $(PY)
	$(PIP) -e ".[s3,http,ray]" -r requirements-test.txt
	touch $@ $(INSTALLED)

install: $(INSTALLED)  ## the package and its core dependencies

install-dev: $(INSTALLED_DEV)  ## the package with the extras the tests exercise (s3, http, ray), plus test and lint tools

lint: install-dev  ## format check, linter, type check
	$(PY) -m black --check $(SOURCES)
	$(PY) -m ruff check $(SOURCES)
	$(PY) -m mypy

black: install-dev  ## reformat the code
	$(PY) -m black $(SOURCES)

test: install-dev  ## the main test suite (the packaging and autofaiss tests are deselected in pyproject.toml)
	$(PY) -m pytest -q tests

test-packaging: install-dev  ## build the sdist and wheel, install each into a fresh virtualenv, smoke-read there
	$(PY) -m pytest -q -m packaging tests/test_packaging.py

$(AF_PY):
	python3 -m venv $(AF_VENV)
	echo '*' > $(AF_VENV)/.gitignore
	$(AF_PY) -m pip install --quiet --disable-pip-version-check --upgrade pip

$(AF_INSTALLED): pyproject.toml $(AF_CONSTRAINTS) | $(AF_PY)
	$(AF_PY) -m pip install --quiet --disable-pip-version-check -c $(AF_CONSTRAINTS) \
		-e . autofaiss faiss-cpu pyspark pytest pytest-timeout
	touch $@

autofaiss-env: $(AF_INSTALLED)  ## $(AF_VENV): this package (editable), autofaiss, faiss-cpu and pyspark on the pinned set

test-autofaiss: autofaiss-env  ## autofaiss.build_index end to end on collections read by this package
	$(AF_PY) -m pytest -q -m autofaiss --confcutdir=tests/autofaiss tests/autofaiss

demo: install  ## read a generated sample collection and print what it holds and how fast it reads
	$(PY) examples/demo.py

bench: install-dev  ## the benchmark against the reference release (see benchmarks/README.md)
	$(PY) benchmarks/bench.py

clean:
	rm -rf $(VENV) $(AF_VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
