"""The generator's TensorRT-LLM engine (GPU only): Hugging Face checkpoint -> TensorRT-LLM checkpoint -> engine.

    python -m reviewlens.build_engines.gpu.trtllm_engine --checkpoint /models/generator \
        [--trtllm-source /opt/tensorrt_llm] [--engines build/engines] [--dtype auto]

The checkpoint is a local Hugging Face directory (the seeds: Qwen/Qwen2.5-7B-Instruct, a ChatML
model like the CPU generator's). This is TensorRT-LLM's TensorRT engine path, served by Triton's
`tensorrtllm` backend: it was removed upstream after 1.3.0rc20, so it needs a release that still
has it (tensorrt-llm 1.2.1, or the TensorRT-LLM inside the pinned NGC image), and the engine must
be built by the same TensorRT-LLM that serves it, which is why the image's entrypoint builds it.
  1. examples/models/core/qwen/convert_checkpoint.py (from that release's source) -> checkpoint/
  2. trtllm-build: paged KV cache with paged context attention (needed to reuse the KV cache of the
     shared prompt prefix, enable_kv_cache_reuse in the tensorrt_llm config), packed inputs (in-flight
     batching), limits below
  3. examples/generate_xgrammar_tokenizer_info.py -> xgrammar_tokenizer_info.json, which the C++
     backend needs for guided decoding (JSON, JSON schema, EBNF grammar, regex)
The engine lands in ENGINES/<gpu>-sm<cc>/tensorrt_llm-<version>/generator-<dtype>-<checkpoint key>/
with engine.json beside it; an engine already there is reused.
"""
import argparse
import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from .preflight import require_gpu, require_package
from .tensorrt_engines import ENGINES_DIR

log = logging.getLogger(__name__)

TRTLLM_SOURCE = Path(os.environ.get("TRTLLM_SOURCE", "/opt/tensorrt_llm"))
DEFAULT_CHECKPOINT = Path(os.environ.get("GENERATOR_CHECKPOINT", "/models/generator"))
CONVERT_SCRIPT = "examples/models/core/qwen/convert_checkpoint.py"
XGRAMMAR_SCRIPT = "examples/generate_xgrammar_tokenizer_info.py"
XGRAMMAR_TOKENIZER_INFO = "xgrammar_tokenizer_info.json"  # what XGRAMMAR_SCRIPT writes beside the engine
GENERATOR_DTYPES = ("auto", "float16", "bfloat16")
MAX_BATCH_SIZE = 64   # sequences in flight (in-flight batching): the GPU generator's max_batch_size
MAX_SEQ_LEN = 8192    # prompt + output tokens per sequence, as the CPU generator's context
MAX_INPUT_LEN = 6144  # prompt tokens; the client's token budget keeps prompts well below
MAX_NUM_TOKENS = 8192  # tokens per engine step across the batch (context is chunked beyond)


def checkpoint_key(checkpoint: Path) -> str:
    """A key of a Hugging Face checkpoint: its config.json and its weight files' names and sizes
    (hashing 15 GB of weights on every start would take minutes)."""
    digest = hashlib.sha256((checkpoint / "config.json").read_bytes())
    for weights in sorted(checkpoint.glob("*.safetensors")) + sorted(checkpoint.glob("*.bin")):
        digest.update(f"{weights.name}\0{weights.stat().st_size}\n".encode())
    return digest.hexdigest()[:16]


def trtllm_build_command(checkpoint_dir: Path, output_dir: Path) -> list[str]:
    return ["trtllm-build", "--checkpoint_dir", str(checkpoint_dir), "--output_dir", str(output_dir),
            "--gemm_plugin", "auto", "--kv_cache_type", "paged", "--use_paged_context_fmha", "enable",
            "--remove_input_padding", "enable", "--context_fmha", "enable",
            "--max_batch_size", str(MAX_BATCH_SIZE), "--max_input_len", str(MAX_INPUT_LEN),
            "--max_seq_len", str(MAX_SEQ_LEN), "--max_num_tokens", str(MAX_NUM_TOKENS)]


