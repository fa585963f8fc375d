# eventapi: `make help` lists the targets. Everything runs in .venv, made on first use.

PYTHON ?= python3
PYTEST_ARGS ?=
BENCH_HTTP_ARGS ?=
BENCH_STALL_ARGS ?=
SCENARIO ?= steady
LOAD_ARGS ?=
SOAK_ARGS ?=
OVERLOAD_ARGS ?=
FLOOD_ARGS ?=
CURVE_ARGS ?=

VENV := .venv
VENV_PY := $(VENV)/bin/python
PIP := $(VENV_PY) -m pip install --disable-pip-version-check --quiet
LINT_PATHS := $(wildcard eventapi tests bench loadtest)

.DEFAULT_GOAL := help
.DELETE_ON_ERROR:
.PHONY: help run test demo lint types check bench bench-http bench-stall load soak overload flood overload-curve clean FORCE
.PHONY: image up demo-up monitoring-up down logs build start stop clean-containers container-check kube-check lock

help: ## list the targets
	@awk -F':.*## ' '/^[a-z-]+:.*## / {printf "  make %-15s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

run: $(VENV)/.installed ## serve on http://127.0.0.1:8000 with the embedded store (no Redis needed)
	$(VENV_PY) -m eventapi serve

test: $(VENV)/.installed-test ## run the test suite against a real redis-server (PYTEST_ARGS=... passed on)
	bash .ci/ensure-redis-server
	$(VENV_PY) -m pytest $(PYTEST_ARGS)

demo: $(VENV)/.installed ## run the provider simulator and the service wired together
	$(VENV_PY) -m eventapi demo

lint: $(VENV)/.installed-lint ## ruff check and ruff format --check
	$(VENV)/bin/ruff check $(LINT_PATHS)
	$(VENV)/bin/ruff format --check $(LINT_PATHS)

types: $(VENV)/.installed-lint ## mypy --strict on the package
	$(VENV)/bin/mypy --strict eventapi

check: lint types test ## lint, types and test

bench: $(VENV)/.installed-bench ## run the benchmarks into bench/results/latest.json
	mkdir -p bench/results
	$(VENV_PY) -m pytest bench --benchmark-only --benchmark-json=bench/results/latest.json

bench-http: $(VENV)/.installed-bench ## wrk against the service and same-run reference apps, 3 rounds, ~4 min (BENCH_HTTP_ARGS=... passed on)
	bash .ci/ensure-redis-server
	@command -v wrk >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then \
	    echo "make: wrk is not on PATH; bench-http needs it: sudo apt-get install -y wrk" >&2; exit 1; fi; \
	  echo "make: wrk not found, installing it with apt-get"; \
	  apt_log=$$(mktemp); \
	  { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q -o DPkg::Lock::Timeout=120 wrk; } \
	    >"$$apt_log" 2>&1 </dev/null || { cat "$$apt_log" >&2; rm -f "$$apt_log"; \
	    echo "make: apt-get install -y wrk failed (output above)" >&2; exit 1; }; \
	  rm -f "$$apt_log"; }
	$(VENV_PY) -m bench.http_bench $(BENCH_HTTP_ARGS)

bench-stall: $(VENV)/.installed-bench ## search latency and worker RSS while a 105 MB feed refreshes (BENCH_STALL_ARGS=... passed on)
	bash .ci/ensure-redis-server
	$(VENV_PY) -m bench.refresh_stall $(BENCH_STALL_ARGS)

load: $(VENV)/.installed-load ## locust against Redis, the simulator and 2 workers (SCENARIO=steady|spike|provider-trouble, LOAD_ARGS=...)
	bash .ci/ensure-redis-server
	$(VENV_PY) -m loadtest.run --scenario $(SCENARIO) $(LOAD_ARGS)

