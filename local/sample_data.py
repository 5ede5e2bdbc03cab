"""The sample reviews the demo, the tests and the benchmarks analyse: the build's held-out split.

`build/data/test.jsonl` (written by `make build`): Rotten Tomatoes reviews of movies the classifier
never saw, one JSON line each with `text`, `label` (1 = fresh, 0 = rotten) and `movie_name`.
"""
import json
from collections import defaultdict
from pathlib import Path

from reviewlens.local.paths import BUILD_DIR

HELD_OUT = BUILD_DIR / "data" / "test.jsonl"
# The split's labels as the classifier names them: fresh is positive, rotten negative.
CRITICS_SENTIMENT = {1: "positive", 0: "negative"}


def held_out_reviews() -> list[dict]:
    """Every held-out review record, in file order."""
    if not HELD_OUT.exists():
        raise FileNotFoundError(f"{HELD_OUT} is missing: run `make build` first")
    with open(HELD_OUT, encoding="utf-8") as lines:
        return [json.loads(line) for line in lines if line.strip()]


def best_covered_movies(count: int) -> dict[str, list[str]]:
    """The `count` movies with the most held-out reviews (ties by name), each with its review texts in file order."""
    by_movie = defaultdict(list)
    for review in held_out_reviews():
        by_movie[review["movie_name"]].append(review["text"])
    return {movie: by_movie[movie] for movie in sorted(by_movie, key=lambda m: (-len(by_movie[m]), m))[:count]}


def write_reviews_file(movies: dict[str, list[str]], path: Path) -> None:
    """Movies as the CLI's reviews.jsonl (entity_id, entity_name, text per line)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as out:
        for movie, texts in movies.items():
            name = movie.replace("_", " ").title()
            for text in texts:
                out.write(json.dumps({"entity_id": movie, "entity_name": name, "text": text}, ensure_ascii=False) + "\n")
