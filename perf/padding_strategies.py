"""How to pad token rows before the served classifier: texts/s of each scheme, in process (no Triton).

    python perf/padding_strategies.py [--texts 1000] [--repeats 2]

Runs the served classifier ONNX (model_repository/classifier/1/model.onnx) with the served ONNX
Runtime settings on real reviews tokenized by the served tokenizer, and compares:
  fixed      rows in arrival order, batches of 32, every row padded to the tokenizer's max_length;
  arrival    rows in arrival order, batches of 32, each padded to its own longest row;
  batch128   each group of 128 rows (one full dynamic batch: max_batch_size) padded to its longest,
             which is what the classifier would run if it did not re-pad;
  sorted-N   what the served classifier does: each group of 128 rows run through
             `run_length_sorted` in chunks of N = 16, 32, 64 (the served value is rows_per_chunk);
  sorted-all the whole set length-sorted in chunks of 32: an offline bound no server batch reaches.
Padding time is inside the timed region (it is part of every scheme). Repeats are interleaved and
the best is kept, so a background blip hits one repeat of one scheme, not a whole scheme.
Writes perf/results/padding.json and perf/results/padding.md.
"""
import argparse
import json
import os
import re
import sys
import time

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer

from reviewlens.build_engines.paths import MODEL_REPOSITORY
from reviewlens.ensemble.batching import pad_chunk, run_length_sorted
from reviews import load_reviews
from throughput import RESULTS_DIR, OtherLoad, machine_info

ARRIVAL_BATCH = 32
DYNAMIC_BATCH = 128  # the classifier's max_batch_size: the most rows one execute() receives


def served_rows_per_chunk() -> int:
    """The classifier's `rows_per_chunk` parameter in its config.pbtxt."""
    config = (MODEL_REPOSITORY / "classifier" / "config.pbtxt").read_text()
    return int(re.search(r'key: "rows_per_chunk" value: \{ string_value: "(\d+)" \}', config).group(1))