soak: $(VENV)/.installed-test ## 10 min of searches, a refresh a second, random provider faults: errors, RSS, fds (SOAK_ARGS=...)
	bash .ci/ensure-redis-server
	$(VENV_PY) -m loadtest.soak $(SOAK_ARGS)

# wrk drives the overload scenarios (make bench-http installs it the same way; here it must be there).
NEED_WRK = @command -v wrk >/dev/null 2>&1 || { echo "make: $@ needs wrk on PATH: sudo apt-get install -y wrk" >&2; exit 1; }

overload: $(VENV)/.installed-test ## one worker, 3,000 wrk connections: /healthz from a new connection within 1 s, RSS, errors (OVERLOAD_ARGS=...)
	bash .ci/ensure-redis-server
	$(NEED_WRK)
	$(VENV_PY) -m loadtest.overload overload $(OVERLOAD_ARGS)

flood: $(VENV)/.installed-test ## 2,000 idle keep-alive + 500 slowloris connections: searches within 1 s, slow ones cut, no fd leak (FLOOD_ARGS=...)
	bash .ci/ensure-redis-server
	$(VENV_PY) -m loadtest.overload flood $(FLOOD_ARGS)

overload-curve: $(VENV)/.installed-test ## connections vs req/s, p99, errors, /healthz latency, RSS: decision 015's table (CURVE_ARGS=...)
	bash .ci/ensure-redis-server
	$(NEED_WRK)
	$(VENV_PY) -m loadtest.overload curve $(CURVE_ARGS)

clean: ## remove .venv, caches and build output
	rm -rf $(VENV) .tox build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache .benchmarks
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
	@if command -v $(COMPOSE) >/dev/null 2>&1; then $(MAKE) --no-print-directory clean-containers; fi

# Containers (docs/operations.md, "Containers"). PYTHON_IMAGE, REDIS_IMAGE, NGINX_IMAGE, PROMETHEUS_IMAGE
# and GRAFANA_IMAGE replace the official images when set (a mirror, or this sandbox's stand-ins).
PODMAN ?= podman
COMPOSE ?= podman-compose
EVENTAPI_IMAGE ?= localhost/eventapi:latest
# Images that compose builds keep the Containerfile's HEALTHCHECK (podman's default OCI format drops it).
export BUILDAH_FORMAT ?= docker
# The compose project: container, network and volume names start with it (container-check uses
# its own, so it never touches the data of a stack started with make up).
COMPOSE_PROJECT_NAME ?= eventapi
export EVENTAPI_IMAGE COMPOSE_PROJECT_NAME
DEMO_ENV := EVENTAPI_PROVIDER_URL=http://sim:8081/api/events EVENTAPI_REFRESH_INTERVAL=5
# Every optional part, so down, logs and clean reach them whichever were started.
ALL_PROFILES := --profile demo --profile monitoring --profile grafana
# GRAFANA=0: make monitoring-up starts Prometheus only.
GRAFANA ?= 1
# podman-compose down names every container and pod it would remove, present or not
QUIET_ABSENT := { grep -v -e 'no such container' -e 'no such pod' || true; }
PROJECT_CONTAINERS = $(PODMAN) ps -aq --filter label=io.podman.compose.project=$(COMPOSE_PROJECT_NAME)

image: ## build the container image (PYTHON_IMAGE=... changes the base)
	$(PODMAN) build --format docker $(if $(PYTHON_IMAGE),--build-arg PYTHON_IMAGE=$(PYTHON_IMAGE)) \
	  -t $(EVENTAPI_IMAGE) -f Containerfile .

build: image ## same as make image

up: ## start Redis, two API instances and nginx on :8080 (real provider); builds the image if missing
	$(COMPOSE) up -d

demo-up: ## the same stack with the provider simulator, offline; builds the image if missing
	$(DEMO_ENV) $(COMPOSE) --profile demo up -d

start: up ## same as make up

