"""A small content-addressed cache for the build steps.

A step's key is the sha256 of its input files' hashes, the source code of the modules that
implement it and its parameters (including the versions of the libraries that shape its output).
Its outputs live in CACHE_DIR/<step>/<key>/. They are written to a temporary directory that is
renamed into place with a DONE marker, so an interrupted build never leaves a directory that
looks finished. When the directory exists the step is skipped and logged as "cached".

Results are then exposed under build/ as hardlinks (copies across file systems), never as
symlinks into the cache, which would dangle once the cache is cleaned.
"""
import hashlib
import inspect
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from types import ModuleType

from reviewlens.local.paths import CACHE_DIR

log = logging.getLogger(__name__)

DONE = "DONE"

# Within one run the same files are hashed by several steps (a step hashes its inputs to find
# its key, and every prerequisite does the same): remember each file's digest by its identity.
_file_digests: dict[tuple[str, int, int], str] = {}


class BuildError(RuntimeError):
    """A build input or a build check is wrong; the message says what and what to do."""


def file_sha256(path: Path) -> str:
    """Return the sha256 hex digest of a file."""
    stat = path.stat()
    identity = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if identity not in _file_digests:
        with open(path, "rb") as f:
            _file_digests[identity] = hashlib.file_digest(f, "sha256").hexdigest()
    return _file_digests[identity]


def tree_sha256(path: Path) -> str:
    """Return the sha256 of a file, or of a directory's relative file names and contents."""
    if path.is_file():
        return file_sha256(path)
    digest = hashlib.sha256()
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        digest.update(f"{file.relative_to(path).as_posix()}\0{file_sha256(file)}\n".encode())
    return digest.hexdigest()


def step_key(inputs: Iterable[Path], sources: Iterable[ModuleType], params: dict) -> str:
    """Return the cache key of a step from its input files, its source modules and its parameters."""
    digest = hashlib.sha256()
    for path in inputs:
        digest.update(f"input {tree_sha256(path)}\n".encode())
    for module in sources:
        digest.update(f"source {module.__name__} ".encode() + inspect.getsource(module).encode())
    digest.update(json.dumps(params, sort_keys=True, default=str).encode())
    return digest.hexdigest()[:32]


def run_step(step: str, build: Callable[[Path], None], *, inputs: Iterable[Path],
             sources: Iterable[ModuleType], params: dict) -> Path:
    """Return the cache directory holding the step's outputs, calling build(directory) if it is missing.

    `sources` are the modules whose code decides the outputs; `params` must be JSON-serialisable.
    """
    key = step_key(inputs, sources, params)
    final = CACHE_DIR / step / key
    if (final / DONE).exists():
        log.info("%s: cached (%s)", step, final)
        return final

    final.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{key}.", dir=final.parent))
    log.info("%s: building (%s)", step, final)
    started = time.monotonic()
    try:
        build(work)
        # Outputs are hardlinked into build/: read-only files keep a stray write there from
        # changing the cached copy as well.
        for file in work.rglob("*"):
            if file.is_file():
                file.chmod(0o444)
        (work / DONE).write_text(json.dumps({"step": step, "params": params}, indent=1, default=str))
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    try:
        work.rename(final)
    except OSError:
        if not (final / DONE).exists():
            raise
        shutil.rmtree(work)  # a concurrent build of the same key finished first: same outputs
    log.info("%s: built in %.0f s", step, time.monotonic() - started)
    return final


def expose(step_dir: Path, destination: Path) -> None:
    """Place the files of a cached step under `destination` (hardlinks, or copies across devices)."""
    for source in sorted(step_dir.rglob("*")):
        if not source.is_file() or source.name == DONE:
            continue
        link_file(source, destination / source.relative_to(step_dir))


def link_file(source: Path, target: Path) -> None:
    """Atomically make `target` a hardlink of `source` (a copy across devices), unless it already is."""
    if target.exists() and os.path.samefile(source, target):
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.with_name(f".{target.name}.tmp")
    staging.unlink(missing_ok=True)
    try:
        os.link(source, staging)
    except OSError:
        shutil.copyfile(source, staging)
    os.replace(staging, target)
