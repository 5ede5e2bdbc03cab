"""Assemble the GPU profile's Triton model repository, building the engines it lacks (GPU only).

    python -m reviewlens.build_engines.gpu.repository [--output build/model_repository_gpu]
        [--checkpoint /models/generator] [--trtllm-source /opt/tensorrt_llm] [--engines build/engines]
        [--precision int8|fp16]

The image's entrypoint runs this before tritonserver. The repository gets:
- the configs model_configs.py derives from the CPU repository's (TensorRT plans in place of the
  ONNX Runtime steps, `generator` as an ensemble over TensorRT-LLM, the rest as on the CPU);
- the model.py files of the CPU repository's Python models that the GPU keeps (the same code) and
  generator_options' own;
- the GPU rows of the artifact table (artifacts.py): the CPU build's tokenizer.json, serving.json
  and labels.json, and the classifier's and the embedder's TensorRT plans (tensorrt_engines.py;
  built for this GPU if missing);
- tensorrtllm_backend's preprocessing, tensorrt_llm and postprocessing, from the templates of the
  installed TensorRT-LLM release, filled with model_configs.trtllm_template_values, and the
  generator's engine (trtllm_engine.py; built if missing).
Files are linked where the file system allows (plans and engines are large), else copied.
"""
import argparse
import logging
import os
import re
import shutil
import sys
from pathlib import Path

from reviewlens.ensemble import interface

from . import model_configs
from .preflight import require_gpu, require_module
from .tensorrt_engines import ENGINES_DIR, PRECISIONS, SERVED_PRECISION, build_engine
from .trtllm_engine import DEFAULT_CHECKPOINT, GENERATOR_DTYPES, TRTLLM_SOURCE, build_generator_engine
from reviewlens.build_engines import artifacts
from reviewlens.build_engines.cache import link_file
from reviewlens.local.paths import MODEL_REPOSITORY, MODELS_DIR

log = logging.getLogger(__name__)

TEMPLATES = "triton_backend/all_models/inflight_batcher_llm"


def fill_template(text: str, values: dict[str, str]) -> str:
    """Replace tensorrtllm_backend's ${name} placeholders that `values` names; others keep the backend's default."""
    return re.sub(r"\$\{(\w+)\}", lambda match: values.get(match[1], match[0]), text)


def assemble(output: Path, checkpoint: Path, source: Path, engines: Path, precision: str,
             generator_dtype: str = "auto", models_dir: Path = MODELS_DIR) -> None:
    """Write the whole GPU repository under `output`, building missing engines first."""
    gpu = require_gpu("the GPU model repository")
    tensorrt_version = require_module("tensorrt", "the GPU model repository", "use the Dockerfile.triton image").__version__
    generator_engine = build_generator_engine(checkpoint, source, engines, generator_dtype)

    for name, config in model_configs.write(output).items():
        (output / name / "1").mkdir(exist_ok=True)
        cpu_code = MODEL_REPOSITORY / name / "1" / "model.py"
        if config.backend == "python" and cpu_code.is_file():
            shutil.copyfile(cpu_code, output / name / "1" / "model.py")
    (output / interface.GENERATOR_OPTIONS.name / "1" / "model.py").write_text(
        "from reviewlens.ensemble.generator_options import TritonPythonModel  # noqa: F401\n")
    for artifact in artifacts.served("gpu"):
        if artifact.file == artifacts.PLAN:
            built = build_engine(artifact.exported, precision, gpu, tensorrt_version, models_dir, engines) / artifacts.PLAN
        else:
            built = artifact.source_path(models_dir=models_dir)
        link_file(built, output / artifact.served_path)

    for name, values in model_configs.trtllm_template_values(generator_engine, checkpoint).items():
        template = source / TEMPLATES / name
        if not (template / "config.pbtxt").is_file():
            sys.exit(f"error: {template}/config.pbtxt is missing: {source} must be the TensorRT-LLM source of the "
                     "installed release (--trtllm-source or TRTLLM_SOURCE)")
        (output / name / "1").mkdir(parents=True, exist_ok=True)
        (output / name / "config.pbtxt").write_text(fill_template((template / "config.pbtxt").read_text(), values))
        if (template / "1" / "model.py").is_file() and name != "tensorrt_llm":  # tensorrt_llm runs the C++ backend
            shutil.copyfile(template / "1" / "model.py", output / name / "1" / "model.py")
    log.info("GPU model repository ready: %s (%s plans on %s)", output, precision, gpu.name)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m reviewlens.build_engines.gpu.repository", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", type=Path, default=model_configs.GPU_REPOSITORY)
    parser.add_argument("--checkpoint", type=Path, default=DEFAULT_CHECKPOINT,
                        help="the generator's Hugging Face checkpoint, also its tokenizer (default: "
                             "$GENERATOR_CHECKPOINT or /models/generator)")
    parser.add_argument("--trtllm-source", type=Path, default=TRTLLM_SOURCE)
    parser.add_argument("--engines", type=Path, default=ENGINES_DIR)
    parser.add_argument("--models-dir", type=Path, default=MODELS_DIR)
    parser.add_argument("--precision", choices=PRECISIONS, default=SERVED_PRECISION,
                        help="TensorRT plans served for the classifier and the embedder (default: $GPU_PRECISION or int8)")
    parser.add_argument("--generator-dtype", choices=GENERATOR_DTYPES, default=os.environ.get("GENERATOR_DTYPE", "auto"),
                        help="the TensorRT-LLM engine's dtype (default: $GENERATOR_DTYPE or auto, the checkpoint's)")
    args = parser.parse_args(argv)
    if SERVED_PRECISION not in PRECISIONS:
        parser.error(f"GPU_PRECISION must be one of {', '.join(PRECISIONS)}, not {SERVED_PRECISION!r}")
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s] %(message)s", datefmt="%H:%M:%S")
    assemble(args.output, args.checkpoint, args.trtllm_source, args.engines, args.precision, args.generator_dtype,
             args.models_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
