"""FP16 ONNX of the classifier and the embedder, the input of their TensorRT FP16 engines (runs on the CPU).

    python -m reviewlens.build_engines.gpu.fp16 [--model classifier embedder]

TensorRT 11 takes the precision from the graph (strongly typed builds, no FP16 builder flag), so
FP16 is written into the ONNX: ONNX Runtime's float16 converter turns weights and activations into
FP16 and keeps the graph's input (int64 token ids) and output (FP32) types, so one Triton config
serves the FP16 and the INT8 plan. Reads build/models/<model>/model_fp32.onnx (from `make build`)
and writes model_fp16.onnx beside it; cached like every build step.
"""
import argparse
import logging
import sys
from pathlib import Path

import onnx
import onnxruntime as ort
from onnxruntime.transformers.float16 import convert_float_to_float16

from .tensorrt_engines import MODELS, source_onnx
from reviewlens.build_engines import cache
from reviewlens.local.paths import MODELS_DIR

log = logging.getLogger(__name__)


def convert(fp32_path: Path, fp16_path: Path) -> None:
    """Write an FP16 copy of an FP32 ONNX graph with the same input and output types."""
    model = convert_float_to_float16(onnx.load(fp32_path), keep_io_types=True)
    onnx.save(model, fp16_path)
    onnx.checker.check_model(str(fp16_path))


def build_fp16(model: str, models_dir: Path = MODELS_DIR) -> Path:
    """Return build/models/<model>/model_fp16.onnx, converting it unless cached."""
    fp32_path = models_dir / model / "model_fp32.onnx"
    if not fp32_path.is_file():
        sys.exit(f"error: {fp32_path} is missing: run `make build` first")
    fp16_path = source_onnx(model, "fp16", models_dir)
    step_dir = cache.run_step(
        f"fp16-{model}", lambda out: convert(fp32_path, out / fp16_path.name), inputs=[fp32_path],
        sources=[sys.modules[__name__]], params={"onnx": onnx.__version__, "onnxruntime": ort.__version__})
    cache.expose(step_dir, models_dir / model)
    return fp16_path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m reviewlens.build_engines.gpu.fp16", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", nargs="+", choices=MODELS, default=list(MODELS))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="[%(asctime)s] %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("reviewlens").setLevel(logging.INFO)
    for model in args.model:
        print(build_fp16(model))
    return 0


if __name__ == "__main__":
    sys.exit(main())
