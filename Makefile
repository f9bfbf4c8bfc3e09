# Self-documenting: `make help` lists the targets with their ## comments.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
TOOLS  := .tools
UV     := $(TOOLS)/bin/uv
# Use the machine's Python; never download one.
export UV_PYTHON_DOWNLOADS := never

.DEFAULT_GOAL := help
.PHONY: help install lock run test lint fmt bench bench-peers bench-chunks schemas clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-8s %s\n", $$1, $$2}'

# uv itself comes from PyPI, pinned with hashes (requirements/uv.txt), into its own small venv.
$(UV): requirements/uv.txt
	@echo "==> installing uv (pinned in requirements/uv.txt, hash-checked) into $(TOOLS)"
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/python -m pip install --progress-bar off --require-hashes --no-deps -r requirements/uv.txt
	@touch $(UV)

# Everything else is installed exactly as requirements/lock.txt pins it (versions and hashes; `make lock`
# writes it), then the project itself, editable, built by the pinned backend in requirements/build.txt.
$(STAMP): $(UV) requirements/lock.txt requirements/build.txt pyproject.toml
	@echo "==> installing the locked dependencies into $(VENV) (requirements/lock.txt: exact versions, hash-checked)"
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(UV) pip sync --python $(BIN)/python --require-hashes requirements/lock.txt
	@echo "==> installing the project itself (editable)"
	$(UV) pip install --python $(BIN)/python --no-deps --build-constraints requirements/build.txt -e .
	@touch $(STAMP)

install: $(STAMP) ## create .venv and install the project with its dev tools, exactly as the lock pins them

lock: $(UV) ## recompile requirements/lock.txt after a pyproject.toml change (UPGRADE=1: newest versions allowed)
	$(PYTHON) requirements/lock.py $(UV) $(if $(UPGRADE),--upgrade)

run: install ## start everything (embedded NATS + PostgreSQL), print the URL and a dev API key
	$(BIN)/telemetry run

lint: install ## ruff (lint + format check) and mypy
	@echo "==> ruff, ruff format --check, mypy"
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# The web console's browser test and benchmark drive the distribution's Chromium (Playwright never downloads one).
# apt-get runs only when it is missing (as root, or through sudo); quiet, and no recommended packages; the
# package lists are refreshed only if the install cannot find the package without it.
CHROMIUM := /usr/bin/chromium
.PHONY: browser
browser: ## install the system Chromium (Debian/Ubuntu packages) for the console's browser test, if missing
	@test -x $(CHROMIUM) || { echo "==> installing chromium (apt-get) for the console's browser test"; \
	  SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); export DEBIAN_FRONTEND=noninteractive; \
	  $$SUDO apt-get install -y -qq --no-install-recommends chromium >/dev/null 2>&1 || { \
	  $$SUDO apt-get update -qq >/dev/null && \
	  $$SUDO apt-get install -y -qq --no-install-recommends chromium >/dev/null; }; }

# Two pytest processes, whole files each (module fixtures stay in one process); each process starts its own
# NATS and PostgreSQL. Most tests wait on servers (redelivery, restarts) rather than use a core, so two
# processes fit 2 cores. TEST_PROCESSES=0 runs in one process (e.g. to debug with -x or pdb).
TEST_PROCESSES ?= 2

test: lint browser ## lint, then the whole suite against private NATS and PostgreSQL
	@echo "==> pytest in $(TEST_PROCESSES) processes (each starts its own NATS and PostgreSQL; TELEMETRY_TEST_BACKEND=containers uses Docker images)"
	$(BIN)/pytest -m "not bench" -p no:cacheprovider $(if $(filter-out 0,$(TEST_PROCESSES)),-n $(TEST_PROCESSES) --dist loadfile)

fmt: install ## format and auto-fix
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: install browser ## benchmarks; results go to docs/benchmarks*.md
	$(BIN)/python -m tests.bench.run
	$(BIN)/python -m tests.bench.streaming
	$(BIN)/python -m tests.bench.stats_bench
	$(BIN)/python -m tests.bench.line_protocol
	$(BIN)/python -m tests.bench.durability
	$(BIN)/python -m tests.bench.mqtt
	$(BIN)/python -m tests.bench.console
	$(BIN)/python -m tests.bench.gateway_headroom
	$(BIN)/python -m tests.bench.single_point
	$(BIN)/python -m tests.bench.q2_prepare
	$(BIN)/python -m tests.bench.pool_gate --write
	$(BIN)/python -m tests.bench.series_batches --write
	$(BIN)/python -m tests.bench.latest_cache
	$(BIN)/python -m tests.bench.latest_polled
	$(BIN)/python -m tests.bench.fast_reads
	$(BIN)/python -m tests.bench.gc_probe --write
	$(BIN)/python -m tests.bench.rollups_bench
	$(BIN)/python -m tests.bench.alert_engine
	$(BIN)/python -m tests.bench.cluster
	$(BIN)/python -m tests.bench.replay_retention
	$(BIN)/python -m tests.bench.replica_reads
	$(BIN)/python -m tests.bench.worker_cpu  # needs BENCH_BASE_TREE (a checkout of the commit to compare with)

# The peers harness (InfluxDB + VictoriaMetrics, apt-installed by it) lives outside this repository.
PEERS_DIR ?= ../shared/peers
bench-peers: install ## this service beside InfluxDB and VictoriaMetrics on one workload (PEERS_DIR=harness)
	PEERS_DIR=$(PEERS_DIR) $(BIN)/python -m tests.bench.peers

.PHONY: bench-peers-interleaved
bench-peers-interleaved: install ## q1/q2 against VictoriaMetrics and this service taking turns (after make bench-peers)
	PEERS_DIR=$(PEERS_DIR) $(BIN)/python -m tests.bench.peers_interleaved

# A storage prototype, not the product's write path: per-series chunks against row-per-point storage, in a
# throwaway schema of its own PostgreSQL (docs/storage-chunks.md). Not in `make bench`: it measures a design.
bench-chunks: install ## per-series chunk storage prototype vs rows (docs/benchmarks-chunks.md, docs/storage-chunks.md)
	$(BIN)/python -m tests.bench.chunk_store

# The ingest transaction when the same series keep writing (their rollup rows updated, the hour sketches merged):
# the case the peers harness does not show. Not in `make bench` (about two minutes). docs/benchmarks-steady-rollups.md.
.PHONY: bench-steady
bench-steady: install ## PostgreSQL's cost per point of steady ingestion, step by step (docs/benchmarks-steady-rollups.md)
	$(BIN)/python -m tests.bench.steady_rollups

# The spec's 10 M-point query benchmark (1,000 devices x 10 metrics, loaded straight into PostgreSQL): not part
# of `bench`, its load alone takes several minutes on 2 cores. Writes docs/benchmarks-big-queries.md.
.PHONY: bench-big
bench-big: install ## queries at the spec's 10 M points (separate: about 30 min on 2 cores)
	$(BIN)/python -m tests.bench.big_queries

schemas: install ## regenerate schemas/exported/*.schema.json from the wire contracts
	$(BIN)/python -m telemetry_schemas.export

clean: ## remove the venv, caches and local data
	rm -rf $(VENV) $(TOOLS) .pytest_cache .mypy_cache .ruff_cache .hypothesis .telemetry-data
