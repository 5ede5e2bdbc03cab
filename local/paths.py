"""Where the build reads and writes. Built artifacts live outside git: `build/` in the checkout
and a content-addressed cache (REVIEWLENS_CACHE, default ~/.cache/reviewlens) that survives
fresh clones, so a second build or a CI run on the same machine reuses the expensive steps."""
import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
BUILD_DIR = REPO_ROOT / "build"
MODELS_DIR = BUILD_DIR / "models"
REPORTS_DIR = BUILD_DIR / "reports"
MODEL_REPOSITORY = REPO_ROOT / "model_repository"
CACHE_DIR = Path(os.environ.get("REVIEWLENS_CACHE", "~/.cache/reviewlens")).expanduser()
