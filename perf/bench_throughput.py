"""Texts per second of the served `sentiment` and `embed` ensembles against in-process baselines.

    python perf/bench_throughput.py [--texts 2000] [--concurrency 1,8,32] [--batch-loads 1,4] [--quick]

On the same real reviews, one measurement after another (the machine has 2 cores, so nothing runs
beside a measurement):
  A. transformers `pipeline("text-classification")` on the fine-tuned checkpoint, torch FP32,
     batch 32, 2 threads, in this process;
  B. `SentenceTransformer(...).encode(batch_size=32)` on the served embedder's source model;
  then tritonserver is started (response cache off) and each ensemble is driven through the
  project's client (SyncClient) by N closed-loop callers sending one text per request (the online
  case) at N = 1, 8, 32, and by callers sending 32 texts per request at N = 1, 4. Each text is sent
  once per row; a row stops early after --time-limit seconds (reported if it does).

The served answers are compared with the baselines' (label agreement, embedding cosine) so the
speed is shown at the accuracy it is served with, and Triton's inference statistics are read
around every row: they prove each text was computed (no cache hit) and show where the time goes.
Writes throughput.json, .md and .png to perf/results/ (build/perf-smoke/ with --quick).
"""
import functools
import time
from dataclasses import asdict, dataclass, field, replace

import numpy as np

from harness import results
from harness.baselines import BATCH, THREADS, classifier_checkpoint, classifier_pipeline, sample_reviews, \
    sentence_transformer
from harness.load import closed_loop
from harness.server import breakdown, inference_counters, served_file, served_tokenizer, server_version, triton
from reviewlens.client.settings import Settings
from reviewlens.client.sync import SyncClient
from reviewlens.ensemble import interface as api

TARGETS = {api.SENTIMENT.name: 3.0, api.EMBED.name: 2.5}
# The composing model that does the heavy work in each ensemble: its counters must match the texts sent.
COMPUTE_MODEL = {api.SENTIMENT.name: api.CLASSIFIER.name, api.EMBED.name: api.ENCODER.name}


@dataclass
class Row:
    """One measured configuration: a baseline or a Triton load pattern."""
    system: str
    model: str
    texts_per_request: int
    concurrency: int
    texts: int
    seconds: float
    texts_per_s: float
    p50_ms: float | None = None
    p95_ms: float | None = None
    vs_baseline: float | None = None
    label_agreement: float | None = None
    accuracy: float | None = None
    cosine_mean: float | None = None
    cosine_min: float | None = None
    server: dict = field(default_factory=dict)


def timed(system: str, model: str, compute, texts: list[str]) -> tuple[Row, object]:
    """One baseline pass over all texts after a short warm-up."""
    compute(texts[:2 * BATCH])
    start = time.perf_counter()
    answers = compute(texts)
    seconds = time.perf_counter() - start
    return Row(system, model, BATCH, 1, len(texts), seconds, len(texts) / seconds), answers


def agreement(labels: list[str], reference: list[str]) -> float:
    """Share of labels equal to the reference labels."""
    return float(np.mean([label == ref for label, ref in zip(labels, reference)]))


def accuracy(labels: list[str], truth: list[str]) -> float | None:
    """Share of labels equal to the critics' ones; None for a user checkpoint naming its labels otherwise."""
    return agreement(labels, truth) if set(labels) <= set(api.SENTIMENT_LABELS) else None


