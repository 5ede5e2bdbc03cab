"""NVIDIA perf_analyzer against the served models, with real reviews: two scenarios in one server.

    python perf/bench_perf_analyzer.py [--concurrency 1,2,4,8,16,32] [--interval-ms 2000]
                                       [--streaming-levels 1,2] [--skip-streaming] [--quick]

Starts its own tritonserver (free loopback ports, response cache off: perf_analyzer replays the
same inputs round-robin, so a cache would answer most of them) and runs perf_analyzer (C++, from
tritonclient[all]) over gRPC:
  ensembles  `sentiment` and `embed`, one review per request, once per concurrency level. A level
             that does not stabilise (3 consecutive windows within 25 %) is retried with windows
             twice as long, then measured over one window of 1,000 requests and marked unstable.
             Triton's inference statistics around each level give each composing model's share.
  streaming  `generator --streaming` at concurrency 1 and 2, 32 output tokens, prompts sharing the
             instruction block (harness/generator_prompts.py), one window of a fixed request count
             per level (a generation takes seconds); its per-response timestamps
             (--profile-export-file) give TTFT and the time between responses (one per token).
Writes perf_analyzer.json, .md, .png and perf_analyzer_<model>.txt (console output, with the
per-composing-model breakdown) and .csv to perf/results/ (build/perf-smoke/ with --quick).
"""
import csv
import io
import json
import tempfile
import time
from pathlib import Path

from harness import results
from harness.baselines import gguf_tokenizer, sample_reviews
from harness.generator_prompts import SHARED, PromptSet
from harness.load import percentile
from harness.server import breakdown, inference_counters, perf_analyzer, triton
from reviewlens.ensemble import interface as api

ENSEMBLES = (api.SENTIMENT, api.EMBED)
COMPUTE_MODEL = {api.SENTIMENT.name: api.CLASSIFIER.name, api.EMBED.name: api.ENCODER.name}
TOKENIZER = {api.SENTIMENT.name: api.SENTIMENT_TOKENIZER.name, api.EMBED.name: api.EMBED_TOKENIZER.name}
UNSTABLE_REQUEST_COUNT = 1000


def run_level(url: str, model: api.Model, input_data: dict, concurrency: int, measurement: list[str], work: Path,
              extra: list[str] = ()) -> tuple[dict, str]:
    """One perf_analyzer run at one concurrency: its CSV row (None if it failed), server breakdown, console."""
    (work / "input.json").write_text(json.dumps(input_data))
    csv_file = work / "level.csv"
    csv_file.unlink(missing_ok=True)
    before, started = inference_counters(url), time.perf_counter()
    code, console = perf_analyzer(["-m", model.name, "-u", url, "-i", "grpc", "--input-data", str(work / "input.json"),
                                   "-b", "1", "--concurrency-range", str(concurrency), *measurement, *extra,
                                   "-f", str(csv_file)], work, timeout_s=300)
    # The statistics cover the whole run (warm-up and every window), so divide by all of it.
    wall_s = time.perf_counter() - started
    table = list(csv.DictReader(io.StringIO(csv_file.read_text()))) if code == 0 and csv_file.exists() else []
    return {"concurrency": concurrency, "ok": bool(table), "perf_analyzer": table[0] if table else None,
            "server": breakdown(before, inference_counters(url), wall_s), "wall_s": round(wall_s, 1),
            **({} if table else {"error": console[-2000:]})}, console


def ensembles(url: str, texts: list[str], levels: list[int], interval_ms: int, out: Path, work: Path) -> dict:
    """Both ensembles over every level; perf_analyzer_<model>.csv/.txt in `out`."""
    # Each entry of the input is one batch-1 request: {"TEXT": ["one review"]}.
    input_data = {"data": [{api.TEXT.name: [text]} for text in texts]}
    # A 2-core VM shared by client and server is noisy: accept 25 % spread, bound the retries.
    windows = ["--stability-percentage", "25", "--max-trials", "6", "--measurement-interval"]
    attempts = [windows + [str(interval_ms)], windows + [str(2 * interval_ms)],
                ["--request-count", str(UNSTABLE_REQUEST_COUNT)]]
    report = {}
    for model in ENSEMBLES:
        levels_done, consoles = [], []
        for concurrency in levels:
            for attempt, measurement in enumerate(attempts):
                level, console = run_level(url, model, input_data, concurrency, measurement, work)
                consoles.append(console)
                if level["ok"]:
                    break
            level["stable"] = level["ok"] and attempt < len(attempts) - 1
            levels_done.append(level)
            pa = level["perf_analyzer"] or {}
            print(f"  {model.name:9s} concurrency {concurrency:3d}: {pa.get('Inferences/Second', 'failed')} texts/s",
                  flush=True)
        rows = [level["perf_analyzer"] for level in levels_done if level["ok"]]
        if rows:
            with open(out / f"perf_analyzer_{model.name}.csv", "w", newline="") as handle:
                writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
                writer.writeheader()
                writer.writerows(rows)
        (out / f"perf_analyzer_{model.name}.txt").write_text("\n".join(consoles))
        report[model.name] = levels_done
    return report


