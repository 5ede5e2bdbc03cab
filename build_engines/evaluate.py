"""Accuracy report for every artifact, and the decision of what the CPU serves.

Classifier: accuracy on the reviews of the held-out movies (never seen in fine-tuning) for
model_fp32, model_int8 and model_qdq, and each INT8 artifact's agreement with FP32 predictions.
Embedder: for model_int8 and model_qdq, cosine to the FP32 embeddings (mean, min) and top-10
neighbour agreement (the share of each text's 10 nearest neighbours under FP32 that stay among
its 10 nearest) over 2,000 review texts: every held-out review, topped up with train reviews that
neither calibration nor the sensitivity sweep used. Texts are tokenized as served (tokenizer.json,
serving.json's max_length) and run by ONNX Runtime on 2 threads. Throughput is recorded too, but
only as an indication: other work on the machine during the build skews it.

Gate policy (what the CPU serves, per model; the gate itself is quantize.gate):
- classifier: INT8 accuracy within 1.0 point of FP32 accuracy. If the label names are not
  "negative"/"positive" (a user checkpoint), accuracy on these reviews cannot be computed, and the
  gate is INT8 agreement with FP32 predictions >= 99 % instead, which keeps the accuracy within
  1 point whatever the true labels.
- embedder: INT8 mean cosine to FP32 >= 0.99.
An INT8 artifact that misses its gate is not served: the build serves FP32 and prints a loud
WARNING. The report records per model "served": "int8" | "fp32" and the gate values. model_qdq is
the TensorRT form and is never served by the CPU; its figures are there to judge it before a GPU
build. The default classifier's FP32 accuracy on held-out movies should reach 82 % (warning if not).

With user checkpoints the report still runs, but its data are English Rotten Tomatoes reviews.
"""
import functools
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

from . import cache, data, export_onnx
from .data import Sources, build_data, read_jsonl
from .export_onnx import TokenizedTexts, build_onnx, open_session
from reviewlens.local.paths import REPORTS_DIR
from .quantize import build_quantized, gate

log = logging.getLogger(__name__)

FP32_ACCURACY_TARGET = 0.82
EMBEDDING_TEXTS = 2000
NEIGHBOURS = 10
VARIANTS = ("fp32", "int8", "qdq")


@functools.cache
def build_report(sources: Sources) -> dict:
    """Return the accuracy report (built unless cached, exposed as build/reports/accuracy.json); print its summary."""
    data_dir = build_data(sources)
    exported = build_onnx(sources)
    quantized = build_quantized(sources)
    step_dir = cache.run_step(
        "report", lambda out: write_report(exported, quantized, data_dir, out / "accuracy.json"),
        inputs=[data_dir, *exported.values(), *quantized.values()],
        sources=[sys.modules[__name__], data, export_onnx, *export_onnx.TOKEN_PATH], params={"onnxruntime": ort.__version__})
    cache.expose(step_dir, REPORTS_DIR)
    report = json.loads((step_dir / "accuracy.json").read_text())
    print_summary(report)
    return report


def write_report(exported: dict[str, Path], quantized: dict[str, Path], data_dir: Path, path: Path) -> None:
    """Measure every artifact and write the report with the serving decisions to `path`."""
    def artifacts(kind: str) -> dict[str, Path]:
        return {variant: (exported if variant == "fp32" else quantized)[kind] / f"model_{variant}.onnx"
                for variant in VARIANTS}

    report = {
        "classifier": classifier_report(exported["classifier"], artifacts("classifier"), data_dir),
        "embedder": embedder_report(exported["embedder"], artifacts("embedder"), data_dir),
    }
    path.write_text(json.dumps(report, indent=1))


def classifier_report(model_dir: Path, artifacts: dict[str, Path], data_dir: Path) -> dict:
    """Held-out accuracy and agreement with FP32 of each classifier artifact, and the gate decision."""
    held_out = read_jsonl(data_dir / "test.jsonl")
    labels = np.array([review["label"] for review in held_out])
    sentiment = data.sentiment_of_classes(json.loads((model_dir / "labels.json").read_text()))
    sentiment_of_class = None if sentiment is None else np.array(sentiment)
    batches = TokenizedTexts(model_dir, [review["text"] for review in held_out])

    report = {"held_out": {"reviews": len(held_out), "movies": len({r["movie_name"] for r in held_out})}}
    for variant, path in artifacts.items():
        logits, texts_per_s = _timed_run(batches, path)
        predictions = logits.argmax(1)
        entry = {"file": path.name, "texts_per_s": texts_per_s}
        if sentiment_of_class is not None:
            entry["accuracy"] = float((sentiment_of_class[predictions] == labels).mean())
        if variant == "fp32":
            fp32_predictions = predictions
        else:
            entry["agreement"] = float((predictions == fp32_predictions).mean())
        report[variant] = entry

    int8_metrics = {"agreement": report["int8"]["agreement"]}
    if sentiment_of_class is not None:
        int8_metrics["accuracy_drop_points"] = 100 * (report["fp32"]["accuracy"] - report["int8"]["accuracy"])
    report["gate"] = gate("classifier", int8_metrics)
    report["served"] = "int8" if report["gate"]["passed"] else "fp32"
    report["fp32_accuracy_target"] = FP32_ACCURACY_TARGET
    return report