def measure_triton(url: str, client: SyncClient, model: str, texts: list[str], per_request: int, concurrency: int,
                   time_limit_s: float) -> tuple[Row, list]:
    """One Triton row: throughput, latency and server breakdown; the answers per text (None: not sent)."""
    call = ((lambda batch: [s.label for s in client.sentiment(batch)]) if model == api.SENTIMENT.name
            else (lambda batch: list(client.embed(batch))))
    requests = [texts[i:i + per_request] for i in range(0, len(texts), per_request)]
    before = inference_counters(url)
    load = closed_loop(call, requests, concurrency, time_limit_s)
    sent = sum(len(r) for r, answer in zip(requests, load.answers) if answer is not None)
    # Triton records a request's statistics just after sending its response: let the last ones land.
    settle_until, after = time.monotonic() + 5, inference_counters(url)
    while after[model]["inferences"] - before[model]["inferences"] < sent and time.monotonic() < settle_until:
        time.sleep(0.05)
        after = inference_counters(url)
    models = breakdown(before, after, load.wall_s)
    ensemble, compute = models.get(model, {}), models.get(COMPUTE_MODEL[model], {})
    # Without this check a cached answer or a silently failed request would inflate the figure.
    computed_every_text = (ensemble.get("inferences") == sent and compute.get("inferences") == sent
                           and ensemble.get("cache_hits", 0) == 0 and ensemble.get("failures", 0) == 0)
    answers = [a for answer, r in zip(load.answers, requests) for a in (answer or [None] * len(r))]
    return Row(f"Triton {model}", model, per_request, concurrency, sent, load.wall_s, sent / load.wall_s,
               p50_ms=load.latency_ms(50), p95_ms=load.latency_ms(95),
               server={"computed_every_text": computed_every_text, "time_limited": sent < len(texts),
                       "models": models}), answers


def run_triton(texts, truth, pipeline_labels, st_embeddings, loads, time_limit_s) -> tuple[list[Row], str]:
    """Every (texts per request, concurrency) load on both ensembles, with what was served compared."""
    rows = []
    with triton("throughput") as server, SyncClient(server.grpc_url, replace(Settings(), batch_size=BATCH)) as client:
        for model in (api.SENTIMENT.name, api.EMBED.name):
            # Warm-up: first requests pay for lazy allocations in the stubs and ONNX Runtime.
            measure_triton(server.grpc_url, client, model, texts[:256], 1, 8, time_limit_s)
            for per_request, concurrency in loads:
                row, answers = measure_triton(server.grpc_url, client, model, texts, per_request, concurrency,
                                              time_limit_s)
                sent = [i for i, answer in enumerate(answers) if answer is not None]
                if model == api.SENTIMENT.name:
                    labels = [answers[i] for i in sent]
                    row.label_agreement = agreement(labels, [pipeline_labels[i] for i in sent])
                    row.accuracy = accuracy(labels, [truth[i] for i in sent])
                else:
                    served, expected = np.stack([answers[i] for i in sent]), st_embeddings[sent]
                    cosine = (served * expected).sum(1) / np.linalg.norm(served, axis=1) / np.linalg.norm(expected, axis=1)
                    row.cosine_mean, row.cosine_min = float(cosine.mean()), float(cosine.min())
                print(f"  {model:9s} {per_request:3d} text(s)/request  concurrency {concurrency:3d}: "
                      f"{row.texts_per_s:7.1f} texts/s  p50 {row.p50_ms:7.1f} ms  p95 {row.p95_ms:7.1f} ms"
                      f"  computed every text: {row.server['computed_every_text']}", flush=True)
                rows.append(row)
        return rows, server_version(server.grpc_url)


def bottleneck(row: Row) -> str:
    """One sentence on where the server spent the time of a row."""
    models = {name: figures for name, figures in row.server["models"].items() if name != row.model}
    busiest = max(models, key=lambda name: models[name]["busy_fraction"])
    figures = models[busiest]
    return (f"`{busiest}` busy {figures['busy_fraction']:.0%} of the wall time, "
            f"{figures['rows_per_execution']:.1f} rows per execution, "
            f"{figures['compute_ms_per_text']:.2f} ms compute per text, "
            f"{figures['queue_ms_per_request']:.1f} ms queue wait per request")


