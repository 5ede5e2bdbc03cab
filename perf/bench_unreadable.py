"""Text the classifier cannot read: which per-text signal tells it apart, and who labels it better.

    python perf/bench_unreadable.py [--english 400]

Data: the 28 Korean restaurant reviews written for the tests (tests/data/korean_reviews.jsonl,
labelled by their author, 14 positive and 14 negative) and held-out English Rotten Tomatoes
snippets (the critics' fresh/rotten as labels). Nothing here trains on them.

1. Signals, per text, from the served classifier's own tokenizer (model_repository's
   sentiment_tokenizer files): the share of letters outside the Latin script (what the client
   uses, `foreign_letter_share`), the share of [UNK] tokens, and word pieces per letter (how much
   the WordPiece vocabulary breaks the text up). For each, the widest gap between the English and
   the Korean texts and the best single threshold's accuracy at telling them apart.
2. Labels: the served classifier alone, and the client (the generator labels every review whose
   foreign-letter share reaches `unreadable_share`), through a tritonserver of its own, both
   against the written labels; the classifier on the English snippets for comparison.
Writes unreadable.json, .md, .png to perf/results/ (build/perf-smoke/ with --quick).
"""
import json
from dataclasses import replace

import numpy as np
from tokenizers import Tokenizer

from harness import results
from harness.server import served_file, triton
from reviewlens.client.analysis import Entity, foreign_letter_share
from reviewlens.client.settings import Settings
from reviewlens.client.sync import SyncAnalyzer, SyncClient
from reviewlens.ensemble import interface as api
from reviewlens.local.paths import REPO_ROOT
from reviewlens.local.sample_data import CRITICS_SENTIMENT, held_out_reviews

KOREAN = REPO_ROOT / "tests" / "data" / "korean_reviews.jsonl"


def signals(texts: list[str]) -> dict[str, list[float]]:
    """Each signal's value per text."""
    tokenizer = Tokenizer.from_file(str(served_file(api.SENTIMENT_TOKENIZER, "tokenizer.json")))
    unknown = tokenizer.token_to_id("[UNK]")
    specials = {tokenizer.token_to_id(t) for t in ("[CLS]", "[SEP]")}
    unk_share, pieces_per_letter = [], []
    for text, encoding in zip(texts, tokenizer.encode_batch(texts)):
        ids = [i for i in encoding.ids if i not in specials]
        letters = max(1, sum(c.isalpha() for c in text))
        unk_share.append(sum(i == unknown for i in ids) / max(1, len(ids)))
        pieces_per_letter.append(len(ids) / letters)
    return {"foreign_letter_share": [foreign_letter_share(t, Settings().classifier_scripts) for t in texts],
            "unknown_token_share": unk_share, "pieces_per_letter": pieces_per_letter}


def separation(english: list[float], korean: list[float]) -> dict:
    """The gap between the two groups (Korean minimum minus English maximum; > 0: a threshold
    separates them all) and the best threshold's accuracy over both groups, balanced."""
    values = sorted(set(english) | set(korean))
    best = max(((np.mean([v < t for v in english]) + np.mean([v >= t for v in korean])) / 2, t) for t in values)
    return {"english_max": round(max(english), 4), "korean_min": round(min(korean), 4),
            "gap": round(min(korean) - max(english), 4), "best_threshold": round(best[1], 4),
            "balanced_accuracy": round(float(best[0]), 4),
            "english_mean": round(float(np.mean(english)), 4), "korean_mean": round(float(np.mean(korean)), 4)}


