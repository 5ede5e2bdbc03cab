"""Versions of the served classifier in the model repository: an adapted one is installed beside the
one it replaces, and a rollback restores the previous one.

Version N of the classifier is `classifier/N/` (model.onnx, the Python backend's model.py, and
adaptation.json saying where it comes from). The `sentiment` ensemble gets version N too, an empty
directory, because what clients see of a model is the ensemble: its version is in every client
cache key (client/analysis.py) and in the key of Triton's response cache, so results of the old
classifier are never served as the new one's. Both configs keep Triton's default version policy
(the latest version only), and the ensemble's step asks for the classifier's latest.

A version directory is written beside the repository and renamed into place, the ensemble's first:
an interrupted install leaves at worst an ensemble version that serves the previous classifier
under a new cache key, never a half-written classifier. A rollback moves the newest versions out
to build/adapt/rolled_back/ (kept, not deleted). A running server in the default model control
mode reads the repository at start: restart it to serve the change.
"""
import argparse
import json
import shutil
import sys
import time
from pathlib import Path

from reviewlens.build_engines.cache import link_file
from reviewlens.ensemble import interface as api
from reviewlens.local.paths import BUILD_DIR, MODEL_REPOSITORY

CLASSIFIER = api.CLASSIFIER.name
ENSEMBLE = api.SENTIMENT.name
ROLLED_BACK = BUILD_DIR / "adapt" / "rolled_back"
PROVENANCE = "adaptation.json"


class VersionError(RuntimeError):
    """The repository's versions are not what the install or rollback needs; the message says what."""


def versions(repository: Path, model: str) -> list[int]:
    """The model's version numbers in the repository, ascending."""
    return sorted(int(p.name) for p in (repository / model).iterdir() if p.is_dir() and p.name.isdigit())


def served_version(repository: Path) -> int:
    """The classifier version Triton serves (the newest), checked to match the ensemble's."""
    classifier, ensemble = versions(repository, CLASSIFIER), versions(repository, ENSEMBLE)
    if not classifier or not ensemble or classifier[-1] != ensemble[-1]:
        raise VersionError(f"{repository}: {CLASSIFIER} versions {classifier} and {ENSEMBLE} versions {ensemble} "
                           "do not end on the same number; `make rollback` or restore the repository")
    return classifier[-1]


def install_version(repository: Path, model_onnx: Path, provenance: dict) -> int:
    """Install `model_onnx` as the next classifier version (and the ensemble's); return its number."""
    current = served_version(repository)
    new = current + 1
    code = repository / CLASSIFIER / "1" / "model.py"
    # Beside the repository, not in it (Triton would take a directory there for a model), on the same
    # file system, so the renames below are atomic.
    staging_root = repository.parent / f".{repository.name}-staging"
    staging = {model: staging_root / f"{model}-{new}" for model in (ENSEMBLE, CLASSIFIER)}
    for path in staging.values():
        shutil.rmtree(path, ignore_errors=True)
        path.mkdir(parents=True)
    link_file(model_onnx, staging[CLASSIFIER] / "model.onnx")
    link_file(code, staging[CLASSIFIER] / "model.py")
    (staging[CLASSIFIER] / PROVENANCE).write_text(json.dumps({**provenance, "replaces": current}, indent=1))
    for model in (ENSEMBLE, CLASSIFIER):
        staging[model].rename(repository / model / str(new))
    return new


def rollback(repository: Path, rolled_back: Path = ROLLED_BACK) -> int:
    """Move the newest classifier and ensemble versions out of the repository; return the version now served.

    Either may be missing (an install or a rollback interrupted between its two renames): the
    newest number is moved out of whichever model has it.
    """
    newest = max(versions(repository, CLASSIFIER)[-1:] + versions(repository, ENSEMBLE)[-1:], default=1)
    if newest == 1:
        raise VersionError(f"{repository}: only version 1 of {CLASSIFIER} is there; nothing to roll back to")
    stamp = time.strftime("%Y%m%dT%H%M%S")
    for model in (CLASSIFIER, ENSEMBLE):
        if (repository / model / str(newest)).is_dir():
            target = rolled_back / f"{model}-{newest}-{stamp}"
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(str(repository / model / str(newest)), target)
    return served_version(repository)


def main(argv: list[str] | None = None) -> int:
    """python -m reviewlens.build_engines.versions rollback [--model-repository DIR]; return the exit code."""
    parser = argparse.ArgumentParser(prog="python -m reviewlens.build_engines.versions", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=["rollback", "show"])
    parser.add_argument("--model-repository", type=Path, default=MODEL_REPOSITORY)
    args = parser.parse_args(argv)
    try:
        if args.action == "rollback":
            served = rollback(args.model_repository)
            print(f"rolled back: {CLASSIFIER} version {served} is the newest; restart tritonserver to serve it "
                  f"(the removed version is kept in {ROLLED_BACK})")
        else:
            print(f"{CLASSIFIER} versions {versions(args.model_repository, CLASSIFIER)}, "
                  f"{ENSEMBLE} versions {versions(args.model_repository, ENSEMBLE)}")
    except (VersionError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
