"""Tokens per second of the served LLM `generator` against raw llama-cpp-python, in one run.

    python perf/generator.py [--max-tokens 128] [--cold 4] [--cached 4] [--c2 6] [--c4 8] [--quick]

Prompts: about 300 tokens each, chat-formatted in ChatML as the clients send them: a fixed
~210-token instruction block (the system message: analyse movie reviews ...) and ~80 tokens of
real Rotten Tomatoes reviews, different ones per prompt. Greedy decoding (temperature 0) and
max_tokens 128, asking for a detailed answer so that generation runs to the limit; the output
token count is measured, not assumed.

Prefix caching decides TTFT, so every prompt is either
  cold:   a unique tag at the very start of the system message, so no earlier prompt shares more
          than a handful of tokens with it (fewer than the engine's MIN_PREFIX_REUSE, checked), or
  cached: the same instruction block as the request before it (a priming request, or the
          previous cached one), different reviews: ~200 tokens come from the prefix cache.

One measurement at a time (the machine has 2 cores):
  1. raw llama-cpp-python in this process: `Llama(n_ctx=4096, n_threads=2)`,
     `create_completion(stream=True, temperature=0)`. The high-level `Llama` reuses the KV cache of
     the previous prompt's common prefix, so `reset()` is called before every cold prompt (fully
     cold, like the server's), and not before the cached ones (it then reuses the instruction
     block just as the server's prefix cache does). Then the model is freed.
  2. tritonserver (response cache off) with the whole model repository; the `generator` is driven
     over gRPC streams by N threads, each with its own GeneratorClient, taking prompts back to
     back: concurrency 1 on the same cold prompts as the raw run, then the cached-prefix prompts,
     then fresh cold prompts at concurrency 2 and 4 (tags per level, reviews the same).
  3. perf_analyzer `--streaming` against `generator` at concurrency 1 and 2 (shorter outputs),
     with its per-response timestamps (`--profile-export-file`) for TTFT and inter-token latency.

Per row: aggregate output tokens/s (all output tokens / wall time of the row), TTFT and time per
output token (after the first) p50/p95 as the client sees them, prompt tokens/s (prompt tokens /
TTFT). The server log's per-request line (tokens taken from the prefix cache, engine queue, first
token and decode time) is read back for every Triton request: it proves which prompts hit the
cache and separates the engine's time from the transport's.
Targets: Triton overhead <= 5 % at concurrency 1 (output tokens/s, cold prompts); aggregate
output tokens/s at concurrency 4 >= 1.3x concurrency 1; TTFT with the instruction prefix cached
<= 0.5x a cold one.
Writes perf/results/generator.json and perf/results/generator.md.
"""
import argparse
import csv
import gc
import hashlib
import io
import itertools
import json
import re
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path

import numpy as np
import tritonclient.grpc as grpcclient

from reviewlens.build_engines.paths import BUILD_DIR, MODEL_REPOSITORY
from reviewlens.client.generation import GenerationParams, GeneratorClient, chatml
from reviewlens.ensemble.llm_engine import MIN_PREFIX_REUSE
from reviewlens.ensemble.server import TritonServer, free_port
from perf_analyzer import perf_analyzer_environment
from reviews import load_reviews
from throughput import RESULTS_DIR, OtherLoad, machine_info, write_results

GGUF = MODEL_REPOSITORY / "generator" / "1" / "model.gguf"
RAW_N_CTX = 4096
RAW_THREADS = 2
TARGETS = {"overhead_c1": 0.05, "c4_vs_c1": 1.3, "cached_ttft_ratio": 0.5}

# ~200 tokens of instructions shared by every analysis prompt (the part the prefix cache keeps).
INSTRUCTION = (
    "You are a senior film critic and data analyst working for a movie review aggregation service. "
    "You receive a batch of short reviews written by professional critics about one or more films. "
    "Analyse them carefully and write a detailed report for the editorial team. The report must "
    "cover: (1) the overall sentiment of the batch and how strongly the critics agree with each "
    "other; (2) the aspects of the films that are praised, such as acting, direction, screenplay, "
    "pacing, cinematography, music or humour, quoting short phrases from the reviews as evidence; "
    "(3) the aspects that are criticised, again with short quotes; (4) any sarcasm, irony or mixed "
    "feelings that a simple positive/negative classifier would misread, explaining why; (5) the "
    "kind of audience the films seem to suit. Write in full sentences and plain English, be "
    "specific rather than generic, do not invent facts that are not in the reviews, and give a "
    "long, thorough answer: the editors want every point discussed in depth."
)


@dataclass
class Prompt:
    name: str          # e.g. "cold-c1-03", "prime", "cached-02"
    kind: str          # cold | prime | cached | warmup
    text: str
    tokens: int
    block: int         # which review block