def measure(args, out) -> dict:
    rows = [json.loads(line) for line in KOREAN.open(encoding="utf-8")]
    english = held_out_reviews()[:args.english]
    korean_texts, english_texts = [r["text"] for r in rows], [r["text"] for r in english]
    english_truth = [CRITICS_SENTIMENT[r["label"]] for r in english]
    found = {name: (values[len(korean_texts):], values[:len(korean_texts)])
             for name, values in signals(korean_texts + english_texts).items()}
    settings = Settings()
    with triton("unreadable") as server:
        settings = replace(settings, urls=(server.grpc_url,), redis_url=None)
        with SyncClient(server.grpc_url) as client:
            classifier_korean = [s.label for s in client.sentiment(korean_texts)]
            classifier_english = [s.label for s in client.sentiment(english_texts)]
        entities = [Entity(place, [r["text"] for r in rows if r["entity_id"] == place])
                    for place in dict.fromkeys(r["entity_id"] for r in rows)]
        with SyncAnalyzer(settings) as analyzer:
            analysed = analyzer.analyze_many(entities)
            calls = [c for c in analyzer.metrics.calls if c.kind == "recheck"]
    client_labels = {r.text: r.label for result in analysed for r in result.reviews}
    unreadable = sum(not r.readable for result in analysed for r in result.reviews)

    def accuracy(labels, truth) -> float:
        return round(float(np.mean([a == b for a, b in zip(labels, truth, strict=True)])), 4)
    korean_truth = [r["label"] for r in rows]
    return {
        "korean_source": results.repo_relative(KOREAN), "korean_reviews": len(rows), "english_reviews": len(english),
        "signals": {name: separation(e, k) for name, (e, k) in found.items()},
        "labels": {"classifier_korean": accuracy(classifier_korean, korean_truth),
                   "client_korean": accuracy([client_labels[t] for t in korean_texts], korean_truth),
                   "classifier_english": accuracy(classifier_english, english_truth),
                   "korean_majority": round(max(korean_truth.count(l) for l in set(korean_truth)) / len(rows), 4),
                   "classifier_korean_positive_share": round(classifier_korean.count("positive") / len(rows), 4)},
        "client": {"unreadable_share": settings.unreadable_share, "classifier_scripts": list(settings.classifier_scripts),
                   "unreadable_reviews": unreadable, "generator_calls": len(calls),
                   "generator_prompt_tokens": sum(c.prompt_tokens for c in calls),
                   "generator_seconds": round(sum(c.total_s for c in calls), 1)},
    }


def markdown(report: dict) -> str:
    lines = results.header(
        report, "Text the classifier cannot read: the signal, and who labels it",
        f"{report['korean_reviews']} Korean restaurant reviews written for the tests (`{report['korean_source']}`, "
        f"labelled by their author) and the first {report['english_reviews']} held-out English snippets (critics' "
        "fresh/rotten); signals from the served classifier's tokenizer; labels through tritonserver;")
    lines += ["| signal | English mean | Korean mean | English max | Korean min | gap | best threshold | "
              "balanced accuracy |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for name, s in report["signals"].items():
        lines.append(f"| {name.replace('_', ' ')} | {s['english_mean']} | {s['korean_mean']} | {s['english_max']} | "
                     f"{s['korean_min']} | {s['gap']} | {s['best_threshold']} | {s['balanced_accuracy']:.1%} |")
    lab, c = report["labels"], report["client"]
    lines += ["", "Gap > 0: every Korean text scores above every English one, so one threshold separates them all.", "",
              "| labels | agreement with the written labels |", "|---|---:|",
              f"| served classifier on the Korean reviews | {lab['classifier_korean']:.1%} (it calls "
              f"{lab['classifier_korean_positive_share']:.0%} of them positive; the majority class is "
              f"{lab['korean_majority']:.0%}) |",
              f"| client: the generator labels reviews with foreign-letter share >= {c['unreadable_share']} | "
              f"{lab['client_korean']:.1%} |",
              f"| served classifier on the English snippets (critics' labels) | {lab['classifier_english']:.1%} |", "",
              f"The client sent {c['unreadable_reviews']} of {report['korean_reviews']} Korean reviews (and their "
              f"sentences) to the generator: {c['generator_calls']} calls, {c['generator_prompt_tokens']} prompt "
              f"tokens, {c['generator_seconds']} s summed.", ""]
    return "\n".join(lines)


def plot(report: dict, path) -> None:
    lab = report["labels"]
    results.bar_chart(path, "Korean reviews: who labels them", [(
        "agreement with the written labels", {"classifier": lab["classifier_korean"], "client (generator)": lab["client_korean"],
                                              "majority class": lab["korean_majority"]})])


def arguments(parser) -> None:
    parser.add_argument("--english", type=int, default=400, help="held-out English snippets (default 400)")


if __name__ == "__main__":
    results.main("unreadable", measure, markdown, plot, arguments)
