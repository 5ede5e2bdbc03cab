"""NVIDIA perf_analyzer against the `sentiment` and `embed` ensembles, with real reviews.

    python perf/perf_analyzer.py [--concurrency 1,2,4,8,16,32] [--interval-ms 2000]

Starts its own tritonserver (free loopback ports, response cache off: perf_analyzer replays the
same texts round-robin, so a cache would answer most of them) and runs perf_analyzer over gRPC,
one text per request, once per concurrency level. Between levels it reads Triton's inference
statistics to show which composing model the time goes to.

Writes under perf/results/: perf_analyzer_<model>.csv (perf_analyzer's CSV, one row per level),
perf_analyzer_<model>.txt (its console output, with the per-composing-model breakdown) and
perf_analyzer.md (a summary).
"""
import argparse
import csv
import importlib.util
import io
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import tritonclient.grpc as grpcclient

from reviewlens.build_engines.paths import BUILD_DIR
from reviewlens.ensemble.server import TritonServer, free_port
from reviews import load_reviews
from throughput import RESULTS_DIR, OtherLoad, machine_info, server_breakdown, server_counters, write_results

MODELS = ("sentiment", "embed")
UNSTABLE_REQUEST_COUNT = 1000
COMPUTE_MODEL = {"sentiment": "classifier", "embed": "encoder"}


def perf_analyzer_command(model: str, url: str, input_file: Path, concurrency: int, csv_file: Path,
                          interval_ms: int | None = None, request_count: int | None = None) -> list[str]:
    """perf_analyzer's command line for one model at one concurrency level: time windows repeated
    until stable (`interval_ms`), or one window of `request_count` requests without a stability check."""
    if request_count:
        measurement = ["--request-count", str(request_count)]
    else:
        # A 2-core VM shared by client and server is noisy: accept 25 % spread, bound the retries.
        measurement = ["--measurement-interval", str(interval_ms), "--stability-percentage", "25", "--max-trials", "6"]
    return [
        str(Path(sys.executable).parent / "perf_analyzer"),
        "-m", model, "-u", url, "-i", "grpc",
        # Each entry of the file is one batch-1 request: {"TEXT": ["one review"]}.
        "--input-data", str(input_file), "-b", "1",
        "--concurrency-range", str(concurrency),
        *measurement,
        "-f", str(csv_file),
    ]


def perf_analyzer_environment() -> dict[str, str]:
    """perf_analyzer links libcudart.so.12 even on the CPU; it comes from nvidia-cuda-runtime-cu12."""
    cuda_runtime = Path(importlib.util.find_spec("nvidia.cuda_runtime").submodule_search_locations[0]) / "lib"
    env = dict(os.environ)
    env["LD_LIBRARY_PATH"] = os.pathsep.join(filter(None, [str(cuda_runtime), env.get("LD_LIBRARY_PATH")]))
    return env


