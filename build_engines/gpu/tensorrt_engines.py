"""TensorRT engines for the classifier and the embedder (GPU only), from the ONNX the CPU build made.

    python -m reviewlens.build_engines.gpu.tensorrt_engines [--model classifier embedder] [--precision fp16 int8]
        [--models-dir build/models] [--engines build/engines]

TensorRT 11 has no FP16/INT8 builder flags or calibrators any more (10.x deprecated them): the
precision is written in the ONNX and the network is built strongly typed, so TensorRT runs each
layer in the type the graph gives it.
  fp16  model_fp16.onnx, the FP32 export converted to FP16 on the CPU (fp16.py: weights and
        activations FP16; int64 inputs and the FP32 output kept, so the Triton config is the same).
  int8  model_qdq.onnx as the CPU build calibrated it: INT8 Q/DQ on the MatMuls/Gemms that keep the
        serving gate, the most sensitive ones left FP32 (quantize.py; measured in build/reports/accuracy.json).

One optimisation profile per engine covers every shape the GPU tokenizer emits: rows 1..MAX_BATCH_SIZE
(interface.py, the configs' max_batch_size), tokens 1..max_length (serving.json). Engines are specific to the
GPU model and the TensorRT version, so each lives in
    ENGINES/<gpu>-sm<cc>/tensorrt-<version>/<model>-<precision>-<ONNX sha256[:16]>/model.plan
with engine.json beside it (TensorRT version, GPU name, compute capability, precision, source ONNX
and its sha256, profile). An engine already there is reused; a new ONNX or GPU gets a new one.
"""
import argparse
import hashlib
import json
import logging
import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from .preflight import Gpu, require_gpu, require_module
from reviewlens.build_engines import artifacts
from reviewlens.ensemble.interface import MAX_BATCH_SIZE, TOKENS
from reviewlens.local.paths import BUILD_DIR, MODELS_DIR

log = logging.getLogger(__name__)

MODELS = tuple(a.exported for a in artifacts.served("gpu") if a.file == artifacts.PLAN)  # classifier, embedder
# Precision -> the {variant} of the ONNX its engine is built from (artifacts.py).
ENGINE_SOURCES = {"fp16": "fp16", "int8": "qdq"}
PRECISIONS = tuple(ENGINE_SOURCES)
# What the GPU profile serves: the Q/DQ INT8 ONNX passes the serving gates on the CPU (build/reports/
# accuracy.json; tests/test_gpu_profile.py fails if it stops doing so). Override with GPU_PRECISION.
SERVED_PRECISION = os.environ.get("GPU_PRECISION", "int8")
ENGINES_DIR = Path(os.environ.get("REVIEWLENS_ENGINES", BUILD_DIR / "engines"))
OPT_ROWS, OPT_TOKENS = 32, 128  # the shape TensorRT tunes for: a client batch of 32 short reviews


@dataclass(frozen=True)
class Profile:
    """An optimisation profile for both token inputs: (rows, tokens) at min, opt and max."""
    min: tuple[int, int]
    opt: tuple[int, int]
    max: tuple[int, int]

    def covers(self, rows: int, tokens: int) -> bool:
        return self.min[0] <= rows <= self.max[0] and self.min[1] <= tokens <= self.max[1]


def engine_profile(max_length: int) -> Profile:
    """The profile of an engine whose tokenizer truncates at max_length tokens."""
    return Profile(min=(1, 1), opt=(min(OPT_ROWS, MAX_BATCH_SIZE), min(OPT_TOKENS, max_length)),
                   max=(MAX_BATCH_SIZE, max_length))


def source_onnx(model: str, precision: str, models_dir: Path = MODELS_DIR) -> Path:
    """The ONNX an engine is built from: model_fp16.onnx or model_qdq.onnx, both made on the CPU."""
    return artifacts.plan(model).source_path(ENGINE_SOURCES[precision], models_dir)


def engine_dir(engines: Path, gpu: Gpu, tensorrt_version: str, model: str, precision: str, onnx_sha256: str) -> Path:
    return engines / gpu.slug / f"tensorrt-{tensorrt_version}" / f"{model}-{precision}-{onnx_sha256[:16]}"