def run(command: list[str], what: str) -> None:
    log.info("%s: %s", what, " ".join(command))
    if subprocess.run(command).returncode != 0:
        sys.exit(f"error: {what} failed (command: {' '.join(command)}); its output is above")


def build_generator_engine(checkpoint: Path, source: Path, engines: Path, dtype: str) -> Path:
    """Return the engine directory for `checkpoint` on this GPU, building it if needed."""
    tool = "building the TensorRT-LLM engine"
    gpu = require_gpu(tool)
    version = require_package("tensorrt_llm", tool, "use the Dockerfile.triton image (NGC trtllm) or "
                              "pip install tensorrt-llm==1.2.1 on a GPU host")
    if shutil.which("trtllm-build") is None:
        sys.exit(f"error: tensorrt_llm {version} has no trtllm-build: the TensorRT engine path was removed after "
                 "1.3.0rc20; use tensorrt-llm==1.2.1 or the image Dockerfile.triton pins")
    scripts = [source / CONVERT_SCRIPT, source / XGRAMMAR_SCRIPT]
    if missing := [str(s) for s in scripts if not s.is_file()]:
        sys.exit(f"error: TensorRT-LLM {version}'s source is needed for {', '.join(missing)}: check out the "
                 f"matching release into {source} (--trtllm-source or TRTLLM_SOURCE)")
    if not (checkpoint / "config.json").is_file():
        sys.exit(f"error: {checkpoint} is not a Hugging Face checkpoint directory (no config.json); mount the "
                 "generator's weights there (e.g. Qwen2.5-7B-Instruct)")

    target = engines / gpu.slug / f"tensorrt_llm-{version}" / f"generator-{dtype}-{checkpoint_key(checkpoint)}"
    if (target / "engine.json").is_file():
        log.info("generator: cached (%s)", target)
        return target
    started = time.monotonic()
    converted = target / "checkpoint"
    run([sys.executable, str(source / CONVERT_SCRIPT), "--model_dir", str(checkpoint),
         "--output_dir", str(converted), "--dtype", dtype], "checkpoint conversion")
    run(trtllm_build_command(converted, target), "trtllm-build")
    run([sys.executable, str(source / XGRAMMAR_SCRIPT), "--model_dir", str(checkpoint), "--output_dir", str(target)],
        "xgrammar tokenizer info")
    shutil.rmtree(converted)  # as large as the weights, and only trtllm-build reads it
    record = {"tensorrt_llm": version, "gpu": gpu.name, "compute_capability": gpu.compute_capability,
              "checkpoint": str(checkpoint), "checkpoint_key": checkpoint_key(checkpoint), "dtype": dtype,
              "max_batch_size": MAX_BATCH_SIZE, "max_input_len": MAX_INPUT_LEN,
              "max_seq_len": MAX_SEQ_LEN, "max_num_tokens": MAX_NUM_TOKENS, "paged_context_fmha": True,
              "build_seconds": round(time.monotonic() - started)}
    (target / "engine.json").write_text(json.dumps(record, indent=1))  # written last: marks the engine complete
    log.info("generator: built in %d s -> %s", record["build_seconds"], target)
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m reviewlens.build_engines.gpu.trtllm_engine", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, default=DEFAULT_CHECKPOINT,
                        help="local Hugging Face checkpoint directory (default: $GENERATOR_CHECKPOINT or /models/generator)")
    parser.add_argument("--trtllm-source", type=Path, default=TRTLLM_SOURCE,
                        help="TensorRT-LLM source of the installed release (default: $TRTLLM_SOURCE or /opt/tensorrt_llm)")
    parser.add_argument("--engines", type=Path, default=ENGINES_DIR, help="engine cache (a volume in the image)")
    parser.add_argument("--dtype", default=os.environ.get("GENERATOR_DTYPE", "auto"), choices=GENERATOR_DTYPES,
                        help="weights and activations (auto: the checkpoint's; use float16 on GPUs without bfloat16)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s] %(message)s", datefmt="%H:%M:%S")
    print(build_generator_engine(args.checkpoint, args.trtllm_source, args.engines, args.dtype))
    return 0


if __name__ == "__main__":
    sys.exit(main())