def profile(server: TritonServer, model: str, input_file: Path, levels: list[int], interval_ms: int) -> list[dict]:
    """Run perf_analyzer once per concurrency level; keep its CSV, console output and server stats."""
    client = grpcclient.InferenceServerClient(server.grpc_url)
    header, csv_rows, console, results = None, [], [], []
    for concurrency in levels:
        # An unstable level (perf_analyzer exits 2) is retried with windows twice as long, then
        # measured once over a fixed number of requests, which the report marks as unstable.
        attempts = [{"interval_ms": interval_ms}, {"interval_ms": 2 * interval_ms},
                    {"request_count": UNSTABLE_REQUEST_COUNT}]
        for attempt in attempts:
            with tempfile.NamedTemporaryFile(suffix=".csv") as level_csv:
                command = perf_analyzer_command(model, server.grpc_url, input_file, concurrency,
                                                Path(level_csv.name), **attempt)
                before = server_counters(client)
                started = time.perf_counter()
                run = subprocess.run(command, capture_output=True, text=True, env=perf_analyzer_environment(),
                                     timeout=300)
                # The statistics cover the whole run (warm-up and every window), so divide by all of it.
                wall_s = time.perf_counter() - started
                after = server_counters(client)
                table = list(csv.DictReader(io.StringIO(Path(level_csv.name).read_text()))) if run.returncode == 0 else []
            console.append(f"$ {' '.join(command)}\n{run.stdout}{run.stderr}")
            if table:
                break
        if table:
            header = header or list(table[0].keys())
            csv_rows += table
            figures = table[0]
            results.append({"concurrency": concurrency, "ok": True, "stable": "request_count" not in attempt,
                            "perf_analyzer": figures,
                            "server": server_breakdown(before, after, wall_s)})
            print(f"  {model:9s} concurrency {concurrency:3d}: {float(figures['Inferences/Second']):7.1f} texts/s  "
                  f"p50 {int(figures['p50 latency']) / 1000:7.1f} ms  p95 {int(figures['p95 latency']) / 1000:7.1f} ms",
                  flush=True)
        else:
            results.append({"concurrency": concurrency, "ok": False, "error": (run.stdout + run.stderr)[-2000:]})
            print(f"  {model:9s} concurrency {concurrency:3d}: perf_analyzer failed (exit {run.returncode}), "
                  f"see perf_analyzer_{model}.txt", flush=True)
    client.close()

    if header:
        with open(RESULTS_DIR / f"perf_analyzer_{model}.csv", "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=header)
            writer.writeheader()
            writer.writerows(csv_rows)
    (RESULTS_DIR / f"perf_analyzer_{model}.txt").write_text("\n".join(console))
    return results


def markdown(report: dict) -> str:
    """Summary tables: client throughput and latency beside each composing model's share of the time."""
    machine = report["machine"]
    lines = [
        "# perf_analyzer: Triton ensembles, one review per request",
        "",
        f"{report['texts']} reviews from `{report['data_source']}` replayed round-robin; gRPC, response cache off, "
        f"{report['interval_ms']} ms measurement windows; {machine['cores']} cores ({machine['cpu_model']}), "
        f"{machine['date']}. perf_analyzer runs on the same 2 cores as the server. "
        "Raw output: `perf_analyzer_<model>.csv` / `.txt`. Generated by `perf/perf_analyzer.py`.",
        f"Other processes used {report['machine']['other_processes_cpu_share']:.0%} of the CPU meanwhile.",
        "",
    ]
    for model in MODELS:
        compute = COMPUTE_MODEL[model]
        tokenizer = f"{model}_tokenizer" if model == "sentiment" else "embed_tokenizer"
        lines += [f"## {model}", "",
                  "| concurrency | texts/s | p50 ms | p95 ms | p99 ms | server ms/request | "
                  f"{compute} rows/execution | {compute} queue ms | {compute} ms/execution | {compute} busy | "
                  f"{tokenizer} busy |",
                  "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for level in report["models"][model]:
            if not level["ok"]:
                lines.append(f"| {level['concurrency']} | failed (see perf_analyzer_{model}.txt) |||||||||")
                continue
            pa, heavy, light = level["perf_analyzer"], level["server"].get(compute, {}), level["server"].get(tokenizer, {})
            # The ensemble's own queue is ~0; its compute spans all steps, their queues included.
            server_us = sum(int(pa[k]) for k in ("Server Queue", "Server Compute Input", "Server Compute Infer",
                                                 "Server Compute Output"))
            marker = "" if level["stable"] else " (unstable)"
            lines.append(
                f"| {level['concurrency']}{marker} | {float(pa['Inferences/Second']):.1f} | {int(pa['p50 latency']) / 1e3:.1f} | "
                f"{int(pa['p95 latency']) / 1e3:.1f} | {int(pa['p99 latency']) / 1e3:.1f} | {server_us / 1e3:.1f} | "
                f"{heavy.get('rows_per_execution', '-')} | {heavy.get('queue_ms_per_request', '-')} | "
                f"{heavy.get('compute_ms_per_execution', '-')} | {heavy.get('busy_fraction', 0):.0%} | "
                f"{light.get('busy_fraction', 0):.0%} |")
        ok = [level for level in report["models"][model] if level["ok"]]
        if ok:
            best = max(ok, key=lambda level: float(level["perf_analyzer"]["Inferences/Second"]))
            lines += ["", f"Peak: {float(best['perf_analyzer']['Inferences/Second']):.1f} texts/s at concurrency "
                      f"{best['concurrency']}. Server ms/request is the ensemble's time in the server (all steps and "
                      "their queues); busy is the share of wall time the model instance spent computing.", ""]
            if not all(level["stable"] for level in ok):
                lines += [f"(unstable): perf_analyzer found no 3 consecutive windows within 25 % of each other, even "
                          f"with {2 * report['interval_ms']} ms windows; the figures are from one window of "
                          f"{UNSTABLE_REQUEST_COUNT} requests.", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--concurrency", default="1,2,4,8,16,32", help="levels (default 1,2,4,8,16,32)")
    parser.add_argument("--interval-ms", type=int, default=2000, help="measurement window (default 2000)")
    parser.add_argument("--texts", type=int, default=500, help="reviews in the input file (default 500)")
    args = parser.parse_args()
    other_load = OtherLoad()
    # `make perf` may be stopped with SIGTERM: exit through the server's context manager, not around it.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    levels = [int(c) for c in args.concurrency.split(",")]
    reviews = load_reviews(args.texts)
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    server = TritonServer(grpc_port=free_port(), http_port=free_port(), metrics_port=free_port(),
                          response_cache=False, log_path=BUILD_DIR / "triton" / "perf_analyzer_server.log")
    with tempfile.TemporaryDirectory() as work, server:
        input_file = Path(work) / "reviews.json"
        input_file.write_text(json.dumps({"data": [{"TEXT": [text]} for text in reviews.texts]}))
        report = {"machine": machine_info(), "data_source": reviews.source, "texts": len(reviews.texts),
                  "interval_ms": args.interval_ms, "models": {}}
        for model in MODELS:
            report["models"][model] = profile(server, model, input_file, levels, args.interval_ms)
    write_results("perf_analyzer", report, markdown, other_load)


if __name__ == "__main__":
    main()
