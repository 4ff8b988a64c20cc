# Billstream: `make run` starts the platform locally and shows it working; `make test` tests it.
SHELL := /bin/bash
PY := .venv/bin/python
LOCAL := deploy/local

.PHONY: setup run up down infra lint test test-unit fuzz mutants demo logs status clean bench chaos

setup:            ## install what is missing (OS packages, .venv, Kafka jars)
	@$(LOCAL)/setup.sh

up:               ## start PostgreSQL, Kafka, the four services and the :3000 gateway
	@$(LOCAL)/up.sh

infra:            ## start only PostgreSQL and Kafka
	@$(LOCAL)/up.sh infra

run: up           ## start everything, run the demo, then follow the logs (Ctrl-C leaves it running)
	@$(PY) -m deploy.local.demo
	@echo "Following the service logs; Ctrl-C stops following (the stack keeps running; 'make down' stops it)."
	@tail -n 0 -F .local/logs/{invoicing,payments,dunning,webhooks}.log || true

demo:             ## run the demo against a running stack
	@$(PY) -m deploy.local.demo

down:             ## stop everything
	@$(LOCAL)/down.sh

lint: setup       ## ruff check (lint), ruff format --check (layout), then mypy (types); configured in pyproject.toml
	@$(PY) -m ruff check .
	@$(PY) -m ruff format --check .
	@$(PY) -m mypy

test: up          ## the whole suite against real PostgreSQL, Kafka and the running stack
	@$(PY) -m pytest -q $(PYTEST_ARGS)

test-unit: setup  ## only the tests that need no server
	@$(PY) -m pytest -q -m "not integration and not e2e" $(PYTEST_ARGS)

fuzz: up          ## schemathesis over every service's OpenAPI as a fresh tenant: no 5xx (FUZZ_EXAMPLES=10)
	@$(LOCAL)/fuzz.sh

mutants: up       ## hand-made mutants of what the integration tests guard (tests/mutants.py): each must fail its test
	@$(PY) -m tests.mutants

status:
	@$(LOCAL)/services.sh status; $(LOCAL)/kafka.sh status || true

logs:
	@tail -n 100 -F .local/logs/*.log

clean: down       ## stop and delete all local data
	@rm -rf .local

# A stack the bench starts measures the code, not the rate limiter.
bench: export BILLSTREAM_RATE_LIMITS = false
bench: up         ## start everything, then the benchmarks (BENCH_ARGS=--quick for a smoke run)
	@$(PY) -m bench $(BENCH_ARGS)

chaos: setup      ## faults under traffic on an isolated stack (.local/chaos, its own ports); CHAOS_SECONDS=120 CHAOS_SEED=1
	@$(PY) -m tests.chaos