def measure(args, out) -> dict:
    reviews = sample_reviews(200 if args.quick else args.texts)
    texts = reviews.texts
    loads = ([(1, int(c)) for c in args.concurrency.split(",")] + [(BATCH, int(c)) for c in args.batch_loads.split(",")])
    max_length = {m.name: served_tokenizer(m).max_length for m in (api.SENTIMENT_TOKENIZER, api.EMBED_TOKENIZER)}
    print(f"{len(texts)} reviews from {reviews.source}\nbaseline A: transformers pipeline ...", flush=True)
    # The baselines' models are held by nothing once timed: freed before the server starts.
    pipeline_row, predictions = timed("transformers pipeline (torch FP32, batch 32)", api.SENTIMENT.name,
                                      classifier_pipeline(max_length[api.SENTIMENT_TOKENIZER.name]), texts)
    pipeline_labels = [p["label"] for p in predictions]
    pipeline_row.accuracy = accuracy(pipeline_labels, reviews.labels)
    print(f"  {pipeline_row.texts_per_s:.1f} texts/s\nbaseline B: sentence-transformers ...", flush=True)
    st_row, st_embeddings = timed("sentence-transformers encode (torch FP32, batch 32)", api.EMBED.name, functools.partial(
        sentence_transformer().encode, batch_size=BATCH, convert_to_numpy=True), texts)
    print(f"  {st_row.texts_per_s:.1f} texts/s\nTriton (response cache off) ...", flush=True)
    triton_rows, version = run_triton(texts, reviews.labels, pipeline_labels, st_embeddings, loads, args.time_limit)

    rows, targets = [], {}
    for baseline in (pipeline_row, st_row):
        model, baseline.vs_baseline = baseline.model, 1.0
        served = [row for row in triton_rows if row.model == model]
        for row in served:
            row.vs_baseline = row.texts_per_s / baseline.texts_per_s
        best = max(served, key=lambda row: row.texts_per_s)
        # The online case (one text per request) is reported on its own: batching clients do better.
        online = max((row for row in served if row.texts_per_request == 1), key=lambda row: row.texts_per_s)
        targets[model] = {"ratio": TARGETS[model], "met": best.vs_baseline >= TARGETS[model], "best_row": asdict(best),
                          "limit": bottleneck(best), "online_met": online.vs_baseline >= TARGETS[model],
                          "best_online_row": asdict(online), "online_limit": bottleneck(online)}
        rows += [baseline, *served]
    return {
        "triton_version": version, "data_source": reviews.source, "texts": len(texts),
        "settings": {"baseline_batch": BATCH, "torch_threads": THREADS,
                     "loads": [{"texts_per_request": t, "concurrency": c} for t, c in loads],
                     "time_limit_s": args.time_limit, "response_cache": False},
        "served": {"classifier_checkpoint": results.repo_relative(classifier_checkpoint()),
                   "classifier_onnx": results.file_digest(served_file(api.CLASSIFIER, "model.onnx")),
                   "encoder_onnx": results.file_digest(served_file(api.ENCODER, "model.onnx")),
                   "sentiment_max_length": max_length[api.SENTIMENT_TOKENIZER.name],
                   "embed_max_length": max_length[api.EMBED_TOKENIZER.name]},
        "rows": [asdict(row) for row in rows], "targets": targets,
    }


