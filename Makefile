# Vinh IOC — `make run` serves the Vinh demo, `make test` runs the whole suite.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
HOST ?= 127.0.0.1
PORT ?= 8000
export IOC_VAR_DIR ?= var

.PHONY: run test lint format bench install migrate seed vendor browser clean

$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

migrate: $(STAMP)
	$(BIN)/ioc migrate

seed: migrate
	$(BIN)/ioc seed --demo --if-empty

run: seed
	$(BIN)/ioc serve --host $(HOST) --port $(PORT)

# The whole suite: SQLite always; PostgreSQL and MQTT legs when IOC_TEST_DATABASE_URL /
# IOC_TEST_MQTT_URL are set (skipped with the reason printed otherwise).
test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff format src tests bench
	$(BIN)/ruff check --fix src tests bench

bench: $(STAMP)
	$(BIN)/python -m bench

# Debian's Chromium for the browser tests (never a downloaded browser build).
browser:
	@command -v chromium >/dev/null || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium)

vendor:
	scripts/vendor.sh

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