def embedder_report(model_dir: Path, artifacts: dict[str, Path], data_dir: Path) -> dict:
    """Cosine and top-10 neighbour agreement to FP32 of each INT8 embedder artifact, and the gate decision."""
    batches = TokenizedTexts(model_dir, data.embedding_eval_texts(data_dir, EMBEDDING_TEXTS))
    report = {"texts": batches.count}
    for variant, path in artifacts.items():
        embeddings, texts_per_s = _timed_run(batches, path)
        entry = {"file": path.name, "texts_per_s": texts_per_s}
        if variant == "fp32":
            reference, reference_neighbours = embeddings, _nearest(embeddings)
        else:
            cosine = (embeddings * reference).sum(1) / (
                np.linalg.norm(embeddings, axis=1) * np.linalg.norm(reference, axis=1))
            kept = [len(np.intersect1d(a, b)) for a, b in zip(_nearest(embeddings), reference_neighbours)]
            entry.update(cosine_mean=float(cosine.mean()), cosine_min=float(cosine.min()),
                         top10_agreement=float(np.mean(kept) / NEIGHBOURS))
        report[variant] = entry

    report["gate"] = gate("embedder", report["int8"])
    report["served"] = "int8" if report["gate"]["passed"] else "fp32"
    return report


def print_summary(report: dict) -> None:
    """Print one line per artifact, and a loud warning for every model that falls back to FP32."""
    classifier = report["classifier"]
    held_out = classifier["held_out"]
    for variant in VARIANTS:
        entry = classifier[variant]
        parts = []
        if "accuracy" in entry:
            parts.append(f"held-out accuracy {100 * entry['accuracy']:.2f} %")
            if variant == "fp32":
                parts[-1] += f" ({held_out['reviews']} reviews of {held_out['movies']} unseen movies)"
            else:
                parts[-1] += f" ({100 * (entry['accuracy'] - classifier['fp32']['accuracy']):+.2f} pt)"
        if "agreement" in entry:
            parts.append(f"agreement with fp32 {100 * entry['agreement']:.2f} %")
        parts.append(f"{entry['texts_per_s']:.0f} texts/s")
        print(f"classifier {variant:<4}  {', '.join(parts)}{_role(classifier, variant)}")

    embedder = report["embedder"]
    print(f"embedder   fp32  reference on {embedder['texts']} review texts, "
          f"{embedder['fp32']['texts_per_s']:.0f} texts/s{_role(embedder, 'fp32')}")
    for variant in ("int8", "qdq"):
        entry = embedder[variant]
        print(f"embedder   {variant:<4}  cosine to fp32 mean {entry['cosine_mean']:.4f} min {entry['cosine_min']:.4f}, "
              f"top-{NEIGHBOURS} agreement {entry['top10_agreement']:.3f}, "
              f"{entry['texts_per_s']:.0f} texts/s{_role(embedder, variant)}")

    for kind in ("classifier", "embedder"):
        model_gate = report[kind]["gate"]
        if not model_gate["passed"]:
            log.warning("WARNING: the %s INT8 artifact misses its gate (%s: %s); the CPU serves FP32", kind,
                        model_gate["rule"], {k: v for k, v in model_gate.items() if k not in ("rule", "passed")})
    fp32_accuracy = classifier["fp32"].get("accuracy")
    if fp32_accuracy is not None and fp32_accuracy < classifier["fp32_accuracy_target"]:
        log.warning("WARNING: classifier accuracy on held-out Rotten Tomatoes movies %.2f %% is below the %.0f %% target",
                    100 * fp32_accuracy, 100 * classifier["fp32_accuracy_target"])


def _role(model_report: dict, variant: str) -> str:
    if variant == "qdq":
        return "  (TensorRT form)"
    return "  <- served" if model_report["served"] == variant else ""


def _timed_run(batches: TokenizedTexts, path: Path) -> tuple[np.ndarray, float]:
    session = open_session(path)
    session.run(None, batches.batches[0][1])  # the first run allocates; keep it out of the timing
    started = time.perf_counter()
    outputs = batches.run(session)
    return outputs, round(batches.count / (time.perf_counter() - started), 1)


def _nearest(embeddings: np.ndarray) -> np.ndarray:
    """Indices of each row's NEIGHBOURS most similar other rows (cosine; rows are L2-normalised)."""
    similarity = embeddings @ embeddings.T
    np.fill_diagonal(similarity, -np.inf)
    return np.argpartition(-similarity, NEIGHBOURS, axis=1)[:, :NEIGHBOURS]