@dataclass
class Timing:
    """One request as the client saw it (plus the server's own figures for Triton requests)."""
    prompt: str
    prompt_tokens: int
    output_tokens: int
    ttft_s: float
    total_s: float
    started_s: float           # since the start of the row
    text: str = ""
    finish: str = ""
    server: dict = field(default_factory=dict)  # from the server log: cached tokens, queue, first token, decode

    @property
    def tpot_s(self) -> float:
        return (self.total_s - self.ttft_s) / (self.output_tokens - 1) if self.output_tokens > 1 else 0.0


# ---------------------------------------------------------------- prompts

def system_message(tag: str) -> str:
    # The tag comes first: prompts with different tags share only `<|im_start|>system\n#`.
    return f"#{tag}. {INSTRUCTION}"


def render(tag: str, reviews: list[str]) -> str:
    listed = "\n".join(f"{i}. {text}" for i, text in enumerate(reviews, 1))
    user = f"Reviews:\n{listed}\n\nWrite the detailed report now."
    return chatml([{"role": "system", "content": system_message(tag)}, {"role": "user", "content": user}])


def review_blocks(tokenize, count: int, review_tokens: int) -> list[list[str]]:
    """`count` disjoint groups of consecutive real reviews, each about `review_tokens` tokens."""
    texts = load_reviews(2000).texts
    blocks, block, used = [], [], 0
    for text in texts:
        n = len(tokenize(text)) + 3
        if block and used + n > review_tokens * 1.15:
            continue  # too long for this block: try the next review
        block.append(text)
        used += n
        if used >= review_tokens * 0.9:
            blocks.append(block)
            block, used = [], 0
            if len(blocks) == count:
                return blocks
    raise RuntimeError(f"not enough reviews for {count} blocks of ~{review_tokens} tokens")


class PromptSet:
    def __init__(self, tokenize, args):
        self.tokenize = tokenize
        n_blocks = max(args.cold, args.cached, args.c2, args.c4, args.pa_prompts) + 1
        self.blocks = review_blocks(tokenize, n_blocks, args.review_tokens)
        self.prime_block = n_blocks - 1

    def make(self, name: str, kind: str, tag: str, block: int) -> Prompt:
        text = render(tag, self.blocks[block])
        return Prompt(name, kind, text, len(self.tokenize(text)), block)

    def cold(self, level: str, n: int) -> list[Prompt]:
        return [self.make(f"cold-{level}-{i:02d}", "cold", f"{level}{i:02d}", i) for i in range(n)]

    def cached(self, n: int) -> list[Prompt]:
        """A priming request, then `n` requests with the same instruction block and other reviews."""
        return ([self.make("prime", "prime", "shared", self.prime_block)]
                + [self.make(f"cached-{i:02d}", "cached", "shared", i) for i in range(n)])

    def common(self, a: Prompt, b: Prompt) -> int:
        ta, tb = self.tokenize(a.text), self.tokenize(b.text)
        return next((i for i, (x, y) in enumerate(zip(ta, tb)) if x != y), min(len(ta), len(tb)))


def check_prompts(prompts: PromptSet, cold: list[Prompt], cached: list[Prompt]) -> dict:
    """Cold prompts must share too little with any other prompt for the prefix cache to use it;
    cached ones must share the instruction block with the prompt before them."""
    everything = cold + cached
    cold_max = max((prompts.common(a, b) for a in cold for b in everything if a is not b), default=0)
    if cold_max >= MIN_PREFIX_REUSE:
        raise RuntimeError(f"cold prompts share {cold_max} tokens with another prompt (>= {MIN_PREFIX_REUSE})")
    shared = [prompts.common(a, b) for a, b in zip(cached, cached[1:])]
    instruction = len(prompts.tokenize(chatml([{"role": "system", "content": system_message("shared")}]))) - 3
    return {"cold_max_common_tokens": cold_max, "cached_common_tokens": shared, "instruction_tokens": instruction}


# ---------------------------------------------------------------- statistics

def percentile(values: list[float], q: float) -> float | None:
    return float(np.percentile(values, q)) if values else None


def summarise(timings: list[Timing], wall_s: float) -> dict:
    ttft = [t.ttft_s for t in timings]
    tpot = [t.tpot_s for t in timings if t.output_tokens > 1]
    output = sum(t.output_tokens for t in timings)
    server = [t.server for t in timings if t.server]
    summary = {
        "requests": len(timings),
        "wall_s": round(wall_s, 3),
        "prompt_tokens_mean": float(np.mean([t.prompt_tokens for t in timings])),
        "output_tokens_mean": float(np.mean([t.output_tokens for t in timings])),
        "output_tokens_total": output,
        "stopped_early": sum(t.finish == "stop" for t in timings),
        "output_tokens_per_s": output / wall_s,
        "ttft_p50_s": percentile(ttft, 50), "ttft_p95_s": percentile(ttft, 95),
        "tpot_p50_s": percentile(tpot, 50), "tpot_p95_s": percentile(tpot, 95),
        "prompt_tokens_per_s_p50": percentile([t.prompt_tokens / t.ttft_s for t in timings], 50),
    }
    if server:
        summary["server"] = {
            "cached_prompt_tokens_mean": float(np.mean([s["cached"] for s in server])),
            "queue_p50_s": percentile([s["queue_s"] for s in server], 50),
            "first_token_p50_s": percentile([s["first_token_s"] for s in server], 50),
            "tpot_p50_s": percentile([s["decode_s"] / (s["output_tokens"] - 1) for s in server
                                      if s["output_tokens"] > 1], 50),
        }
    return summary


