"""Which sentence segmenter client/sentences.py should use: boundary F1 on a hand-labelled set and
speed, for the project's rules against pysbd, blingfire, kss and kiwipiepy.

    python perf/bench_segmenters.py            # writes perf/results/segmenters.md

The libraries are optional: each one that imports is measured, the others are listed as missing
(install them in a throwaway venv with the client's dependencies, never into the project).
Every library's sentences are mapped back to offsets in the review by counting non-space
characters, so a library that normalises whitespace (blingfire, kss) is measured on exactly the
boundaries it found. The same contrast-clause pass of client/sentences.py then runs on every
candidate's sentences, so the "sentence + clause" column compares the sentence splitters only.
Labelled set: tests/data/sentences.jsonl (real Rotten Tomatoes snippets, written Korean reviews);
gold is a list of sentences, each a list of its clauses. A boundary is where a span starts (any
span but a review's first). Speed: 5,000 English reviews of build/data/train.jsonl and 500 Korean
sentences (the labelled Korean reviews, repeated), one process, best of 3.
"""
import argparse
import importlib.metadata
import json
import time
from collections.abc import Callable
from pathlib import Path

from reviewlens.client import sentences

ROOT = Path(__file__).resolve().parent.parent
LABELLED = ROOT / "tests" / "data" / "sentences.jsonl"
ENGLISH_CORPUS = ROOT / "build" / "data" / "train.jsonl"
RESULTS = ROOT / "perf" / "results" / "segmenters.md"
ENGLISH_REVIEWS = 5000
KOREAN_SENTENCES = 500

Ranges = list[tuple[int, int]]


def rules(text: str) -> Ranges:
    return [(s, e) for s, e in sentences._sentences(text) if text[s:e].strip()]


def from_strings(text: str, pieces: list[str]) -> Ranges:
    """Offsets of a library's sentence strings: each covers the next as many non-space characters."""
    ranges, position = [], 0
    for piece in pieces:
        wanted = sum(1 for ch in piece if not ch.isspace())
        if not wanted:
            continue
        while position < len(text) and text[position].isspace():
            position += 1
        start, seen = position, 0
        while position < len(text) and seen < wanted:
            seen += not text[position].isspace()
            position += 1
        ranges.append((start, position))
    return ranges


def candidates() -> dict[str, tuple[Callable[[str], Ranges], str]]:
    """Segmenter name -> (text -> sentence ranges, what it installs)."""
    found = {"rules (client/sentences.py)": (rules, "none (stdlib re)")}
    try:
        import pysbd

        english = pysbd.Segmenter(language="en", clean=False)
        found["pysbd " + importlib.metadata.version("pysbd")] = (
            lambda t: from_strings(t, english.segment(t)), "pysbd (76 kB, pure Python; no Korean rules)")
    except ImportError:
        pass
    try:
        import blingfire

        found["blingfire " + importlib.metadata.version("blingfire")] = (
            lambda t: from_strings(t, blingfire.text_to_sentences(t).split("\n")) if t.strip() else [],
            "blingfire (41 MB wheel, native)")
    except ImportError:
        pass
    try:
        import kss

        found["kss " + importlib.metadata.version("kss")] = (
            lambda t: from_strings(t, kss.split_sentences(t)) if t.strip() else [],
            "kss + 30 packages (208 MB: pecab, scipy, pyarrow, emoji, pytest, ...; Korean only)")
    except ImportError:
        pass
    try:
        from kiwipiepy import Kiwi

        kiwi = Kiwi()
        found["kiwipiepy " + importlib.metadata.version("kiwipiepy")] = (
            lambda t: [(s.start, s.end) for s in kiwi.split_into_sents(t)],
            "kiwipiepy + kiwipiepy-model + tqdm (113 MB, native)")
    except ImportError:
        pass
    return found


def with_clauses(text: str, ranges: Ranges) -> Ranges:
    return [c for s, e in ranges for c in sentences._clauses(text, s, e)]


