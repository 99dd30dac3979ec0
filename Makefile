# gpufleet — the two quickstart commands are `make demo` and `make test`; both set everything up themselves.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
GPUFLEET := $(VENV)/bin/gpufleet
STACK ?= stacks/Pulumi.lab.yaml
JOBS ?= 2

.PHONY: setup engine demo demo-cli test test-unit test-e2e lint bench lab-up lab-down clean

setup:
	@scripts/setup.sh

## The Pulumi CLI, its Python language host and the providers, built from their Go modules into .tools/bin (cached).
engine:
	@scripts/engine.sh

## The main job on the embedded lab through the real Pulumi engine: start the lab, validate and plan, pulumi
## preview + pulumi up (hosts prepared, VMs' GPUs, guests licensed), verify, audit (HTML report in reports/).
demo: setup
	@scripts/demo.sh

## The same job through the gpufleet verbs alone (hosts prepare, vms apply, license apply), no Pulumi engine.
demo-cli: setup
	@scripts/demo_cli.sh $(STACK)

test: setup
	$(PY) -m pytest -n $(JOBS) --dist loadscope -q -p no:cacheprovider

## Only the end-to-end tests through the real Pulumi engine (a lab of their own).
test-e2e: setup
	$(PY) -m pytest -q -m engine -p no:cacheprovider

test-unit: setup
	$(PY) -m pytest -n $(JOBS) -q -m "not lab and not engine" -p no:cacheprovider

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports

## Every benchmark, then a table of each target met / missed (exit 3 if one is missed): scripts/bench.sh.
bench: setup
	@scripts/bench.sh

lab-up: setup
	$(GPUFLEET) lab up

lab-down:
	$(GPUFLEET) lab down

clean: lab-down
	rm -rf reports .pytest_cache