def served_session() -> ort.InferenceSession:
    """The classifier graph with the options ensemble/onnx_model.py gives it in the server."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = os.cpu_count()
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(MODEL_REPOSITORY / "classifier" / "1" / "model.onnx"), options,
                                providers=["CPUExecutionProvider"])


def tokenize(texts: list[str]) -> tuple[list[np.ndarray], int, int]:
    """Token rows (unpadded, truncated like the served tokenizer), max_length and pad id."""
    version_dir = MODEL_REPOSITORY / "sentiment_tokenizer" / "1"
    settings = json.loads((version_dir / "serving.json").read_text())
    tokenizer = Tokenizer.from_file(str(version_dir / "tokenizer.json"))
    tokenizer.enable_truncation(settings["max_length"])
    tokenizer.no_padding()
    rows = [np.array(e.ids, dtype=np.int64) for e in tokenizer.encode_batch(texts)]
    return rows, settings["max_length"], settings.get("pad_id", 0)


def groups(rows: list, size: int) -> list[list]:
    """Consecutive slices of `size` rows (the last may be shorter)."""
    return [rows[i:i + size] for i in range(0, len(rows), size)]


def strategies(max_length: int, pad_id: int, chunk_sizes: list[int]) -> dict:
    """name -> function(rows, run) returning the outputs in row order."""
    def fixed(rows, run):
        return np.concatenate([run(*pad_chunk(batch, pad_id, width=max_length)) for batch in groups(rows, ARRIVAL_BATCH)])

    def arrival(rows, run):
        return np.concatenate([run(*pad_chunk(batch, pad_id)) for batch in groups(rows, ARRIVAL_BATCH)])

    def batch128(rows, run):
        return np.concatenate([run(*pad_chunk(batch, pad_id)) for batch in groups(rows, DYNAMIC_BATCH)])

    def sorted_within_batch(chunk):
        def scheme(rows, run):
            return np.concatenate([run_length_sorted(batch, run, chunk) for batch in groups(rows, DYNAMIC_BATCH)])
        return scheme

    def sorted_all(rows, run):
        return run_length_sorted(rows, run, ARRIVAL_BATCH)

    schemes = {"fixed": fixed, "arrival": arrival, "batch128": batch128}
    schemes.update({f"sorted-{chunk}": sorted_within_batch(chunk) for chunk in chunk_sizes})
    schemes["sorted-all"] = sorted_all
    return schemes


DESCRIPTIONS = {
    "fixed": "arrival order, batches of 32, padded to max_length",
    "arrival": "arrival order, batches of 32, padded to each batch's longest",
    "batch128": "each 128-row dynamic batch padded to its longest (no re-padding)",
    "sorted-all": "whole set length-sorted, chunks of 32 (offline bound)",
}


def describe(name: str) -> str:
    """One line on what a scheme does."""
    if name.startswith("sorted-") and name != "sorted-all":
        return f"each 128-row dynamic batch length-sorted, chunks of {name.split('-')[1]} (run_length_sorted)"
    return DESCRIPTIONS[name]


def markdown(report: dict) -> str:
    """The report as a markdown table with the served scheme marked."""
    served = f"sorted-{report['served_rows_per_chunk']}"
    best = max(report["schemes"], key=lambda s: s["texts_per_s"])
    lines = [
        "# Padding schemes for the served classifier (in process, ONNX Runtime)",
        "",
        f"{report['texts']} reviews from `{report['data_source']}`, served tokenizer (max_length "
        f"{report['max_length']}), `{report['model']}` with {report['threads']} intra-op threads; "
        f"{report['machine']['cores']} cores ({report['machine']['cpu_model']}), {report['machine']['date']}. "
        f"Best of {report['repeats']} interleaved repeats. Generated by `perf/padding_strategies.py`.",
        f"Other processes used {report['machine']['other_processes_cpu_share']:.0%} of the CPU meanwhile.",
        "",
        "| scheme | what | texts/s | vs fixed | tokens computed / real | labels equal to fixed | max abs logit diff |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for scheme in report["schemes"]:
        marker = " (served)" if scheme["name"] == served else ""
        lines.append(f"| {scheme['name']}{marker} | {describe(scheme['name'])} | {scheme['texts_per_s']:.1f} | "
                     f"{scheme['vs_fixed']:.2f}x | {scheme['padding_factor']:.2f} | {scheme['label_agreement']:.2%} | "
                     f"{scheme['max_abs_logit_diff']:.2e} |")
    served_figures = next(s for s in report["schemes"] if s["name"] == served)
    online = [s for s in report["schemes"] if s["name"] != "sorted-all"]
    best_online = max(online, key=lambda s: s["texts_per_s"])
    lines += [
        "",
        f"Served scheme `{served}`: {served_figures['texts_per_s']:.1f} texts/s. Fastest scheme a server batch "
        f"can use: `{best_online['name']}` ({best_online['texts_per_s']:.1f} texts/s); fastest overall: "
        f"`{best['name']}` ({best['texts_per_s']:.1f} texts/s). Mean review length "
        f"{report['mean_tokens']:.1f} tokens, longest {report['longest_tokens']}.",
        "",
    ]
    if any(s["label_agreement"] < 1 for s in report["schemes"]):
        lines += ["Labels differ between schemes although padding is masked: the graph's answer for a text "
                  "depends on the other rows and the padding of its batch (dynamic INT8 quantizes activations "
                  "with one scale per batch tensor).", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--texts", type=int, default=1000, help="reviews to use (at most; default 1000)")
    parser.add_argument("--repeats", type=int, default=2, help="timed passes per scheme, best kept (default 2)")
    parser.add_argument("--chunk-sizes", default="16,32,64", help="chunk sizes for length-sorted runs")
    args = parser.parse_args()
    other_load = OtherLoad()

    reviews = load_reviews(args.texts)
    rows, max_length, pad_id = tokenize(reviews.texts)
    session = served_session()
    output_name = session.get_outputs()[0].name
    computed_tokens = 0

    def run(input_ids, attention_mask):
        nonlocal computed_tokens
        computed_tokens += input_ids.size
        return session.run([output_name], {"input_ids": input_ids, "attention_mask": attention_mask})[0]

    schemes = strategies(max_length, pad_id, [int(c) for c in args.chunk_sizes.split(",")])
    # Warm-up: ONNX Runtime allocates per new shape; do it for every scheme on a small slice.
    for scheme in schemes.values():
        scheme(rows[:DYNAMIC_BATCH], run)

    best_seconds = {name: float("inf") for name in schemes}
    outputs, tokens = {}, {}
    for _ in range(args.repeats):
        for name, scheme in schemes.items():
            computed_tokens = 0
            start = time.perf_counter()
            outputs[name] = scheme(rows, run)
            best_seconds[name] = min(best_seconds[name], time.perf_counter() - start)
            tokens[name] = computed_tokens
            print(f"  {name:10s} {len(rows) / best_seconds[name]:7.1f} texts/s", flush=True)

    real_tokens = sum(len(r) for r in rows)
    reference = outputs["fixed"]
    fixed_rate = len(rows) / best_seconds["fixed"]
    report = {
        "machine": machine_info(),
        "data_source": reviews.source,
        "texts": len(rows),
        "model": str(MODEL_REPOSITORY / "classifier" / "1" / "model.onnx"),
        "threads": os.cpu_count(),
        "max_length": max_length,
        "served_rows_per_chunk": served_rows_per_chunk(),
        "repeats": args.repeats,
        "mean_tokens": real_tokens / len(rows),
        "longest_tokens": max(len(r) for r in rows),
        "schemes": [{
            "name": name,
            "description": describe(name),
            "seconds": best_seconds[name],
            "texts_per_s": len(rows) / best_seconds[name],
            "vs_fixed": len(rows) / best_seconds[name] / fixed_rate,
            "computed_tokens": tokens[name],
            "padding_factor": tokens[name] / real_tokens,
            # Padding is masked: an FP32 graph gives the same labels in every scheme. A graph that
            # quantizes activations per batch tensor (dynamic INT8) does not, which this shows.
            "label_agreement": float((outputs[name].argmax(1) == reference.argmax(1)).mean()),
            "max_abs_logit_diff": float(np.abs(outputs[name] - reference).max()),
        } for name in schemes],
    }
    report["machine"]["other_processes_cpu_share"] = other_load.share()
    if report["machine"]["other_processes_cpu_share"] > 0.05:
        print(f"WARNING: other processes used {report['machine']['other_processes_cpu_share']:.0%} of the CPU "
              "during this run; its figures are skewed, run again on an idle machine", file=sys.stderr)
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    (RESULTS_DIR / "padding.json").write_text(json.dumps(report, indent=2) + "\n")
    (RESULTS_DIR / "padding.md").write_text(markdown(report))
    print(markdown(report))


if __name__ == "__main__":
    main()
