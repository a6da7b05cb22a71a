# Fleetops: `make run` (platform + demo on embedded services) and `make test` (the whole suite).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test lint format services services-down migrate demo venv clean bench assets

$(STAMP): requirements/base.txt requirements/dev.txt requirements/constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements/dev.txt -c requirements/constraints.txt
	touch $(STAMP)

venv: $(STAMP)

services: $(STAMP)
	$(PY) deploy/embedded.py up

services-down:
	test ! -x $(PY) || $(PY) deploy/embedded.py down

migrate: services
	$(PY) manage.py migrate --noinput

demo: migrate
	$(PY) manage.py load_demo

run: $(STAMP)
	bash deploy/run.sh

test: $(STAMP)
	bash deploy/test.sh $(ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy apps config

format: $(STAMP)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

clean: services-down
	rm -rf var

assets:
	bash deploy/build-assets.sh

bench: services
	$(PY) bench/scoping.py
	$(PY) bench/import_copy.py --scale $(or $(SCALE),quick)
	$(PY) bench/registry.py --scale $(or $(SCALE),quick)
	$(PY) bench/connectivity.py --scale $(or $(SCALE),quick)
	$(PY) bench/ingest.py --scale $(or $(SCALE),quick)
	$(PY) bench/live_latency.py --scale $(or $(SCALE),quick)
	$(PY) bench/telemetry_writer.py --scale $(or $(SCALE),quick)
	$(PY) bench/configuration.py --scale $(or $(SCALE),quick)
	$(PY) bench/commands.py --scale $(or $(SCALE),quick)