# ---------------------------------------------------------------- raw llama-cpp-python

def raw_generate(llm, prompt: Prompt, max_tokens: int, row_start: float) -> Timing:
    started = time.perf_counter()
    first, pieces, finish = None, [], ""
    for chunk in llm.create_completion(prompt.text, max_tokens=max_tokens, temperature=0.0, stream=True):
        if first is None:
            first = time.perf_counter()
        choice = chunk["choices"][0]
        pieces.append(choice["text"])
        finish = choice.get("finish_reason") or finish
    end = time.perf_counter()
    text = "".join(pieces)
    # The stream does not count tokens: at the limit there are max_tokens, else count the text.
    output = max_tokens if finish == "length" else len(llm.tokenize(text.encode("utf-8"), add_bos=False, special=False))
    return Timing(prompt.name, prompt.tokens, output, (first or end) - started, end - started,
                  started - row_start, text, finish)


def run_raw(cold: list[Prompt], cached: list[Prompt], warmup: Prompt, max_tokens: int) -> dict:
    from llama_cpp import Llama

    llm = Llama(model_path=str(GGUF), n_ctx=RAW_N_CTX, n_threads=RAW_THREADS, verbose=False)
    try:
        llm.reset()
        raw_generate(llm, warmup, 8, time.perf_counter())
        rows = {}
        start, timings = time.perf_counter(), []
        for prompt in cold:
            llm.reset()  # no reuse of the previous prompt: fully cold, as on the server
            timings.append(raw_generate(llm, prompt, max_tokens, start))
            print(f"  raw {prompt.name}: TTFT {timings[-1].ttft_s:.2f} s, {timings[-1].output_tokens} tokens "
                  f"in {timings[-1].total_s:.1f} s", flush=True)
        rows["cold"] = {"timings": timings, "wall_s": time.perf_counter() - start}
        llm.reset()
        prime = raw_generate(llm, cached[0], max_tokens, time.perf_counter())
        start, timings = time.perf_counter(), []
        for prompt in cached[1:]:
            timings.append(raw_generate(llm, prompt, max_tokens, start))  # reuses the instruction block
            print(f"  raw {prompt.name}: TTFT {timings[-1].ttft_s:.2f} s", flush=True)
        rows["cached"] = {"timings": timings, "wall_s": time.perf_counter() - start, "prime": prime}
        return rows
    finally:
        llm.close()
        del llm
        gc.collect()


# ---------------------------------------------------------------- Triton

LOG_LINE = re.compile(r"generator: (\d+) tokens \((\w+)\) for a (\d+)-token prompt \((\d+) from the prefix cache\); "
                      r"queue ([\d.]+) s, first token ([\d.]+) s, decode ([\d.]+) s")


class ServerLog:
    """The generator's per-request lines in the server log, read incrementally."""

    def __init__(self, path: Path):
        self.path, self.seen = path, 0

    def lines(self) -> list[dict]:
        return [{"output_tokens": int(m[1]), "finish": m[2], "prompt_tokens": int(m[3]), "cached": int(m[4]),
                 "queue_s": float(m[5]), "first_token_s": float(m[6]), "decode_s": float(m[7])}
                for m in LOG_LINE.finditer(self.path.read_text(errors="replace"))]

    def new(self, expected: int, timeout_s: float = 5.0) -> list[dict]:
        deadline = time.monotonic() + timeout_s
        while True:
            lines = self.lines()
            if len(lines) - self.seen >= expected or time.monotonic() > deadline:
                fresh, self.seen = lines[self.seen:], len(lines)
                return fresh


def drive(url: str, prompts: list[Prompt], concurrency: int, max_tokens: int) -> tuple[list[Timing], float]:
    """`concurrency` threads, one GeneratorClient each, taking prompts back to back (streaming)."""
    clients = [GeneratorClient(url) for _ in range(concurrency)]
    params = GenerationParams(temperature=0.0)
    timings: list[Timing | None] = [None] * len(prompts)
    tickets = itertools.count()  # next() is atomic under the GIL

    def caller(client: GeneratorClient) -> None:
        while (index := next(tickets)) < len(prompts):
            started = time.perf_counter()
            result = client.generate(prompts[index].text, max_tokens, params, stream=True)
            timings[index] = Timing(prompts[index].name, result.prompt_tokens, result.output_tokens,
                                    result.time_to_first_token_s, result.total_s, started - start, result.text,
                                    "length" if result.output_tokens >= max_tokens else "stop")

    start = time.perf_counter()
    try:
        with ThreadPoolExecutor(max_workers=concurrency) as pool:
            for future in [pool.submit(caller, client) for client in clients]:
                future.result()
    finally:
        for client in clients:
            client.close()
    return timings, time.perf_counter() - start