monitoring-up: ## add Prometheus (127.0.0.1:9090) and Grafana (127.0.0.1:3000) to the running stack (docs/monitoring.md)
	$(COMPOSE) --profile monitoring up -d prometheus
ifneq ($(GRAFANA),0)
	@echo "$(COMPOSE) --profile grafana up -d grafana"; $(COMPOSE) --profile grafana up -d grafana || \
	  echo "make: Grafana did not start (GRAFANA_IMAGE=$${GRAFANA_IMAGE:-docker.io/grafana/grafana:latest}); Prometheus runs without it" >&2
endif

down: ## stop and remove the stack's containers (the Redis volume stays)
	@echo "$(COMPOSE) $(ALL_PROFILES) down"; $(COMPOSE) $(ALL_PROFILES) down 2>&1 | $(QUIET_ABSENT)
	@ids=$$($(PROJECT_CONTAINERS)); if [ -n "$$ids" ]; then $(PODMAN) rm -f $$ids >/dev/null; fi

stop: down ## same as make down

logs: ## follow the stack's logs
	$(COMPOSE) $(ALL_PROFILES) logs -f

clean-containers: ## remove the stack's containers, orphans, volumes and image (make clean calls it)
	@echo "$(COMPOSE) $(ALL_PROFILES) down --volumes --remove-orphans"; \
	  $(COMPOSE) $(ALL_PROFILES) down --volumes --remove-orphans 2>&1 | $(QUIET_ABSENT)
	-@ids=$$($(PROJECT_CONTAINERS)); if [ -n "$$ids" ]; then $(PODMAN) rm -f $$ids >/dev/null; fi
	-$(PODMAN) image rm --force --ignore $(EVENTAPI_IMAGE)
	-$(PODMAN) image prune --force --filter label=org.opencontainers.image.title=eventapi

container-check: ## build the image, run the demo stack with Prometheus, check it (docs/operations.md)
	bash deploy/container-check

kube-check: ## podman kube play of deploy/k8s/overlays/podman: ready, searches, kube down leaves nothing
	bash deploy/kube-check

# The image installs exactly these (Containerfile): one resolution for every Python >= 3.11 and
# platform, with hashes. LOCK_ARGS=--upgrade moves the pins to the newest releases.
LOCK_ARGS ?=
lock: $(VENV)/.installed-lock ## regenerate requirements/runtime.txt from pyproject.toml's dependencies
	$(VENV)/bin/uv pip compile pyproject.toml --universal --python-version 3.11 --generate-hashes \
	  --custom-compile-command 'make lock' --quiet --output-file requirements/runtime.txt $(LOCK_ARGS)

# The venv is made when its interpreter is missing: on first use, or when a Python upgrade left
# .venv/bin/python dangling. That also removes the stamps below, which make has already looked
# at by then, hence FORCE. The version check runs first, so an old Python fails in one line.
ifeq ($(shell test -x $(VENV_PY) && echo ok),)
VENV_REBUILT := FORCE
endif

$(VENV_PY):
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null || { \
	  echo "make: eventapi needs Python >= 3.11, and '$(PYTHON)' is $$(command -v $(PYTHON) >/dev/null && $(PYTHON) -V 2>&1 || echo 'not found'): run make PYTHON=python3.11 ..." >&2; \
	  exit 1; }
	rm -rf $(VENV)
	$(PYTHON) -m venv $(VENV) || { rm -rf $(VENV); \
	  echo "make: '$(PYTHON) -m venv' failed; on Debian/Ubuntu: sudo apt-get install -y python3-venv" >&2; exit 1; }

# One stamp per set of extras: each installs again only when pyproject.toml changes.
$(VENV)/.installed: pyproject.toml $(VENV_REBUILT) | $(VENV_PY)
	$(PIP) -e .
	@touch $@

$(VENV)/.installed-%: pyproject.toml $(VENV_REBUILT) | $(VENV_PY)
	$(PIP) -e '.[$*]'
	@touch $@

FORCE:
