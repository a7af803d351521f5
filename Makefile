# sagaz-lakehouse: every developer and CI entry point.
#   make up     bring the stack up on the default target, create the tables, prove tiering (doctor)
#   make check  the inner loop: lint, unit tests and render checks in about two minutes (no servers)
#   make test   lint + every test (unit, compose validation, Kubernetes API server, a real single-node Kubernetes
#               cluster, local end-to-end, and the compose target end to end on a private Docker Engine, which it
#               starts and stops)
SHELL := /bin/bash
PYTHON ?= python3
# One cache for the tools we build and for the CLI: SAGAZ_LAKEHOUSE_LOCAL__CACHE_DIR when set, else ~/.cache.
CACHE ?= $(or $(SAGAZ_LAKEHOUSE_LOCAL__CACHE_DIR),$(HOME)/.cache/sagaz-lakehouse)
export SAGAZ_LAKEHOUSE_LOCAL__CACHE_DIR := $(CACHE)
PIP := $(PYTHON) -m pip --disable-pip-version-check -q

.PHONY: install install-package up down test check test-unit promtool test-kube test-kubelet test-e2e test-containers images lint manifests bench-visibility \
	tools chromium postgresql bench-local bench-compose bench-sagaz bench-kubernetes bench-soak chaos clean

install: ## install the package with its test dependencies
	$(PIP) install -e '.[test]'

# uv (from PyPI) installs the package into an empty environment in about 11 s where pip takes 49 s (2 cores): most of
# a newcomer's first `make up` before anything starts. Its cache is ~/.cache/uv.
UV_VERSION := 0.13.8
# The extras the README's walkthrough uses after `make up` (simulate, report, dashboards); not Spark's (pyspark is a
# 400 MB source archive: `make install` has it) nor the test tools.
UP_EXTRAS := sagaz,report,grafana
install-package: ## the package and the walkthrough's extras, with uv: what `make up` needs, in seconds
	$(PIP) install uv==$(UV_VERSION)
	$(PYTHON) -m uv pip install --quiet --python $(PYTHON) -e '.[$(UP_EXTRAS)]'

up: install-package ## local stack up, tables created, tiering verified
	sagaz-lakehouse up
	sagaz-lakehouse create-tables
	sagaz-lakehouse doctor

down:
	sagaz-lakehouse down

tools: ## test binaries built from registries (docker-compose, kube-apiserver, ...), cached under $(CACHE)/bin
	bash scripts/install-tools.sh "$(CACHE)/bin"

chromium: ## headless Chromium for the report test (Debian's package; the e2e test runs this itself when needed)
	bash scripts/chromium.sh

postgresql: ## PostgreSQL for the prod catalog on the local target (Debian's package; the e2e test runs this itself)
	bash scripts/postgresql.sh $$($(PYTHON) -c 'from sagaz_lakehouse import versions; print(versions.POSTGRES_MAJOR)')

lint: ## ruff and mypy
	ruff check sagaz_lakehouse tests scripts bench
	MYPY_CACHE_DIR="$(CACHE)/mypy" mypy  # the cache outside the clone: a clean clone checks in 1 s, not 11

manifests: ## re-render manifests/ from the templates (defaults, dev profile)
	sagaz-lakehouse render --target compose --placeholders --out manifests/compose
	rm -rf manifests/compose/.env manifests/compose/secrets  # placeholders only, but where a user's real credentials go
	sagaz-lakehouse render --target kubernetes --placeholders --out manifests/kubernetes
	sagaz-lakehouse dashboards --out manifests/grafana

promtool: ## Prometheus and promtool from the Go module proxy (the alert-rule tests), cached under $(CACHE)/bin
	bash scripts/tools/prometheus.sh "$(CACHE)/bin"

test-unit: install lint promtool
	$(PYTHON) -m pytest -m unit

check: install lint tools ## the inner loop (about 2 minutes warm): lint, unit tests, render checks, scanners; no servers
	$(PYTHON) -m pytest -q -n 2 -m "unit or compose or scan"

test-kube: install lint tools ## the Kubernetes driver against a real API server (kwok for the kubelet)
	$(PYTHON) -m pytest -m kube

test-kubelet: install lint tools ## the Kubernetes target end to end on a real single-node cluster (root)
	$(PYTHON) -m pytest -m kubelet

test-e2e: install lint tools ## the local stack end to end (real servers)
	$(PYTHON) -m pytest -m e2e

images: install tools ## stand-in images (images/) on the private Docker Engine (scripts/docker-engine.sh), left running
	bash scripts/docker-engine.sh start
	$(PYTHON) scripts/build-images.py

# The engine is started (and images built) only for the run, and stopped after it unless it was running before.
WITH_ENGINE := PYTHON=$(PYTHON) bash scripts/with-docker-engine.sh

test-containers: install lint tools ## the stand-in images and the compose target end to end on a real Docker Engine
	$(WITH_ENGINE) $(PYTHON) -m pytest -m containers

# Two xdist workers, one per lane of tests/conftest.py (the local stacks; the Docker Engine and Kubernetes), then the
# timing-sensitive `serial` tests alone. Both phases always run; the exit code is the first failure's. The slowest
# tests and fixtures are listed at the end: where a faster test loop starts (issue 29).
test: install lint tools ## lint + every test, the real-engine ones included
	@phase1=0; $(WITH_ENGINE) $(PYTHON) -m pytest -n 2 --dist loadgroup -m "not serial" -v --durations=40 || phase1=$$?; \
	  phase2=0; $(PYTHON) -m pytest -m serial --durations=5 || phase2=$$?; \
	  exit $$(( phase1 ? phase1 : phase2 ))

bench-local: install ## a newcomer's cold `make up` (new clone, venv and caches), warm `up`, ingest, listener, visibility
	$(PYTHON) bench/local.py --out bench/results/local.md

# Ports: CHAOS_PORT_BASE + the usual ones (22181, 29123, ...), so it runs beside a default stack. Restarts are the
# watchdog's that `up` starts; the whole-stack kill is followed by `up`. CHAOS_ARGS: e.g. --config rf2 --budget 600.
CHAOS_PORT_BASE ?= 20000
chaos: install ## kill -9 / SIGTERM each component during writes, then three faults through the listener (< 55 min)
	$(PYTHON) bench/chaos.py --port-base $(CHAOS_PORT_BASE) --out bench/results/chaos.md $(CHAOS_ARGS)

bench-compose: install tools ## the compose target against the local target, measured in the same run
	$(WITH_ENGINE) $(PYTHON) bench/compose.py --out bench/results/compose.md

bench-kubernetes: install tools ## kubernetes on the real single-node cluster, the local target as baseline
	$(PYTHON) bench/kubernetes_bench.py --out bench/results/kubernetes.md

clean:
	rm -rf .sagaz-lakehouse .pytest_cache

bench-sagaz: install ## FlussAnalyticsListener: hook cost, saga latency, events/s (needs a running stack with tables)
	$(PIP) install -e '.[sagaz]'
	$(PYTHON) bench/sagaz.py --out bench/results/sagaz.md

bench-visibility: install ## how soon a saga event is readable after its hook returned (Fluss lookup, log scan, Flink live query), on two fresh stacks: Fluss's follower fetch wait against ours
	PYTHON=$(PYTHON) bash bench/visibility-ab.sh bench/results/visibility.md

bench-soak: install ## the lake over thousands of tiering commits, maintained and not, in one run (about an hour)
	$(PYTHON) bench/soak.py --out bench/results/soak.md $(SOAK_ARGS)
