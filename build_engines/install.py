"""Place the CPU profile's built files in the Triton model repository (artifacts.py lists them);
its configs and model.py files are not ours.

Each ONNX is the variant the accuracy report chose per model (int8 if it passed its gate, else
fp32). Files are hardlinked (copied across file systems) and replaced atomically, so a running
server never reads a half-written file; files already in place are left untouched.
"""
import logging

from . import artifacts, cache
from .data import Sources
from .evaluate import build_report
from .generator_gguf import generator_gguf
from reviewlens.local.paths import MODEL_REPOSITORY, REPO_ROOT

log = logging.getLogger(__name__)


def install(sources: Sources) -> None:
    """Build whatever is missing, then link the served files into model_repository/."""
    report = build_report(sources)
    generator_gguf(sources)
    served_variants = {kind: report[kind]["served"] for kind in ("classifier", "embedder")}
    for artifact in artifacts.served("cpu"):
        source = artifact.source_path(served_variants.get(artifact.exported, ""))
        target = MODEL_REPOSITORY / artifact.served_path
        cache.link_file(source, target)
        log.info("install: %s <- %s", target.relative_to(REPO_ROOT), source.relative_to(REPO_ROOT))
