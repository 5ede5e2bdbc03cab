"""How to pad token rows before the served classifier: texts/s of each scheme, in process.

    python perf/bench_padding.py [--texts 1000] [--repeats 2] [--chunk-sizes 16,32,64] [--quick]

Runs the served classifier ONNX (model_repository/classifier/1/model.onnx) with the served ONNX
Runtime settings on real reviews tokenized as the served tokenizer does (ensemble/tokens.py), and
compares:
  fixed      rows in arrival order, batches of 32, every row padded to the tokenizer's max_length;
  arrival    rows in arrival order, batches of 32, each padded to its own longest row;
  batch128   each group of 128 rows (one full dynamic batch: max_batch_size) padded to its longest,
             which is what the classifier would run if it did not re-pad;
  sorted-N   what the served classifier does: each group of 128 rows run through
             `run_length_sorted` in chunks of N = 16, 32, 64 (the served value is rows_per_chunk);
  sorted-all the whole set length-sorted in chunks of 32: an offline bound no server batch reaches.
The served parameters (rows_per_chunk, intra_op_threads, max_batch_size) are read from Triton's
model-config API: a tritonserver loading only the classifier is started and stopped first.
Padding time is inside the timed region (it is part of every scheme). Repeats are interleaved and
the best is kept, so a background blip hits one repeat of one scheme, not a whole scheme.
Writes padding.json, padding.md and padding.png to perf/results/ (build/perf-smoke/ with --quick).
"""
import os
import time

import numpy as np
import onnxruntime as ort

from harness import results
from harness.baselines import sample_reviews
from harness.server import model_parameters, served_file, served_tokenizer, triton
from reviewlens.ensemble import interface as api
from reviewlens.ensemble.batching import pad_chunk, run_length_sorted

ARRIVAL_BATCH = 32
DESCRIPTIONS = {
    "fixed": "arrival order, batches of 32, padded to max_length",
    "arrival": "arrival order, batches of 32, padded to each batch's longest",
    "batch128": "each 128-row dynamic batch padded to its longest (no re-padding)",
    "sorted-all": "whole set length-sorted, chunks of 32 (offline bound)",
}