def markdown(report: dict) -> str:
    """Each ensemble beside its baseline, the targets, then the server's time per composing model."""
    lines = results.header(report, "Throughput: Triton ensembles vs in-process baselines",
                           f"{report['texts']} reviews from `{report['data_source']}`, Triton "
                           f"{report['triton_version']}, response cache off, each text sent once per row;")
    quality_columns = {api.SENTIMENT.name: "agreement with pipeline | accuracy vs review labels",
                       api.EMBED.name: "cosine to sentence-transformers (mean / min)"}
    percent = lambda value, none: f"{value:.2%}" if value is not None else none  # noqa: E731
    for model, quality in quality_columns.items():
        rows = [Row(**r) for r in report["rows"] if r["model"] == model]
        lines += [f"## {model}", "",
                  f"| system | texts/request | concurrency | texts/s | vs baseline | p50 ms | p95 ms | {quality} |",
                  "|---|---:|---:|---:|---:|---:|---:|" + "---|" * (quality.count("|") + 1)]
        for row in rows:
            quality_cells = (f"{percent(row.label_agreement, 'reference')} | {percent(row.accuracy, '-')}"
                             if model == api.SENTIMENT.name else
                             f"{row.cosine_mean:.4f} / {row.cosine_min:.4f}" if row.cosine_mean is not None else "reference")
            latency = f"{row.p50_ms:.1f} | {row.p95_ms:.1f}" if row.p50_ms is not None else "- | -"
            limited = " (time limit)" if row.server.get("time_limited") else ""
            lines.append(f"| {row.system} | {row.texts_per_request} | {row.concurrency} | {row.texts_per_s:.1f}{limited} | "
                         f"{row.vs_baseline:.2f}x | {latency} | {quality_cells} |")
        target = report["targets"][model]
        best, online = Row(**target["best_row"]), Row(**target["best_online_row"])
        verdict = lambda met: "met" if met else "not met"  # noqa: E731
        lines += ["", f"Target >= {target['ratio']}x the baseline: **{verdict(target['met'])}** (best: "
                  f"{best.texts_per_s:.1f} texts/s, {best.vs_baseline:.2f}x, {best.texts_per_request} text(s) per "
                  f"request at concurrency {best.concurrency}). Online, one text per request: "
                  f"**{verdict(target['online_met'])}** ({online.texts_per_s:.1f} texts/s, {online.vs_baseline:.2f}x "
                  f"at concurrency {online.concurrency}).", "",
                  f"What limits it: at the best row, {bottleneck(best)}; online, {bottleneck(online)}. "
                  "The load generator (Python, in the benchmark process) shares the same 2 cores.", "",
                  "Server time per composing model (per row):", "",
                  "| texts/request | concurrency | model | rows/execution | queue ms/request | compute ms/execution "
                  "| compute ms/text | busy |", "|---:|---:|---|---:|---:|---:|---:|---:|"]
        for row in rows[1:]:
            lines += [f"| {row.texts_per_request} | {row.concurrency} | {name} | {f['rows_per_execution']} | "
                      f"{f['queue_ms_per_request']} | {f['compute_ms_per_execution']} | {f['compute_ms_per_text']} | "
                      f"{f['busy_fraction']:.0%} |" for name, f in row.server["models"].items() if name != model]
        lines.append("")
    checked = all(r["server"].get("computed_every_text", True) for r in report["rows"])
    lines += ["Every Triton row was computed by the server for every text (statistics checked, no cache hit): "
              f"{'yes' if checked else 'NO - see throughput.json'}.", ""]
    return "\n".join(lines)


def plot(report: dict, path) -> None:
    def label(r):
        return "baseline" if not r["system"].startswith("Triton") else f"{r['texts_per_request']}/req x {r['concurrency']}"
    results.bar_chart(path, "Throughput: texts/s, Triton (texts/request x concurrency) vs baseline",
                      [(f"{model} texts/s", {label(r): r["texts_per_s"] for r in report["rows"] if r["model"] == model})
                       for model in (api.SENTIMENT.name, api.EMBED.name)])


def arguments(parser) -> None:
    parser.add_argument("--texts", type=int, default=2000, help="reviews to use (at most; default 2000; --quick 200)")
    parser.add_argument("--concurrency", default="1,8,32", help="concurrent one-text callers (default 1,8,32)")
    parser.add_argument("--batch-loads", default="1,4", help=f"concurrencies of callers sending {BATCH} texts per "
                        "request (default 1,4)")
    parser.add_argument("--time-limit", type=float, default=60.0, help="seconds per Triton row at most (default 60)")


if __name__ == "__main__":
    results.main("throughput", measure, markdown, plot, arguments)