def build_plan(onnx_path: Path, plan_path: Path, profile: Profile) -> None:
    """Parse the ONNX into a strongly typed network and serialize the engine for `profile`."""
    import tensorrt as trt

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    # TensorRT 11 is always strongly typed (the flag is deprecated there); 10.x must be asked.
    strongly_typed = 0 if int(trt.__version__.split(".")[0]) >= 11 else \
        1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    network = builder.create_network(strongly_typed)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        sys.exit(f"error: TensorRT cannot parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    shapes = builder.create_optimization_profile()
    for tensor in TOKENS:
        shapes.set_shape(tensor.name, profile.min, profile.opt, profile.max)
    config.add_optimization_profile(shapes)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        sys.exit(f"error: TensorRT could not build an engine from {onnx_path} (see its log above)")
    staging = plan_path.with_name(f".{plan_path.name}.tmp")
    staging.write_bytes(serialized)
    os.replace(staging, plan_path)


def build_engine(model: str, precision: str, gpu: Gpu, tensorrt_version: str,
                 models_dir: Path = MODELS_DIR, engines: Path = ENGINES_DIR) -> Path:
    """Return the directory holding the plan and engine.json for one model and precision, building if needed."""
    onnx_path = source_onnx(model, precision, models_dir)
    serving_path = models_dir / model / "serving.json"
    for path in (onnx_path, serving_path):
        if not path.is_file():
            sys.exit(f"error: {path} is missing: run `make build onnx-fp16` (the CPU build makes the ONNX)")
    with open(onnx_path, "rb") as f:
        onnx_sha256 = hashlib.file_digest(f, "sha256").hexdigest()
    target = engine_dir(engines, gpu, tensorrt_version, model, precision, onnx_sha256)
    if (target / "engine.json").is_file():
        log.info("%s %s: cached (%s)", model, precision, target)
        return target

    target.mkdir(parents=True, exist_ok=True)
    profile = engine_profile(int(json.loads(serving_path.read_text())["max_length"]))
    started = time.monotonic()
    log.info("%s %s: building from %s on %s (TensorRT %s)", model, precision, onnx_path.name, gpu.name, tensorrt_version)
    build_plan(onnx_path, target / artifacts.PLAN, profile)
    record = {"model": model, "precision": precision, "tensorrt": tensorrt_version, "gpu": gpu.name,
              "compute_capability": gpu.compute_capability, "onnx": str(onnx_path),
              "onnx_sha256": onnx_sha256, "strongly_typed": True,
              "profile": {tensor.name: asdict(profile) for tensor in TOKENS},
              "build_seconds": round(time.monotonic() - started)}
    (target / "engine.json").write_text(json.dumps(record, indent=1))  # written last: marks the engine complete
    log.info("%s %s: built in %.0f s -> %s", model, precision, record["build_seconds"], target)
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m reviewlens.build_engines.gpu.tensorrt_engines", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", nargs="+", choices=MODELS, default=list(MODELS))
    parser.add_argument("--precision", nargs="+", choices=PRECISIONS, default=[SERVED_PRECISION])
    parser.add_argument("--models-dir", type=Path, default=MODELS_DIR, help="the CPU build's exported models")
    parser.add_argument("--engines", type=Path, default=ENGINES_DIR, help="engine cache (a volume in the image)")
    args = parser.parse_args(argv)
    if SERVED_PRECISION not in PRECISIONS:
        parser.error(f"GPU_PRECISION must be one of {', '.join(PRECISIONS)}, not {SERVED_PRECISION!r}")

    tool = "building TensorRT engines"
    gpu = require_gpu(tool)
    tensorrt_version = require_module("tensorrt", tool, "use the Dockerfile.triton image").__version__
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s] %(message)s", datefmt="%H:%M:%S")
    for model in args.model:
        for precision in args.precision:
            print(build_engine(model, precision, gpu, tensorrt_version, args.models_dir, args.engines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