def starts(text: str, ranges: Ranges) -> set[int]:
    """Boundaries: where each stripped span but the first begins."""
    result = []
    for s, e in ranges:
        span = sentences._stripped(text, s, e)
        if span is not None:
            result.append(span.start)
    return set(result[1:])


def gold_starts(text: str, gold: list[list[str]], clauses: bool) -> set[int]:
    result, position = [], 0
    for sentence in gold:
        for index, clause in enumerate(sentence):
            position = text.index(clause, position)
            if clauses or index == 0:
                result.append(position)
            position += len(clause)
    return set(result[1:])


def f1(found: list[set[int]], expected: list[set[int]]) -> tuple[float, int, int]:
    true = sum(len(f & e) for f, e in zip(found, expected))
    false_pos = sum(len(f - e) for f, e in zip(found, expected))
    false_neg = sum(len(e - f) for f, e in zip(found, expected))
    score = 2 * true / (2 * true + false_pos + false_neg) if true + false_pos + false_neg else 1.0
    return score, false_pos, false_neg


def rate(segment: Callable[[str], Ranges], texts: list[str]) -> tuple[float, float]:
    """(reviews/s, sentences/s), best of 3."""
    best, count = float("inf"), 0
    for _ in range(3):
        began = time.perf_counter()
        count = sum(len(segment(t)) for t in texts)
        best = min(best, time.perf_counter() - began)
    return len(texts) / best, count / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    labelled = [json.loads(line) for line in LABELLED.read_text(encoding="utf-8").splitlines()]
    english_texts = [json.loads(line)["text"] for line in
                     ENGLISH_CORPUS.read_text(encoding="utf-8").splitlines()[:ENGLISH_REVIEWS]]
    korean_rows = [row for row in labelled if row["lang"] == "ko"]
    korean_texts, korean_count = [], 0
    while korean_count < KOREAN_SENTENCES:
        row = korean_rows[len(korean_texts) % len(korean_rows)]
        korean_texts.append(row["text"])
        korean_count += len(row["sentences"])

    lines = [
        "# Sentence segmenters (issue 15, item 1)", "",
        f"Labelled set: tests/data/sentences.jsonl, {sum(r['lang'] == 'en' for r in labelled)} English "
        f"(Rotten Tomatoes snippets) and {len(korean_rows)} Korean reviews (written, restaurants and products). "
        "F1 of span-start boundaries (FP/FN in brackets); \"+ clauses\" runs the contrast-clause pass of "
        f"client/sentences.py on each candidate's sentences. Speed: {len(english_texts)} English reviews, "
        f"{len(korean_texts)} Korean reviews ({korean_count} sentences); one core, best of 3. "
        "Produced by `python perf/bench_segmenters.py`.", "",
        "| segmenter | installs | EN sentence F1 | KO sentence F1 | EN + clauses F1 | KO + clauses F1 "
        "| EN reviews/s | EN sentences/s | KO reviews/s | KO sentences/s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, (segment, installs) in candidates().items():
        cells = []
        for clauses in (False, True):
            for lang in ("en", "ko"):
                rows = [r for r in labelled if r["lang"] == lang]
                found = []
                for r in rows:
                    ranges = segment(r["text"])
                    found.append(starts(r["text"], with_clauses(r["text"], ranges) if clauses else ranges))
                score, fp, fn = f1(found, [gold_starts(r["text"], r["sentences"], clauses) for r in rows])
                cells.append(f"{score:.3f} ({fp}/{fn})")
        en_reviews, en_sentences = rate(segment, english_texts)
        ko_reviews, ko_sentences = rate(segment, korean_texts)
        cells += [f"{en_reviews:,.0f}", f"{en_sentences:,.0f}", f"{ko_reviews:,.0f}", f"{ko_sentences:,.0f}"]
        lines.append(f"| {name} | {installs} | " + " | ".join(cells) + " |")
        print(lines[-1], flush=True)
    args.out.write_text("\n".join(lines) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
