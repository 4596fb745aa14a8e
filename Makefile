# Phoenix 95 — `make run` starts it, `make test` tests it. Both install what they need first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: install run test lint bench

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

install: $(VENV)/.installed

## run: migrate, then run every service (paper mode) against local RabbitMQ and Redis
run: install
	$(BIN)/python -m services

## test: the whole suite, against real RabbitMQ, Redis and PostgreSQL on localhost
test: install
	$(BIN)/python -m pytest

## lint: ruff
lint: install
	$(BIN)/ruff check .

## bench: the whole system (latency vs the bare broker, burst, BRAIN's max, RSS), then the position monitor; fails if either misses a target (needs RabbitMQ, Redis, PostgreSQL)
bench: install
	$(BIN)/python -m tests.bench.system_bench --json var/bench-system.json; system=$$?; \
	$(BIN)/python -m tests.bench.monitor_bench --json var/bench-monitor.json && exit $$system