def attach_server_lines(timings: list[Timing], lines: list[dict], ordered: bool) -> None:
    """At concurrency 1 the log lines come in request order; otherwise match them by token counts."""
    if ordered and len(lines) == len(timings):
        for timing, line in zip(timings, lines):
            timing.server = line
        return
    pool = list(lines)
    for timing in timings:
        match = next((l for l in pool if l["prompt_tokens"] == timing.prompt_tokens
                      and l["output_tokens"] == timing.output_tokens), None)
        if match:
            pool.remove(match)
            timing.server = match


def run_level(server: TritonServer, log: ServerLog, prompts: list[Prompt], concurrency: int, max_tokens: int,
              label: str) -> dict:
    timings, wall = drive(server.grpc_url, prompts, concurrency, max_tokens)
    attach_server_lines(timings, log.new(len(prompts)), ordered=concurrency == 1)
    summary = summarise(timings, wall)
    print(f"  Triton {label} concurrency {concurrency}: {summary['output_tokens_per_s']:.1f} output tokens/s, "
          f"TTFT p50 {summary['ttft_p50_s']:.2f} s, TPOT p50 {summary['tpot_p50_s'] * 1e3:.0f} ms", flush=True)
    return {"timings": timings, "wall_s": wall}


# ---------------------------------------------------------------- perf_analyzer

def pa_input(prompts: list[Prompt], max_tokens: int) -> dict:
    return {"data": [{"text_input": {"content": [p.text], "shape": [1]}, "max_tokens": [max_tokens],
                      "stream": [True]} for p in prompts]}


def pa_profile(export: Path) -> dict:
    """TTFT and inter-token latency from perf_analyzer's per-response timestamps."""
    try:
        data = json.loads(export.read_text())
    except (OSError, ValueError):
        return {}
    ttft, itl, responses = [], [], []
    for experiment in data.get("experiments", []):
        for request in experiment.get("requests", []):
            stamps = request.get("response_timestamps", [])
            if not stamps:
                continue
            ttft.append((stamps[0] - request["timestamp"]) / 1e9)
            itl += [(b - a) / 1e9 for a, b in zip(stamps, stamps[1:])]
            responses.append(len(stamps))
    if not ttft:
        return {}
    return {"requests": len(ttft), "responses_per_request_mean": float(np.mean(responses)),
            "ttft_p50_s": percentile(ttft, 50), "ttft_p95_s": percentile(ttft, 95),
            "inter_response_p50_s": percentile(itl, 50), "inter_response_p95_s": percentile(itl, 95)}


def run_perf_analyzer(server: TritonServer, prompts: list[Prompt], levels: list[int], max_tokens: int,
                      requests: int) -> list[dict]:
    results, console = [], []
    with tempfile.TemporaryDirectory() as work:
        input_file = Path(work) / "prompts.json"
        input_file.write_text(json.dumps(pa_input(prompts, max_tokens)))
        for concurrency in levels:
            csv_file, export = Path(work) / f"c{concurrency}.csv", Path(work) / f"c{concurrency}.json"
            command = [str(Path(sys.executable).parent / "perf_analyzer"), "-m", "generator", "-u", server.grpc_url,
                       "-i", "grpc", "--streaming", "--input-data", str(input_file), "-b", "1",
                       "--concurrency-range", str(concurrency),
                       # One window of a fixed number of requests: a generation takes seconds, so
                       # time windows until 3 agree would take minutes.
                       "--request-count", str(requests * concurrency),
                       "-f", str(csv_file), "--profile-export-file", str(export)]
            started = time.perf_counter()
            try:
                run = subprocess.run(command, capture_output=True, text=True, env=perf_analyzer_environment(),
                                     timeout=240)
                output, code = run.stdout + run.stderr, run.returncode
            except subprocess.TimeoutExpired as err:
                output, code = f"timed out after 240 s\n{err.stdout or ''}", -1
            wall = time.perf_counter() - started
            console.append(f"$ {' '.join(command)}\n{output}")
            table = list(csv.DictReader(io.StringIO(csv_file.read_text()))) if csv_file.exists() else []
            if code == 0 and table:
                figures = table[0]
                # For a decoupled model perf_analyzer's latency is that of the first response.
                responses = re.search(r"Response Throughput: ([\d.]+) infer/sec", output)
                figures["responses_per_s"] = float(responses[1]) if responses else None
                result = {"concurrency": concurrency, "ok": True, "wall_s": round(wall, 1),
                          "requests": requests * concurrency, "perf_analyzer": figures,
                          "profile": pa_profile(export)}
                print(f"  perf_analyzer concurrency {concurrency}: {float(figures['Inferences/Second']):.3f} "
                      f"requests/s, p50 {int(figures['p50 latency']) / 1e6:.2f} s", flush=True)
            else:
                result = {"concurrency": concurrency, "ok": False, "error": output[-2000:]}
                print(f"  perf_analyzer concurrency {concurrency}: failed (exit {code}), see generator_perf_analyzer.txt",
                      flush=True)
            results.append(result)
    (RESULTS_DIR / "generator_perf_analyzer.txt").write_text("\n".join(console))
    return results


