"""The main job on the CPU profile: start Triton, analyse sample reviews over gRPC, print a table.

    python -m reviewlens.client.demo [--movies 6] [--url HOST:PORT]

Takes the best-covered movies of the held-out split (movies the classifier never saw), classifies
and embeds their reviews through the `sentiment` and `embed` ensembles, and prints per movie: the
share of positive reviews against the critics' own fresh/rotten labels, and the most typical
review (the one nearest the centroid of the movie's embeddings).
"""
import argparse
import json
import time
from collections import defaultdict

import numpy as np

from reviewlens.build_engines.paths import BUILD_DIR
from reviewlens.client.inference import ReviewModels
from reviewlens.ensemble.server import TritonServer, free_port

SAMPLE_REVIEWS = BUILD_DIR / "data" / "test.jsonl"


def sample_entities(count: int) -> dict[str, list[dict]]:
    """The `count` movies with the most reviews in the held-out split."""
    by_movie = defaultdict(list)
    with open(SAMPLE_REVIEWS) as lines:
        for line in lines:
            review = json.loads(line)
            by_movie[review["movie_name"]].append(review)
    best = sorted(by_movie, key=lambda m: (-len(by_movie[m]), m))[:count]
    return {movie: by_movie[movie] for movie in best}


def most_typical(embeddings: np.ndarray) -> int:
    """Index of the row nearest the normalised centroid."""
    centroid = embeddings.mean(axis=0)
    return int(np.argmax(embeddings @ (centroid / np.linalg.norm(centroid))))


def analyse(models: ReviewModels, entities: dict[str, list[dict]]) -> list[dict]:
    rows = []
    for movie, reviews in entities.items():
        texts = [r["text"] for r in reviews]
        sentiments = models.sentiment(texts)
        embeddings = models.embed(texts)
        predicted = [s.label == "positive" for s in sentiments]
        rows.append({
            "movie": movie,
            "reviews": len(texts),
            "positive": float(np.mean(predicted)),
            "critics_fresh": float(np.mean([r["label"] == 1 for r in reviews])),
            "agreement": float(np.mean([p == (r["label"] == 1) for p, r in zip(predicted, reviews)])),
            "confidence": float(np.mean([s.confidence for s in sentiments])),
            "typical_review": texts[most_typical(embeddings)],
        })
    return rows


def print_table(rows: list[dict]) -> None:
    header = f"{'movie':<32} {'reviews':>7} {'positive':>8} {'critics':>8} {'agree':>6} {'conf':>5}  most typical review"
    print(header)
    print("-" * len(header))
    for r in rows:
        quote = r["typical_review"] if len(r["typical_review"]) <= 60 else r["typical_review"][:57] + "..."
        print(f"{r['movie'][:32]:<32} {r['reviews']:>7} {r['positive']:>8.0%} {r['critics_fresh']:>8.0%} "
              f"{r['agreement']:>6.0%} {r['confidence']:>5.2f}  \"{quote}\"")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--movies", type=int, default=6, help="how many movies to analyse (default 6)")
    parser.add_argument("--url", help="use a running server (HOST:GRPC_PORT) instead of starting one")
    args = parser.parse_args()
    if not SAMPLE_REVIEWS.exists():
        raise SystemExit(f"error: {SAMPLE_REVIEWS} is missing; run `make build` first")
    entities = sample_entities(args.movies)

    server = None
    if args.url is None:
        server = TritonServer(grpc_port=free_port(), http_port=free_port(), metrics_port=free_port())
        print(f"starting tritonserver on {server.grpc_url} (log: {server.log_path}) ...", flush=True)
        started = time.monotonic()
        server.start()
        print(f"all models READY in {time.monotonic() - started:.1f} s", flush=True)
    try:
        models = ReviewModels(args.url or server.grpc_url)
        started = time.monotonic()
        rows = analyse(models, entities)
        elapsed = time.monotonic() - started
        models.close()
    finally:
        if server:
            server.stop()
    total = sum(r["reviews"] for r in rows)
    print(f"\n{total} reviews of {len(rows)} movies (held-out, unseen in training) classified and embedded "
          f"over gRPC in {elapsed:.2f} s\n")
    print_table(rows)
    print("\npositive: share the classifier calls positive; critics: share the critics marked fresh; "
          "agree: per-review agreement; conf: mean confidence")


if __name__ == "__main__":
    main()
