# The README's front door: `make demo` and `make test` do all set-up themselves.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint typecheck check clean bench-quick

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 10))' || { echo "Python >= 3.10 is required ($(PYTHON))"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check -U pip
	$(BIN)/python -m pip install -q --disable-pip-version-check -e '.[dev]'
	@touch $(STAMP)

demo: $(STAMP)
	$(BIN)/dbupgrade demo

test: $(STAMP)
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

check: lint typecheck test

# FC deployables in dist/ (docs/deploy.md): the layer for python3.10 and 3.12, one zip per function.
# PY=3.10 or PY=3.12 builds one runtime; OFFLINE=1 rebuilds from build/wheelhouse, asking no index;
# OSS_BUCKET=name also writes dist/template.packaged.yml (CodeUri in that bucket) and prints the uploads.
.PHONY: package
package: $(STAMP)
	$(BIN)/python layers/package.py $(if $(PY),--python $(PY)) $(if $(OFFLINE),--offline) $(if $(OSS_BUCKET),--oss-bucket $(OSS_BUCKET))

# Benchmarks (bench/run.py): `bench` writes bench/results.json and BENCHMARKS.md (< 10 min);
# `bench-quick` is CI's smoke run of the same harness at tiny sizes, no timing gate.
.PHONY: bench
bench: $(STAMP)
	$(BIN)/python bench/run.py

bench-quick: $(STAMP)
	$(BIN)/python bench/run.py --quick --results $(or $(TMPDIR),/tmp)/dbupgrade-bench-quick.json --report $(or $(TMPDIR),/tmp)/dbupgrade-bench-quick.md

# The fault runs of tests/reliability at 1,000 upgrades per entry point; regenerates RELIABILITY.md.
.PHONY: chaos
chaos: $(STAMP)
	$(BIN)/python -m chaos.run

clean:
	rm -rf $(VENV) .venv-* dist build .pytest_cache .mypy_cache .ruff_cache