# ---------------------------------------------------------------- report

def ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1e3:.0f}"


def markdown(report: dict) -> str:
    machine, s = report["machine"], report["settings"]
    rows, targets = report["rows"], report["targets"]
    lines = [
        "# Generator: Triton `generator` vs raw llama-cpp-python",
        "",
        f"{s['model']} ({s['gguf']['bytes'] / 2**30:.2f} GiB GGUF); prompts of ~{rows['triton_c1']['prompt_tokens_mean']:.0f} "
        f"tokens (a {report['prompts']['instruction_tokens']}-token instruction block + real reviews from "
        f"`{report['data_source']}`), ChatML, greedy, max_tokens {s['max_tokens']}. {machine['cores']} cores "
        f"({machine['cpu_model']}), {machine['date']}; Triton {report['triton_version']}, llama-cpp-python "
        f"{machine['versions']['llama_cpp_python']}; raw: `Llama(n_ctx={RAW_N_CTX}, n_threads={RAW_THREADS})`, "
        f"server: {s['server_engine']}. Generated by `perf/generator.py`"
        + (" (--quick: figures are a smoke test only)." if report["quick"] else "."),
        f"Other processes used {machine['other_processes_cpu_share']:.0%} of the CPU meanwhile.",
        "",
        "| system | prompts | concurrency | requests | prompt tokens | from prefix cache | output tokens (mean) "
        "| output tokens/s | vs raw | TTFT p50 / p95 ms | TPOT p50 / p95 ms | prompt tokens/s (p50) |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    labels = {"raw_c1": ("raw llama-cpp-python", "cold", 1), "raw_cached": ("raw llama-cpp-python", "cached prefix", 1),
              "triton_c1": ("Triton generator", "cold", 1), "triton_cached": ("Triton generator", "cached prefix", 1),
              "triton_c2": ("Triton generator", "cold", 2), "triton_c4": ("Triton generator", "cold", 4)}
    raw_tps = rows["raw_c1"]["output_tokens_per_s"]
    for key, (system, kind, concurrency) in labels.items():
        row = rows[key]
        cached = (f"{row['server']['cached_prompt_tokens_mean']:.0f}" if "server" in row
                  else report["prompts"]["raw_cached_tokens"].get(kind, "-"))
        stopped = f" ({row['stopped_early']} stopped early)" if row["stopped_early"] else ""
        lines.append(
            f"| {system} | {kind} | {concurrency} | {row['requests']} | {row['prompt_tokens_mean']:.0f} | {cached} | "
            f"{row['output_tokens_mean']:.1f}{stopped} | {row['output_tokens_per_s']:.2f} | "
            f"{row['output_tokens_per_s'] / raw_tps:.2f}x | {ms(row['ttft_p50_s'])} / {ms(row['ttft_p95_s'])} | "
            f"{ms(row['tpot_p50_s'])} / {ms(row['tpot_p95_s'])} | {row['prompt_tokens_per_s_p50']:.0f} |")
    lines += [
        "",
        "Output tokens/s = all output tokens of the row / its wall time (prefill included; at concurrency N, "
        "N streams together). TTFT and TPOT (time per output token after the first) per request, as the "
        "client sees them; prompt tokens/s = prompt tokens / TTFT (for cached rows most prompt tokens were "
        "not computed). Cold prompts share no prefix with any earlier prompt; cached ones share the "
        "instruction block with the request before them.",
        "",
        "## Targets",
        "",
        "| target | measured | |",
        "|---|---|---|",
    ]
    for target in targets.values():
        lines.append(f"| {target['name']} | {target['measured']} | **{'met' if target['met'] else 'missed'}** |")
    same = report["agreement"]
    lines += ["", f"Raw and Triton (concurrency 1, cold) produced identical text for {same['identical']} of "
              f"{same['prompts']} prompts (greedy; the server prefills in chunks of {s['prefill_chunk']} tokens, "
              "the raw `Llama` in one batch, so floating-point sums may differ).", ""]

    lines += ["## Where the time goes", "",
              "The server log line of each request gives the engine's own figures (queue = waiting for a "
              "sequence slot inside the engine; first token = from the model's execute() to the first sampled "
              "token; TPOT = decode time / (tokens - 1)).", "",
              "| row | engine queue p50 ms | engine first token p50 ms | client TTFT p50 ms | engine TPOT p50 ms "
              "| client TPOT p50 ms |",
              "|---|---:|---:|---:|---:|---:|"]
    for key in ("triton_c1", "triton_cached", "triton_c2", "triton_c4"):
        row = rows[key]
        server = row.get("server", {})
        lines.append(f"| {labels[key][1]}, concurrency {labels[key][2]} | {ms(server.get('queue_p50_s'))} | "
                     f"{ms(server.get('first_token_p50_s'))} | {ms(row['ttft_p50_s'])} | {ms(server.get('tpot_p50_s'))} | "
                     f"{ms(row['tpot_p50_s'])} |")
    lines += ["", *report["limits"], ""]

    lines += ["## perf_analyzer --streaming", "",
              f"`perf_analyzer -i grpc --streaming`, {len(report['perf_analyzer_prompts'])} prompts sharing the "
              f"instruction block (so it is served from the prefix cache) replayed round-robin, max_tokens "
              f"{s['pa_max_tokens']}, one window of a fixed number of requests per level. Console output: "
              "`generator_perf_analyzer.txt`. TTFT and inter-response time come from its per-response "
              "timestamps (`--profile-export-file`; one response per token).", "",
              "| concurrency | requests | requests/s | responses (tokens)/s | first-response latency p50 / p95 ms | TTFT p50 / p95 ms "
              "| inter-response p50 / p95 ms | responses/request |",
              "|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for level in report["perf_analyzer"]:
        if not level["ok"]:
            lines.append(f"| {level['concurrency']} | failed (see generator_perf_analyzer.txt) ||||||")
            continue
        pa, profile = level["perf_analyzer"], level["profile"]
        per_s = float(pa["Inferences/Second"])
        lines.append(
            f"| {level['concurrency']} | {level['requests']} | {per_s:.3f} | "
            f"{pa['responses_per_s'] if pa.get('responses_per_s') is not None else '-'} | "
            f"{int(pa['p50 latency']) / 1e3:.0f} / {int(pa['p95 latency']) / 1e3:.0f} | "
            f"{ms(profile.get('ttft_p50_s'))} / {ms(profile.get('ttft_p95_s'))} | "
            f"{ms(profile.get('inter_response_p50_s'))} / {ms(profile.get('inter_response_p95_s'))} | "
            f"{profile.get('responses_per_request_mean', 0):.1f} |")
    lines += ["", "perf_analyzer measures a decoupled model's latency to its first response (its p50/p95 over "
              "few requests are coarse; the TTFT columns are from all timestamps); responses/s is its "
              "\"Response Throughput\", one response per token. perf_analyzer runs on the same 2 cores as the "
              "server.", ""]
    return "\n".join(lines)


def limits(rows: dict, targets: dict, quick: bool) -> list[str]:
    """What the figures say limits each target (computed from this run)."""
    raw, c1, cached, c4 = rows["raw_c1"], rows["triton_c1"], rows["triton_cached"], rows["triton_c4"]
    notes = []
    ttft_extra = c1["ttft_p50_s"] / raw["ttft_p50_s"] - 1
    tpot_extra = c1["tpot_p50_s"] / raw["tpot_p50_s"] - 1
    engine_tpot = c1.get("server", {}).get("tpot_p50_s")
    notes.append(
        f"- Overhead at concurrency 1: TTFT {ttft_extra:+.1%} and TPOT {tpot_extra:+.1%} against raw. "
        + (f"The engine itself decodes at {engine_tpot * 1e3:.0f} ms/token (client sees {c1['tpot_p50_s'] * 1e3:.0f}): "
           "the rest of a per-token difference is the response path (stub -> server -> gRPC stream -> client). "
           if engine_tpot else "")
        + "Inside the engine each step also sends the token's response from the decode thread and asks "
        "Triton whether the request was cancelled, and prefill runs in 128-token chunks where the raw "
        "`Llama` decodes the whole prompt in one batch.")
    cold_prompt = c1["prompt_tokens_mean"]
    cached_tokens = cached.get("server", {}).get("cached_prompt_tokens_mean", 0)
    notes.append(
        f"- Cached prefix: {cached_tokens:.0f} of {cached['prompt_tokens_mean']:.0f} prompt tokens come from the cache, "
        f"so about {1 - cached_tokens / max(cached['prompt_tokens_mean'], 1):.0%} of the prefill remains; TTFT "
        f"{cached['ttft_p50_s'] * 1e3:.0f} ms vs {c1['ttft_p50_s'] * 1e3:.0f} ms cold. Prefill is compute-bound "
        f"({c1['prompt_tokens_per_s_p50']:.0f} prompt tokens/s cold at ~{cold_prompt:.0f} tokens), so the ratio "
        "cannot go far below the share of uncached tokens plus one decode step.")
    notes.append(
        f"- Concurrency 4: {c4['output_tokens_per_s']:.2f} output tokens/s = {targets['c4_vs_c1']['ratio']:.2f}x "
        f"concurrency 1. The 2 cores are saturated already by one sequence (llama.cpp uses both threads), so "
        "batching only gains what a wider matrix multiply saves over separate ones; new requests' "
        f"prefill chunks are decoded in the same steps as the others' tokens, which shows in TPOT p95 "
        f"({c4['tpot_p95_s'] * 1e3:.0f} ms vs p50 {c4['tpot_p50_s'] * 1e3:.0f} ms) and in TTFT "
        f"(p95 {c4['ttft_p95_s'] * 1e3:.0f} ms, requests beyond 4 wait in Triton's queue).")
    if quick:
        notes.append("- --quick run: few requests and short outputs, the ratios are not meaningful.")
    return notes


def gguf_digest(path: Path) -> dict:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 24):
            digest.update(chunk)
    return {"path": str(path), "bytes": path.stat().st_size, "sha256": digest.hexdigest()}


