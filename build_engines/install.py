"""Place the served artifacts in the Triton model repository; its configs and model.py files are not ours.

    model_repository/classifier/1/model.onnx             build/models/classifier/model_<served>.onnx
    model_repository/encoder/1/model.onnx                build/models/embedder/model_<served>.onnx
    model_repository/sentiment_tokenizer/1/tokenizer.json, serving.json    the classifier's
    model_repository/embed_tokenizer/1/tokenizer.json, serving.json        the embedder's
    model_repository/sentiment_postprocess/1/labels.json                   the classifier's
    model_repository/generator/1/model.gguf              build/models/generator/model.gguf (hardlink)

<served> is what the accuracy report chose per model (int8 if it passed its gate, else fp32).
Each file is replaced atomically (copy beside it, then rename), so a running server never reads a
half-written file; files already identical are left untouched.
"""
import logging
import os
import shutil
from pathlib import Path

from . import cache
from .data import Sources
from .evaluate import build_report
from .generator import generator_gguf
from .paths import MODEL_REPOSITORY, MODELS_DIR, REPO_ROOT

log = logging.getLogger(__name__)


def install(sources: Sources) -> None:
    """Build whatever is missing, then copy the served artifacts into model_repository/."""
    report = build_report(sources)
    classifier = MODELS_DIR / "classifier"
    embedder = MODELS_DIR / "embedder"
    placements = {
        "classifier/1/model.onnx": classifier / f"model_{report['classifier']['served']}.onnx",
        "encoder/1/model.onnx": embedder / f"model_{report['embedder']['served']}.onnx",
        "sentiment_tokenizer/1/tokenizer.json": classifier / "tokenizer.json",
        "sentiment_tokenizer/1/serving.json": classifier / "serving.json",
        "embed_tokenizer/1/tokenizer.json": embedder / "tokenizer.json",
        "embed_tokenizer/1/serving.json": embedder / "serving.json",
        "sentiment_postprocess/1/labels.json": classifier / "labels.json",
    }
    for target, source in placements.items():
        _place(source, MODEL_REPOSITORY / target)
    # 1 GB: linked, not copied or hashed again (generator_gguf verified it).
    cache.link_file(generator_gguf(sources), MODEL_REPOSITORY / "generator/1/model.gguf")
    log.info("install: model_repository/generator/1/model.gguf <- build/models/generator/model.gguf")


def _place(source: Path, target: Path) -> None:
    shown = f"{target.relative_to(REPO_ROOT)} <- {source.relative_to(REPO_ROOT)}"
    if target.is_file() and cache.file_sha256(target) == cache.file_sha256(source):
        log.info("install: %s (up to date)", shown)
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.with_name(f".{target.name}.tmp")
    shutil.copyfile(source, staging)
    os.replace(staging, target)
    log.info("install: %s", shown)