def response_timing(export: Path) -> dict:
    """TTFT, time between responses and responses/s from perf_analyzer's per-response timestamps."""
    requests = [r for e in json.loads(export.read_text()).get("experiments", []) for r in e.get("requests", [])
                if r.get("response_timestamps")]
    if not requests:
        return {}
    ttft = [(r["response_timestamps"][0] - r["timestamp"]) / 1e9 for r in requests]
    between = [(b - a) / 1e9 for r in requests for a, b in zip(r["response_timestamps"], r["response_timestamps"][1:])]
    responses = sum(len(r["response_timestamps"]) for r in requests)
    span_s = (max(r["response_timestamps"][-1] for r in requests) - min(r["timestamp"] for r in requests)) / 1e9
    return {"requests": len(requests), "responses_per_request_mean": responses / len(requests),
            "responses_per_s": responses / span_s, "ttft_p50_s": percentile(ttft, 50), "ttft_p95_s": percentile(ttft, 95),
            "inter_response_p50_s": percentile(between, 50), "inter_response_p95_s": percentile(between, 95)}


def streaming(url: str, levels: list[int], texts: list[str], requests: int, max_tokens: int, out: Path,
              work: Path) -> dict:
    """The generator, streamed, at each level; perf_analyzer_generator.txt in `out`."""
    input_data = {"data": [{api.TEXT_INPUT.name: {"content": [text], "shape": [1]}, api.MAX_TOKENS.name: [max_tokens],
                            api.STREAM.name: [True]} for text in texts]}
    done, consoles = [], []
    for concurrency in levels:
        export = work / "profile.json"
        level, console = run_level(url, api.GENERATOR, input_data, concurrency,
                                   ["--request-count", str(requests * concurrency)], work,
                                   ["--streaming", "--profile-export-file", str(export)])
        level["timing"] = response_timing(export) if level["ok"] else {}
        consoles.append(console)
        done.append(level)
        print(f"  generator --streaming concurrency {concurrency}: "
              f"{level['timing'].get('responses_per_s', 0):.1f} responses/s", flush=True)
    (out / "perf_analyzer_generator.txt").write_text("\n".join(consoles))
    return {"prompts": len(texts), "max_tokens": max_tokens, "requests_per_level": requests, "levels": done}


def measure(args, out) -> dict:
    if args.quick:
        args.concurrency, args.interval_ms, args.texts = "1,4", 1000, 100
        args.streaming_levels, args.streaming_requests, args.streaming_tokens, args.streaming_prompts = "1", 2, 8, 2
    reviews = sample_reviews(args.texts)
    if not args.skip_streaming:  # tokenized before the server starts: one measurement at a time
        prompt_set = PromptSet(gguf_tokenizer(), args.streaming_prompts, 80)
        prompts = [prompt_set.make(f"pa-{i:02d}", "cached", SHARED, i).text for i in range(args.streaming_prompts)]
    with tempfile.TemporaryDirectory() as work, triton("perf_analyzer") as server:
        report = {"data_source": reviews.source, "texts": len(reviews.texts), "interval_ms": args.interval_ms,
                  "models": ensembles(server.grpc_url, reviews.texts, [int(c) for c in args.concurrency.split(",")],
                                      args.interval_ms, out, Path(work))}
        if not args.skip_streaming:
            report["generator"] = streaming(server.grpc_url, [int(c) for c in args.streaming_levels.split(",")],
                                            prompts, args.streaming_requests, args.streaming_tokens, out, Path(work))
    return report


