"""INT8 for the CPU encoders: FP32, per-batch INT8 (before) and per-token INT8 (now), side by side, in process.

    python perf/bench_int8.py --per-batch-classifier FILE --per-batch-embedder FILE
                              [--texts 512] [--batch-sizes 1,8,32,64] [--repeats 3] [--quick]

The build no longer makes the per-batch graphs (ONNX Runtime dynamic quantization, one activation
scale per batch tensor): pass the model_int8.onnx files of a build from before the change. FP32 and
per-token INT8 are the build's (build/models/<model>/model_fp32.onnx, model_int8.onnx). Each graph
runs with the options the serving step gives it (2 intra-op threads, every graph optimization) on
held-out reviews tokenized by the served tokenizer, in length-sorted batches of each size, as the
served step chunks a dynamic batch. Repeats are interleaved and the best is kept, so a background
blip hits one repeat of one variant, not a whole variant.

Measured per model, batch size and variant: texts/s; per variant: how far a text's output moves
between batch size 1 and the larger ones (max abs difference, classifier label flips) and its
fidelity to FP32 on these texts (label agreement, embedding cosine).
Writes int8.json, int8.md and int8.png to perf/results/ (build/perf-smoke/ with --quick).
"""
import time
from pathlib import Path

import numpy as np

from harness import results
from harness.baselines import sample_reviews
from reviewlens.build_engines.export_onnx import TokenizedTexts, open_session
from reviewlens.local.paths import MODELS_DIR

MODELS = {"classifier": "sentiment (classifier)", "embedder": "embed (encoder)"}
VARIANTS = {"fp32": "FP32", "per_batch": "per-batch INT8 (before)", "per_token": "per-token INT8 (now)"}


def measure(args, out) -> dict:
    texts = sample_reviews(64 if args.quick else args.texts)
    batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    models = {}
    for model in MODELS:
        files = {"fp32": MODELS_DIR / model / "model_fp32.onnx",
                 "per_batch": getattr(args, f"per_batch_{model}"),
                 "per_token": MODELS_DIR / model / "model_int8.onnx"}
        models[model] = measure_model(model, files, texts.texts, batch_sizes, 1 if args.quick else args.repeats)
    return {"data_source": texts.source, "texts": len(texts.texts), "batch_sizes": batch_sizes,
            "repeats": 1 if args.quick else args.repeats, "models": models}


def measure_model(model: str, files: dict[str, Path], texts: list[str], batch_sizes: list[int], repeats: int) -> dict:
    """texts/s per batch size and variant, batch invariance and fidelity to FP32 per variant."""
    sessions = {variant: open_session(path) for variant, path in files.items()}
    batches = {size: TokenizedTexts(MODELS_DIR / model, texts, batch_size=size) for size in batch_sizes}
    outputs = {variant: {size: batches[size].run(session) for size in batch_sizes}  # also warms every shape up
               for variant, session in sessions.items()}
    best = {(variant, size): float("inf") for variant in sessions for size in batch_sizes}
    for _ in range(repeats):
        for size in batch_sizes:
            for variant, session in sessions.items():
                start = time.perf_counter()
                batches[size].run(session)
                best[variant, size] = min(best[variant, size], time.perf_counter() - start)
            print(f"  {model} batch {size:3d}: " + ", ".join(
                f"{variant} {len(texts) / best[variant, size]:6.1f}" for variant in sessions) + " texts/s", flush=True)

    single = min(batch_sizes)
    reference = outputs["fp32"][single]
    variants = {}
    for variant in sessions:
        alone = outputs[variant][single]
        entry = {"file": results.file_digest(files[variant]),
                 "texts_per_s": {str(size): len(texts) / best[variant, size] for size in batch_sizes},
                 "max_abs_diff_to_batch_1": max(float(np.abs(outputs[variant][size] - alone).max()) for size in batch_sizes)}
        if model == "classifier":
            entry["label_flips_vs_batch_1"] = max(int((outputs[variant][size].argmax(1) != alone.argmax(1)).sum())
                                                  for size in batch_sizes)
            entry["agreement_with_fp32"] = float((alone.argmax(1) == reference.argmax(1)).mean())
        else:
            entry["cosine_to_fp32_mean"] = float((alone * reference).sum(1).mean())  # rows are L2-normalised
        variants[variant] = entry
    return {"variants": variants}


def markdown(report: dict) -> str:
    """Speed tables (texts/s and ratios) per model, then batch invariance and fidelity per variant."""
    lines = results.header(
        report, "INT8 for the CPU encoders: FP32, per-batch INT8 (before), per-token INT8 (now)",
        f"{report['texts']} reviews from `{report['data_source']}`, served tokenizer, length-sorted batches, "
        f"served ONNX Runtime options (2 intra-op threads), best of {report['repeats']} interleaved repeats;")
    for model, title in MODELS.items():
        variants = report["models"][model]["variants"]
        lines += [f"## {title}", "",
                  "| batch size | FP32 texts/s | per-batch INT8 texts/s | per-token INT8 texts/s | "
                  "per-token / per-batch | per-token / FP32 | per-batch / FP32 |",
                  "|---:|---:|---:|---:|---:|---:|---:|"]
        for size in report["batch_sizes"]:
            rate = {variant: variants[variant]["texts_per_s"][str(size)] for variant in VARIANTS}
            lines.append(f"| {size} | {rate['fp32']:.1f} | {rate['per_batch']:.1f} | {rate['per_token']:.1f} | "
                         f"{rate['per_token'] / rate['per_batch']:.2f}x | {rate['per_token'] / rate['fp32']:.2f}x | "
                         f"{rate['per_batch'] / rate['fp32']:.2f}x |")
        lines += ["", "| variant | max abs output difference, batch 1 vs larger | "
                  + ("label flips vs batch 1 | label agreement with FP32 |" if model == "classifier"
                     else "mean cosine to FP32 |"),
                  "|---|---:|---:|" + ("---:|" if model == "classifier" else "")]
        for variant, name in VARIANTS.items():
            entry = variants[variant]
            fidelity = (f"{entry['label_flips_vs_batch_1']} | {entry['agreement_with_fp32']:.2%} |"
                        if model == "classifier" else f"{entry['cosine_to_fp32_mean']:.4f} |")
            lines.append(f"| {name} | {entry['max_abs_diff_to_batch_1']:.1e} | {fidelity}")
        lines.append("")
    return "\n".join(lines)


def plot(report: dict, path) -> None:
    results.line_chart(path, "INT8 for the CPU encoders: texts/s by batch size (in process)", "batch size", [
        (f"{title} texts/s", {name: (report["batch_sizes"],
                                     [report["models"][model]["variants"][variant]["texts_per_s"][str(size)]
                                      for size in report["batch_sizes"]])
                              for variant, name in VARIANTS.items()})
        for model, title in MODELS.items()])


def arguments(parser) -> None:
    parser.add_argument("--per-batch-classifier", type=Path, required=True,
                        help="the classifier's model_int8.onnx from a build before per-token INT8")
    parser.add_argument("--per-batch-embedder", type=Path, required=True,
                        help="the embedder's model_int8.onnx from a build before per-token INT8")
    parser.add_argument("--texts", type=int, default=512, help="reviews to use (default 512; --quick 64)")
    parser.add_argument("--batch-sizes", default="1,8,32,64", help="batch sizes (default 1,8,32,64; the smallest is the reference for invariance)")
    parser.add_argument("--repeats", type=int, default=3, help="timed passes per variant and batch size, best kept (default 3; --quick 1)")


if __name__ == "__main__":
    results.main("int8", measure, markdown, plot, arguments)