def served_session(intra_op_threads: int) -> ort.InferenceSession:
    """The classifier graph with the options ensemble/onnx_model.py gives it in the server."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = intra_op_threads or os.cpu_count()
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(served_file(api.CLASSIFIER, "model.onnx")), options,
                                providers=["CPUExecutionProvider"])


def groups(rows: list, size: int) -> list[list]:
    """Consecutive slices of `size` rows (the last may be shorter)."""
    return [rows[i:i + size] for i in range(0, len(rows), size)]


def strategies(max_length: int, pad_id: int, dynamic_batch: int, chunk_sizes: list[int]) -> dict:
    """name -> function(rows, run) returning the outputs in row order."""
    def padded(size: int, width: int | None = None):
        return lambda rows, run: np.concatenate([run(*pad_chunk(batch, pad_id, width)) for batch in groups(rows, size)])

    def sorted_within_batch(chunk: int):
        return lambda rows, run: np.concatenate([run_length_sorted(batch, run, chunk)
                                                 for batch in groups(rows, dynamic_batch)])

    schemes = {"fixed": padded(ARRIVAL_BATCH, max_length), "arrival": padded(ARRIVAL_BATCH),
               "batch128": padded(dynamic_batch)}
    schemes.update({f"sorted-{chunk}": sorted_within_batch(chunk) for chunk in chunk_sizes})
    schemes["sorted-all"] = lambda rows, run: run_length_sorted(rows, run, ARRIVAL_BATCH)
    return schemes


def describe(name: str) -> str:
    """One line on what a scheme does."""
    if name.startswith("sorted-") and name != "sorted-all":
        return f"each 128-row dynamic batch length-sorted, chunks of {name.split('-')[1]} (run_length_sorted)"
    return DESCRIPTIONS[name]


def measure(args, out) -> dict:
    with triton("padding", only=(api.CLASSIFIER,)) as server:
        served = model_parameters(server.grpc_url, api.CLASSIFIER)
    reviews = sample_reviews(100 if args.quick else args.texts)
    tokenizer = served_tokenizer(api.SENTIMENT_TOKENIZER)
    rows = tokenizer.rows(reviews.texts)
    session = served_session(int(served["intra_op_threads"]))
    output_name = session.get_outputs()[0].name
    computed_tokens = 0

    def run(input_ids, attention_mask):
        nonlocal computed_tokens
        computed_tokens += input_ids.size
        return session.run([output_name], {api.INPUT_IDS.name: input_ids, api.ATTENTION_MASK.name: attention_mask})[0]

    dynamic_batch = int(served["max_batch_size"])
    schemes = strategies(tokenizer.max_length, tokenizer.pad_id, dynamic_batch,
                         [int(c) for c in args.chunk_sizes.split(",")])
    for scheme in schemes.values():  # ONNX Runtime allocates per new shape: warm every scheme up
        scheme(rows[:dynamic_batch], run)
    best_seconds = {name: float("inf") for name in schemes}
    outputs, tokens = {}, {}
    for _ in range(1 if args.quick else args.repeats):
        for name, scheme in schemes.items():
            computed_tokens = 0
            start = time.perf_counter()
            outputs[name] = scheme(rows, run)
            best_seconds[name] = min(best_seconds[name], time.perf_counter() - start)
            tokens[name] = computed_tokens
            print(f"  {name:10s} {len(rows) / best_seconds[name]:7.1f} texts/s", flush=True)

    real_tokens = sum(len(r) for r in rows)
    reference, fixed_rate = outputs["fixed"], len(rows) / best_seconds["fixed"]
    return {
        "data_source": reviews.source,
        "texts": len(rows),
        "model": results.repo_relative(served_file(api.CLASSIFIER, "model.onnx")),
        "threads": session.get_session_options().intra_op_num_threads,
        "max_length": tokenizer.max_length,
        "served_rows_per_chunk": int(served["rows_per_chunk"]),
        "repeats": 1 if args.quick else args.repeats,
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
            # Padding is masked: an FP32 or per-token INT8 graph gives the same labels in every
            # scheme; a graph whose answer depends on its batch would not, which this shows.
            "label_agreement": float((outputs[name].argmax(1) == reference.argmax(1)).mean()),
            "max_abs_logit_diff": float(np.abs(outputs[name] - reference).max()),
        } for name in schemes],
    }


def markdown(report: dict) -> str:
    """The report as a markdown table with the served scheme marked."""
    served = f"sorted-{report['served_rows_per_chunk']}"
    lines = results.header(
        report, "Padding schemes for the served classifier (in process, ONNX Runtime)",
        f"{report['texts']} reviews from `{report['data_source']}`, served tokenizer (max_length "
        f"{report['max_length']}), `{report['model']}` with {report['threads']} intra-op threads, best of "
        f"{report['repeats']} interleaved repeats;")
    lines += ["| scheme | what | texts/s | vs fixed | tokens computed / real | labels equal to fixed | max abs logit diff |",
              "|---|---|---:|---:|---:|---:|---:|"]
    for scheme in report["schemes"]:
        marker = " (served)" if scheme["name"] == served else ""
        lines.append(f"| {scheme['name']}{marker} | {describe(scheme['name'])} | {scheme['texts_per_s']:.1f} | "
                     f"{scheme['vs_fixed']:.2f}x | {scheme['padding_factor']:.2f} | {scheme['label_agreement']:.2%} | "
                     f"{scheme['max_abs_logit_diff']:.2e} |")
    served_figures = next(s for s in report["schemes"] if s["name"] == served)
    best = max(report["schemes"], key=lambda s: s["texts_per_s"])
    best_online = max((s for s in report["schemes"] if s["name"] != "sorted-all"), key=lambda s: s["texts_per_s"])
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
                  "depends on the other rows and the padding of its batch (as per-batch dynamic INT8, served "
                  "before per-token INT8, did).", ""]
    return "\n".join(lines)


def plot(report: dict, path) -> None:
    results.bar_chart(path, "Padding schemes: classifier texts/s (in process)",
                      [("texts/s", {s["name"]: s["texts_per_s"] for s in report["schemes"]}),
                       ("tokens computed / real", {s["name"]: s["padding_factor"] for s in report["schemes"]})])


def arguments(parser) -> None:
    parser.add_argument("--texts", type=int, default=1000, help="reviews to use (at most; default 1000; --quick 100)")
    parser.add_argument("--repeats", type=int, default=2, help="timed passes per scheme, best kept (default 2; --quick 1)")
    parser.add_argument("--chunk-sizes", default="16,32,64", help="chunk sizes for length-sorted runs (default 16,32,64)")


if __name__ == "__main__":
    results.main("padding", measure, markdown, plot, arguments)