def serving_params() -> dict[str, str]:
    config = (MODEL_REPOSITORY / "generator" / "config.pbtxt").read_text()
    params = dict(re.findall(r'key: "(\w+)" value: \{ string_value: "([^"]*)" \}', config))
    params["max_batch_size"] = re.search(r"max_batch_size: (\d+)", config)[1]
    return params


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--max-tokens", type=int, default=128, help="output tokens per request (default 128)")
    parser.add_argument("--review-tokens", type=int, default=80,
                        help="review tokens per prompt, list numbering included (default 80: ~300-token prompts)")
    parser.add_argument("--cold", type=int, default=4, help="cold prompts at concurrency 1, raw and Triton (default 4)")
    parser.add_argument("--cached", type=int, default=4, help="cached-prefix prompts after one priming one (default 4)")
    parser.add_argument("--c2", type=int, default=6, help="cold prompts at concurrency 2 (default 6)")
    parser.add_argument("--c4", type=int, default=8, help="cold prompts at concurrency 4 (default 8)")
    parser.add_argument("--pa-levels", default="1,2", help="perf_analyzer concurrency levels (default 1,2)")
    parser.add_argument("--pa-requests", type=int, default=4,
                        help="perf_analyzer requests per level, times the concurrency (default 4)")
    parser.add_argument("--pa-max-tokens", type=int, default=32, help="max_tokens in perf_analyzer requests (default 32)")
    parser.add_argument("--pa-prompts", type=int, default=8, help="distinct prompts in perf_analyzer's input (default 8)")
    parser.add_argument("--skip-perf-analyzer", action="store_true", help="leave out the perf_analyzer part")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 2/2/2/4 prompts, 24 output tokens, perf_analyzer 2 requests of 8 tokens")
    args = parser.parse_args()
    if args.quick:
        args.max_tokens, args.cold, args.cached, args.c2, args.c4 = 24, 2, 2, 2, 4
        args.pa_requests, args.pa_max_tokens, args.pa_prompts = 2, 8, 2
    other_load = OtherLoad()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if not GGUF.is_file():
        sys.exit(f"error: {GGUF} is missing; run `make generator install-models` first")
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()

    from llama_cpp import Llama
    vocab = Llama(model_path=str(GGUF), vocab_only=True, verbose=False)
    tokenize = lambda text: vocab.tokenize(text.encode("utf-8"), add_bos=False, special=True)  # noqa: E731
    prompts = PromptSet(tokenize, args)
    cold1 = prompts.cold("a", args.cold)
    cached = prompts.cached(args.cached)
    cold2, cold4 = prompts.cold("b", args.c2), prompts.cold("c", args.c4)
    warmup_raw, warmup_triton = prompts.make("warmup", "warmup", "w1", 0), prompts.make("warmup", "warmup", "w2", 0)
    pa_prompts = [prompts.make(f"pa-{i:02d}", "cached", "shared", i) for i in range(args.pa_prompts)]
    prompt_check = check_prompts(prompts, cold1 + cold2 + cold4 + [warmup_raw, warmup_triton], cached)
    del vocab
    print(f"prompts: {np.mean([p.tokens for p in cold1]):.0f} tokens on average, instruction block "
          f"{prompt_check['instruction_tokens']} tokens, cold prompts share at most "
          f"{prompt_check['cold_max_common_tokens']} tokens, cached ones {prompt_check['cached_common_tokens']}",
          flush=True)

    print("raw llama-cpp-python ...", flush=True)
    raw = run_raw(cold1, cached, warmup_raw, args.max_tokens)

    print("Triton (response cache off) ...", flush=True)
    server = TritonServer(grpc_port=free_port(), http_port=free_port(), metrics_port=free_port(),
                          response_cache=False, log_path=BUILD_DIR / "triton" / "perf_generator_server.log")
    with server:
        client = grpcclient.InferenceServerClient(server.grpc_url)
        triton_version = client.get_server_metadata(as_json=True)["version"]
        client.close()
        log = ServerLog(server.log_path)
        log.new(0, 0)
        drive(server.grpc_url, [warmup_triton], 1, 8)  # first requests pay for lazy allocations
        log.new(1)
        triton = {"c1": run_level(server, log, cold1, 1, args.max_tokens, "cold")}
        drive(server.grpc_url, cached[:1], 1, args.max_tokens)  # priming request
        prime_line = log.new(1)
        triton["cached"] = run_level(server, log, cached[1:], 1, args.max_tokens, "cached prefix")
        triton["c2"] = run_level(server, log, cold2, 2, args.max_tokens, "cold")
        triton["c4"] = run_level(server, log, cold4, 4, args.max_tokens, "cold")
        pa = ([] if args.skip_perf_analyzer else
              run_perf_analyzer(server, pa_prompts, [int(c) for c in args.pa_levels.split(",")],
                                args.pa_max_tokens, args.pa_requests))

    rows = {"raw_c1": summarise(raw["cold"]["timings"], raw["cold"]["wall_s"]),
            "raw_cached": summarise(raw["cached"]["timings"], raw["cached"]["wall_s"]),
            "triton_c1": summarise(triton["c1"]["timings"], triton["c1"]["wall_s"]),
            "triton_cached": summarise(triton["cached"]["timings"], triton["cached"]["wall_s"]),
            "triton_c2": summarise(triton["c2"]["timings"], triton["c2"]["wall_s"]),
            "triton_c4": summarise(triton["c4"]["timings"], triton["c4"]["wall_s"])}
    overhead = rows["raw_c1"]["output_tokens_per_s"] / rows["triton_c1"]["output_tokens_per_s"] - 1
    c4_ratio = rows["triton_c4"]["output_tokens_per_s"] / rows["triton_c1"]["output_tokens_per_s"]
    ttft_ratio = rows["triton_cached"]["ttft_p50_s"] / rows["triton_c1"]["ttft_p50_s"]
    raw_ttft_ratio = rows["raw_cached"]["ttft_p50_s"] / rows["raw_c1"]["ttft_p50_s"]
    targets = {
        "overhead_c1": {
            "name": "Triton overhead at concurrency 1 <= 5 % (output tokens/s, same cold prompts)",
            "value": overhead, "met": overhead <= TARGETS["overhead_c1"],
            "measured": f"{overhead:+.1%} ({rows['triton_c1']['output_tokens_per_s']:.2f} vs raw "
                        f"{rows['raw_c1']['output_tokens_per_s']:.2f} tokens/s)"},
        "c4_vs_c1": {
            "name": "aggregate output tokens/s at concurrency 4 >= 1.3x concurrency 1",
            "ratio": c4_ratio, "met": c4_ratio >= TARGETS["c4_vs_c1"],
            "measured": f"{c4_ratio:.2f}x ({rows['triton_c4']['output_tokens_per_s']:.2f} vs "
                        f"{rows['triton_c1']['output_tokens_per_s']:.2f} tokens/s)"},
        "cached_ttft_ratio": {
            "name": "TTFT with the instruction prefix cached <= 0.5x cold (p50)",
            "ratio": ttft_ratio, "met": ttft_ratio <= TARGETS["cached_ttft_ratio"],
            "measured": f"{ttft_ratio:.2f}x ({rows['triton_cached']['ttft_p50_s'] * 1e3:.0f} vs "
                        f"{rows['triton_c1']['ttft_p50_s'] * 1e3:.0f} ms; raw llama-cpp-python: {raw_ttft_ratio:.2f}x)"},
    }
    same = sum(r.text == t.text for r, t in zip(raw["cold"]["timings"], triton["c1"]["timings"]))
    machine = machine_info()
    machine["versions"]["llama_cpp_python"] = metadata.version("llama_cpp_python")
    report = {
        "machine": machine,
        "triton_version": triton_version,
        "data_source": load_reviews(1).source,
        "quick": args.quick,
        "settings": {"model": "Qwen2.5-Coder-1.5B-Instruct Q4_K_M", "gguf": gguf_digest(GGUF),
                     "max_tokens": args.max_tokens, "review_tokens": args.review_tokens, "temperature": 0.0,
                     "raw": {"n_ctx": RAW_N_CTX, "n_threads": RAW_THREADS, "n_batch": 512},
                     "server_params": serving_params(),
                     "server_engine": ", ".join(f"{k}={v}" for k, v in serving_params().items() if k != "chat_template"),
                     "prefill_chunk": serving_params().get("prefill_chunk"),
                     "pa_max_tokens": args.pa_max_tokens, "pa_requests_per_level": args.pa_requests,
                     "response_cache": False},
        "prompts": {**prompt_check, "raw_cached_tokens": {"cold": 0, "cached prefix": min(prompt_check["cached_common_tokens"], default=0)}},
        "rows": rows,
        "targets": targets,
        "agreement": {"identical": same, "prompts": len(cold1)},
        "perf_analyzer_prompts": [p.name for p in pa_prompts],
        "perf_analyzer": pa,
        "requests": {"raw": {k: [asdict(t) for t in v["timings"]] for k, v in raw.items()},
                     "raw_prime": asdict(raw["cached"]["prime"]),
                     "triton": {k: [asdict(t) for t in v["timings"]] for k, v in triton.items()},
                     "triton_prime_server": prime_line},
        "duration_s": round(time.perf_counter() - started, 1),
    }
    report["limits"] = limits(rows, targets, args.quick)
    write_results("generator", report, markdown, other_load)
    print(f"took {report['duration_s']:.0f} s", flush=True)


if __name__ == "__main__":
    main()
