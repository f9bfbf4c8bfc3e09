# Self-documenting: `make help` lists the targets with their ## comments.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.DEFAULT_GOAL := help
.PHONY: help install run test lint fmt bench schemas clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-8s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP) ## create .venv and install the project with its dev tools

run: install ## start everything (embedded NATS + PostgreSQL), print the URL and a dev API key
	$(BIN)/telemetry run

lint: install ## ruff (lint + format check) and mypy
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: lint ## lint, then the whole suite against private NATS and PostgreSQL
	$(BIN)/pytest -m "not bench" -p no:cacheprovider

fmt: install ## format and auto-fix
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: install ## benchmarks; results go to docs/benchmarks.md
	$(BIN)/python -m tests.bench.run

schemas: install ## regenerate schemas/exported/*.schema.json from the wire contracts
	$(BIN)/python -m telemetry_schemas.export

clean: ## remove the venv, caches and local data
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis .telemetry-data