def markdown(report: dict) -> str:
    """Per ensemble: client throughput and latency beside each composing model's share; then streaming."""
    lines = results.header(report, "perf_analyzer: Triton ensembles, one review per request",
                           f"{report['texts']} reviews from `{report['data_source']}` replayed round-robin; gRPC, "
                           f"response cache off, {report['interval_ms']} ms measurement windows; perf_analyzer on the "
                           "same cores as the server, raw output in `perf_analyzer_<model>.csv` / `.txt`;")
    for model, levels in report["models"].items():
        compute, tokenizer = COMPUTE_MODEL[model], TOKENIZER[model]
        lines += [f"## {model}", "", "| concurrency | texts/s | p50 ms | p95 ms | p99 ms | server ms/request | "
                  f"{compute} rows/execution | {compute} queue ms | {compute} ms/execution | {compute} busy | "
                  f"{tokenizer} busy |", "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for level in levels:
            if not level["ok"]:
                lines.append(f"| {level['concurrency']} | failed (see perf_analyzer_{model}.txt) |||||||||")
                continue
            pa, heavy, light = level["perf_analyzer"], level["server"].get(compute, {}), level["server"].get(tokenizer, {})
            # The ensemble's own queue is ~0; its compute spans all steps, their queues included.
            server_us = sum(int(pa[k]) for k in ("Server Queue", "Server Compute Input", "Server Compute Infer",
                                                 "Server Compute Output"))
            lines.append(
                f"| {level['concurrency']}{'' if level['stable'] else ' (unstable)'} | "
                f"{float(pa['Inferences/Second']):.1f} | {int(pa['p50 latency']) / 1e3:.1f} | "
                f"{int(pa['p95 latency']) / 1e3:.1f} | {int(pa['p99 latency']) / 1e3:.1f} | {server_us / 1e3:.1f} | "
                f"{heavy.get('rows_per_execution', '-')} | {heavy.get('queue_ms_per_request', '-')} | "
                f"{heavy.get('compute_ms_per_execution', '-')} | {heavy.get('busy_fraction', 0):.0%} | "
                f"{light.get('busy_fraction', 0):.0%} |")
        ok = [level for level in levels if level["ok"]]
        if ok:
            best = max(ok, key=lambda level: float(level["perf_analyzer"]["Inferences/Second"]))
            lines += ["", f"Peak: {float(best['perf_analyzer']['Inferences/Second']):.1f} texts/s at concurrency "
                      f"{best['concurrency']}. Server ms/request is the ensemble's time in the server (all steps and "
                      "their queues); busy is the share of wall time the model instance spent computing.", ""]
        if not all(level["stable"] for level in ok):
            lines += [f"(unstable): no 3 consecutive windows within 25 % of each other, even with "
                      f"{2 * report['interval_ms']} ms windows; the figures are from one window of "
                      f"{UNSTABLE_REQUEST_COUNT} requests.", ""]
    if "generator" in report:
        stream = report["generator"]
        lines += ["## generator --streaming", "",
                  f"{stream['prompts']} prompts sharing the instruction block (served from the prefix cache) replayed "
                  f"round-robin, max_tokens {stream['max_tokens']}, one window of {stream['requests_per_level']} "
                  "requests x concurrency per level. From the per-response timestamps (`--profile-export-file`, one "
                  "response per token). Console output: `perf_analyzer_generator.txt`.", "",
                  "| concurrency | requests | responses (tokens)/s | TTFT p50 / p95 ms | inter-response p50 / p95 ms "
                  "| responses/request |", "|---:|---:|---:|---:|---:|---:|"]
        for level in stream["levels"]:
            t = level["timing"]
            if not t:
                lines.append(f"| {level['concurrency']} | failed (see perf_analyzer_generator.txt) |||||")
                continue
            lines.append(f"| {level['concurrency']} | {t['requests']} | {t['responses_per_s']:.1f} | "
                         f"{t['ttft_p50_s'] * 1e3:.0f} / {t['ttft_p95_s'] * 1e3:.0f} | "
                         f"{t['inter_response_p50_s'] * 1e3:.0f} / {t['inter_response_p95_s'] * 1e3:.0f} | "
                         f"{t['responses_per_request_mean']:.1f} |")
        lines.append("")
    return "\n".join(lines)


def plot(report: dict, path) -> None:
    def series(field: str, scale: float) -> dict:
        return {model: ([level["concurrency"] for level in levels if level["ok"]],
                        [float(level["perf_analyzer"][field]) * scale for level in levels if level["ok"]])
                for model, levels in report["models"].items()}
    results.line_chart(path, "perf_analyzer: ensembles, one review per request", "concurrency",
                       [("texts/s", series("Inferences/Second", 1)), ("p95 latency ms", series("p95 latency", 1e-3))])


def arguments(parser) -> None:
    parser.add_argument("--concurrency", default="1,2,4,8,16,32", help="ensemble levels (default 1,2,4,8,16,32)")
    parser.add_argument("--interval-ms", type=int, default=2000, help="measurement window (default 2000)")
    parser.add_argument("--texts", type=int, default=500, help="reviews in the input data (default 500)")
    parser.add_argument("--skip-streaming", action="store_true", help="leave out the generator --streaming scenario")
    parser.add_argument("--streaming-levels", default="1,2", help="generator concurrency levels (default 1,2)")
    parser.add_argument("--streaming-requests", type=int, default=4, help="generator requests per level, times the "
                        "concurrency (default 4)")
    parser.add_argument("--streaming-tokens", type=int, default=32, help="max_tokens per generator request (default 32)")
    parser.add_argument("--streaming-prompts", type=int, default=8, help="distinct generator prompts (default 8)")


if __name__ == "__main__":
    results.main("perf_analyzer", measure, markdown, plot, arguments)
