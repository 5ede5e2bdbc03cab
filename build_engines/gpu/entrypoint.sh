#!/usr/bin/env bash
# Entrypoint of the GPU image (Dockerfile.triton): build the engines this GPU lacks, assemble the
# model repository, then replace this shell with tritonserver (so it receives the container's signals).
# Engines are specific to the GPU model and the TensorRT / TensorRT-LLM versions: they are cached on
# the $REVIEWLENS_ENGINES volume, so only the first start on a kind of GPU pays for the builds
# (minutes for the two TensorRT plans, tens of minutes for a 7B TensorRT-LLM engine).
# Arguments are passed on to tritonserver.
set -euo pipefail

repository="${GPU_MODEL_REPOSITORY:-/tmp/model_repository}"
python3 -m reviewlens.build_engines.gpu.repository --output "$repository"
exec tritonserver --model-repository="$repository" \
  --cache-config=local,size="${RESPONSE_CACHE_BYTES:-$(python3 -c 'from reviewlens.ensemble.interface import RESPONSE_CACHE_BYTES; print(RESPONSE_CACHE_BYTES)')}" "$@"
