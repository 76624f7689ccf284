# Every target installs what it needs on a fresh machine: Debian packages (Java, Maven) when
# missing, the venv in .venv, and the Kafka jars (cached outside git by dispatcher.local_kafka).
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
BENCH ?= quick

.PHONY: help setup system-deps prometheus-deps kafka-jars kafka-up kafka-down run test test-unit lint bench bench-deps clean deploy-check fuzz chaos

help:
	@echo "make setup       venv in .venv with the project and its dev tools"
	@echo "make run         the demo: local broker, receiver, sample events, dispatcher (Ctrl-C stops; ARGS=--help)"
	@echo "make test        the whole suite against a real local Kafka broker"
	@echo "make lint        ruff and mypy"
	@echo "make bench       load tests with baselines (BENCH=quick|full, or scale|backlog alone at full size)"
	@echo "make kafka-up / kafka-down   a local broker for your own use"

system-deps:
	@need=""; \
	command -v java >/dev/null || need="$$need openjdk-17-jre-headless"; \
	command -v mvn >/dev/null || need="$$need maven"; \
	if [ -n "$$need" ]; then \
	  if command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
	    echo "installing$$need with apt-get"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$need >/dev/null; \
	  else \
	    echo "missing:$$need. Install Java 17+ and Maven, or set KAFKA_BOOTSTRAP_SERVERS." >&2; exit 1; \
	  fi; \
	fi

# tests/test_observability.py runs every dashboard query against Debian's Prometheus.
prometheus-deps:
	@if ! command -v prometheus >/dev/null; then \
	  if command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
	    echo "installing prometheus with apt-get"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null; \
	  else \
	    echo "missing: prometheus. Install Debian's prometheus package (or Prometheus 2.x on PATH); tests/test_observability.py fails without it." >&2; exit 1; \
	  fi; \
	fi

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "$(PYTHON) not found: install Python 3.11+ or run make PYTHON=python3.12" >&2; exit 1; }
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	@touch $(STAMP)

setup: $(STAMP)

kafka-jars: setup system-deps
	@$(PY) -c "from dispatcher.local_kafka import resolve_jars; resolve_jars()"

kafka-up: kafka-jars
	@$(PY) -m dispatcher.local_kafka up

kafka-down:
	@if [ -x $(PY) ]; then $(PY) -m dispatcher.local_kafka down; fi

test: kafka-jars bench-deps prometheus-deps  # the bench smoke test drives nginx and wrk
	$(PY) -m pytest -q -n 3

test-unit: setup
	$(PY) -m pytest -q tests/unit

chaos: kafka-jars  # the chaos test at 10,000 events (make test runs 2,000)
	CHAOS_EVENTS=10000 $(PY) -m pytest -q -s tests/test_chaos.py

fuzz: setup  # the fuzz tests with the long hypothesis profile (20,000 examples per target)
	DISPATCHER_FUZZ_PROFILE=long $(PY) -m pytest -q --timeout=3600 tests/fuzz

lint: setup
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy

run: kafka-jars
	$(PY) -m dispatcher.demo $(ARGS)

bench-deps:
	@bash benchmarks/install_deps.sh

# BENCH=scale: that workload alone at its full size; BENCH=backlog: the 1M-event backlog
# with fast-sink before it (its drain rate is compared with fast-sink's of the same run).
BENCH_ARGS = --profile $(BENCH)
BENCH_ARGS_scale = --profile full --only scale
BENCH_ARGS_backlog = --profile full --only fast-sink backlog
bench: kafka-jars bench-deps
	$(PY) -m benchmarks.run $(or $(BENCH_ARGS_$(BENCH)),$(BENCH_ARGS))

# The deployment files, checked without a Docker engine or a cluster (docs/operations.md).
deploy-check: setup
	@for version in 1.30.0 1.37.0; do \
	  out=$$($(VENV)/bin/kubernetes-validate --strict --quiet -k $$version \
	    $$(ls deploy/kubernetes/*.yaml | grep -v kustomization.yaml)); rc=$$?; \
	  [ -z "$$out" ] || echo "$$out"; \
	  if [ $$rc != 0 ] || grep -q '^WARN' <<<"$$out"; then exit 1; fi; \
	  echo "kubernetes-validate --strict $$version: deploy/kubernetes passed"; \
	done
	$(VENV)/bin/hadolint docker/Dockerfile
	@if docker compose version >/dev/null 2>&1; then \
	  docker compose -f docker/compose.yaml --profile stack config --quiet && echo "docker compose config: ok"; \
	elif command -v docker-compose >/dev/null; then \
	  docker-compose -f docker/compose.yaml --profile stack config -q && echo "docker-compose config: ok"; \
	else \
	  echo "docker compose: not installed here; tests/test_deploy_manifests.py checks the file's structure"; \
	fi
	$(PY) -m pytest -q tests/test_deploy_docs.py tests/test_deploy_dashboard.py \
	  tests/test_deploy_manifests.py

clean: kafka-down
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis *.egg-info
