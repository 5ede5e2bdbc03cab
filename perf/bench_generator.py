"""Tokens per second of the served LLM `generator` against raw llama-cpp-python, in one run.

    python perf/bench_generator.py [--max-tokens 128] [--cold 4] [--cached 4] [--c2 6] [--c4 8] [--quick]

Prompts (harness/generator_prompts.py): about 300 tokens of ChatML, a fixed ~210-token instruction
block and ~80 tokens of real reviews, either cold (no prefix any earlier prompt shares) or cached
(the instruction block of the request before them). Greedy decoding (temperature 0: raw and served
text can be compared) and max_tokens 128, asking for a long answer; output tokens are counted.

One measurement at a time (the machine has 2 cores):
  1. raw llama-cpp-python in this process: `Llama(n_ctx=4096, n_threads=2)`,
     `create_completion(stream=True, temperature=0)`. `Llama` reuses the KV cache of the previous
     prompt's common prefix, so `reset()` is called before every cold prompt (fully cold, like the
     server's), and not before the cached ones (it then reuses the instruction block as the
     server's prefix cache does). Then the model is freed.
  2. tritonserver (response cache off), the generator streamed through the project's client
     (SyncClient) by N closed-loop callers: concurrency 1 on the same cold prompts as the raw run,
     then the cached-prefix prompts, then fresh cold prompts at concurrency 2 and 4.

Per row: aggregate output tokens/s (all output tokens / wall time of the row), TTFT and time per
output token (after the first) p50/p95 as the client sees them, prompt tokens/s (prompt tokens /
TTFT), and the engine's own figures from the generator's Triton metrics on the metrics endpoint,
read before and after the row: prompt tokens reused from the prefix cache, queue time, time to
first token and decode time per token (means). perf_analyzer --streaming: bench_perf_analyzer.py.
Targets: Triton overhead <= 5 % at concurrency 1 (output tokens/s, cold prompts); aggregate
output tokens/s at concurrency 4 >= 1.3x concurrency 1; TTFT with the instruction prefix cached
<= 0.5x a cold one. Writes generator.json, .md, .png to perf/results/ (build/perf-smoke/ with --quick).
"""
import time
from dataclasses import asdict, dataclass

import numpy as np

from harness import results
from harness.baselines import THREADS, gguf_tokenizer, llama
from harness.generator_prompts import PromptSet
from harness.load import closed_loop, percentile
from harness.server import model_parameters, served_file, server_version, triton
from reviewlens.client.sync import SyncClient
from reviewlens.client.wire import GenerationParams
from reviewlens.ensemble import interface as api
from reviewlens.local import triton_metrics
from reviewlens.local.sample_data import HELD_OUT

GREEDY = GenerationParams(temperature=0.0)
RAW_N_CTX = 4096
TARGETS = {"overhead_c1": 0.05, "c4_vs_c1": 1.3, "cached_ttft_ratio": 0.5}
ROWS = {"raw_c1": ("raw llama-cpp-python", "cold", 1), "raw_cached": ("raw llama-cpp-python", "cached prefix", 1),
        "triton_c1": ("Triton generator", "cold", 1), "triton_cached": ("Triton generator", "cached prefix", 1),
        "triton_c2": ("Triton generator", "cold", 2), "triton_c4": ("Triton generator", "cold", 4)}


@dataclass
class Timing:
    """One request as the client saw it."""
    prompt: str
    prompt_tokens: int
    output_tokens: int
    ttft_s: float
    total_s: float
    text: str
    finish: str  # "length" at max_tokens, else "stop"

    @property
    def tpot_s(self) -> float:
        return (self.total_s - self.ttft_s) / (self.output_tokens - 1) if self.output_tokens > 1 else 0.0


def summarise(timings: list[Timing], wall_s: float, engine: dict | None = None) -> dict:
    ttft, output = [t.ttft_s for t in timings], sum(t.output_tokens for t in timings)
    tpot = [t.tpot_s for t in timings if t.output_tokens > 1]
    return {"requests": len(timings), "wall_s": round(wall_s, 3),
            "prompt_tokens_mean": float(np.mean([t.prompt_tokens for t in timings])),
            "output_tokens_mean": float(np.mean([t.output_tokens for t in timings])), "output_tokens_total": output,
            "stopped_early": sum(t.finish == "stop" for t in timings), "output_tokens_per_s": output / wall_s,
            "ttft_p50_s": percentile(ttft, 50), "ttft_p95_s": percentile(ttft, 95),
            "tpot_p50_s": percentile(tpot, 50), "tpot_p95_s": percentile(tpot, 95),
            "prompt_tokens_per_s_p50": percentile([t.prompt_tokens / t.ttft_s for t in timings], 50),
            **({"engine": engine} if engine else {})}


def raw_generate(llm, prompt, max_tokens: int) -> Timing:
    started, first, pieces, finish = time.perf_counter(), None, [], ""
    for chunk in llm.create_completion(prompt.text, max_tokens=max_tokens, temperature=0.0, stream=True):
        first = first or time.perf_counter()
        pieces.append(chunk["choices"][0]["text"])
        finish = chunk["choices"][0].get("finish_reason") or finish
    end, text = time.perf_counter(), "".join(pieces)
    # The stream does not count tokens: at the limit there are max_tokens, else count the text.
    output = max_tokens if finish == "length" else len(llm.tokenize(text.encode(), add_bos=False, special=False))
    return Timing(prompt.name, prompt.tokens, output, (first or end) - started, end - started, text, finish)


def run_raw(cold: list, cached: list, warmup, max_tokens: int) -> dict:
    llm = llama(RAW_N_CTX)
    try:
        raw_generate(llm, warmup, 8)
        rows = {}
        for kind, prompts in (("cold", cold), ("cached", cached[1:])):
            llm.reset()
            prime = None if kind == "cold" else raw_generate(llm, cached[0], max_tokens)
            start, timings = time.perf_counter(), []
            for prompt in prompts:
                if kind == "cold":
                    llm.reset()  # no reuse of the previous prompt: fully cold, as on the server
                timings.append(raw_generate(llm, prompt, max_tokens))
                print(f"  raw {prompt.name}: TTFT {timings[-1].ttft_s:.2f} s, {timings[-1].output_tokens} tokens "
                      f"in {timings[-1].total_s:.1f} s", flush=True)
            rows[kind] = {"timings": timings, "wall_s": time.perf_counter() - start, "prime": prime}
        return rows
    finally:
        llm.close()  # frees the weights now: the server must not share the memory with them


def engine_figures(url: str, before: triton_metrics.Metrics, requests: int) -> dict:
    """The generator engine's own figures for the requests since `before`, from its Triton metrics."""
    deadline = time.monotonic() + 5  # the engine counts a request just after its last response
    while True:
        figures = triton_metrics.delta(before, triton_metrics.scrape(url))
        ended = figures.value(api.GENERATOR_REQUESTS.name)
        if ended >= requests or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    decode_steps = figures.value(api.GENERATOR_OUTPUT_TOKENS.name) - ended  # tokens after each request's first
    prefill = {source: figures.value(api.GENERATOR_PREFILL_TOKENS.name, source=source) / max(ended, 1)
               for source in api.PREFILL_SOURCES}
    return {"requests": int(ended), "reused_prompt_tokens_mean": prefill[api.PREFILL_REUSED],
            "computed_prompt_tokens_mean": prefill[api.PREFILL_COMPUTED],
            "queue_mean_s": figures.mean(api.GENERATOR_QUEUE_SECONDS.name),
            "ttft_mean_s": figures.mean(api.GENERATOR_TIME_TO_FIRST_TOKEN_SECONDS.name),
            "tpot_mean_s": figures.value(f"{api.GENERATOR_DECODE_SECONDS.name}_sum") / max(decode_steps, 1)}


def run_level(client: SyncClient, metrics_url: str, prompts: list, concurrency: int, max_tokens: int) -> dict:
    """`concurrency` closed-loop streaming callers over the prompts; client timings and engine figures."""
    before = triton_metrics.scrape(metrics_url)
    load = closed_loop(lambda p: client.generate(p.text, max_tokens, GREEDY, stream=True), prompts, concurrency)
    timings = [Timing(p.name, g.prompt_tokens, g.output_tokens, g.time_to_first_token_s, g.total_s, g.text,
                      "length" if g.output_tokens >= max_tokens else "stop") for p, g in zip(prompts, load.answers)]
    row = summarise(timings, load.wall_s, engine_figures(metrics_url, before, len(prompts)))
    print(f"  Triton {prompts[0].kind} concurrency {concurrency}: {row['output_tokens_per_s']:.1f} output tokens/s, "
          f"TTFT p50 {row['ttft_p50_s']:.2f} s, TPOT p50 {row['tpot_p50_s'] * 1e3:.0f} ms", flush=True)
    return {"timings": timings, "row": row}


def targets(rows: dict) -> dict:
    raw, c1, cached, c4 = rows["raw_c1"], rows["triton_c1"], rows["triton_cached"], rows["triton_c4"]
    overhead = raw["output_tokens_per_s"] / c1["output_tokens_per_s"] - 1
    c4_ratio = c4["output_tokens_per_s"] / c1["output_tokens_per_s"]
    ttft_ratio = cached["ttft_p50_s"] / c1["ttft_p50_s"]
    raw_ratio = rows["raw_cached"]["ttft_p50_s"] / raw["ttft_p50_s"]
    return {
        "overhead_c1": {"name": "Triton overhead at concurrency 1 <= 5 % (output tokens/s, same cold prompts)",
                        "value": overhead, "met": overhead <= TARGETS["overhead_c1"],
                        "measured": f"{overhead:+.1%} ({c1['output_tokens_per_s']:.2f} vs raw "
                                    f"{raw['output_tokens_per_s']:.2f} tokens/s)"},
        "c4_vs_c1": {"name": "aggregate output tokens/s at concurrency 4 >= 1.3x concurrency 1",
                     "ratio": c4_ratio, "met": c4_ratio >= TARGETS["c4_vs_c1"],
                     "measured": f"{c4_ratio:.2f}x ({c4['output_tokens_per_s']:.2f} vs {c1['output_tokens_per_s']:.2f} tokens/s)"},
        "cached_ttft_ratio": {"name": "TTFT with the instruction prefix cached <= 0.5x cold (p50)",
                              "ratio": ttft_ratio, "met": ttft_ratio <= TARGETS["cached_ttft_ratio"],
                              "measured": f"{ttft_ratio:.2f}x ({cached['ttft_p50_s'] * 1e3:.0f} vs "
                                          f"{c1['ttft_p50_s'] * 1e3:.0f} ms; raw llama-cpp-python: {raw_ratio:.2f}x)"},
    }


def limits(rows: dict, served: dict[str, str]) -> list[str]:
    """What this run's figures say limits each target."""
    raw, c1, cached, c4 = rows["raw_c1"], rows["triton_c1"], rows["triton_cached"], rows["triton_c4"]
    reused, prompt = cached["engine"]["reused_prompt_tokens_mean"], cached["prompt_tokens_mean"]
    return [
        f"- Overhead at concurrency 1: TTFT {c1['ttft_p50_s'] / raw['ttft_p50_s'] - 1:+.1%} and TPOT "
        f"{c1['tpot_p50_s'] / raw['tpot_p50_s'] - 1:+.1%} against raw. The engine decodes at "
        f"{c1['engine']['tpot_mean_s'] * 1e3:.0f} ms/token (client sees {c1['tpot_p50_s'] * 1e3:.0f}): the rest of "
        "a per-token difference is the response path (stub -> server -> gRPC stream -> client); prefill runs in "
        "chunks where the raw `Llama` decodes the whole prompt in one batch.",
        f"- Cached prefix: {reused:.0f} of {prompt:.0f} prompt tokens come from the cache, so about "
        f"{1 - reused / max(prompt, 1):.0%} of the prefill remains; TTFT {cached['ttft_p50_s'] * 1e3:.0f} ms vs "
        f"{c1['ttft_p50_s'] * 1e3:.0f} ms cold. Prefill is compute-bound ({c1['prompt_tokens_per_s_p50']:.0f} prompt "
        "tokens/s cold), so the ratio cannot go far below the share of uncached tokens plus one decode step.",
        f"- Concurrency 4: {c4['output_tokens_per_s']:.2f} output tokens/s. One sequence already keeps both cores "
        "busy (llama.cpp uses both threads), so batching only gains what a wider matrix multiply saves; new "
        "requests' prefill chunks share the steps of the others' tokens: TPOT p95 "
        f"{c4['tpot_p95_s'] * 1e3:.0f} ms vs p50 {c4['tpot_p50_s'] * 1e3:.0f} ms, engine queue "
        f"{c4['engine']['queue_mean_s'] * 1e3:.0f} ms on average; requests beyond the engine's "
        f"{served['max_batch_size']} sequences wait in Triton's queue."]


def measure(args, out) -> dict:
    if args.quick:
        args.max_tokens, args.cold, args.cached, args.c2, args.c4 = 24, 2, 2, 2, 4
    prompts = PromptSet(gguf_tokenizer(), max(args.cold, args.cached, args.c2, args.c4) + 1, args.review_tokens)
    cold1, cached, cold2, cold4 = prompts.cold("a", args.cold), prompts.cached(args.cached), \
        prompts.cold("b", args.c2), prompts.cold("c", args.c4)
    warmup_raw, warmup_triton = prompts.make("warmup", "warmup", "w1", 0), prompts.make("warmup", "warmup", "w2", 0)
    prompt_check = prompts.check(cold1 + cold2 + cold4 + [warmup_raw, warmup_triton], cached)
    del prompts  # and its vocab-only Llama: llama.cpp crashes loading the model beside it
    print(f"prompts: {np.mean([p.tokens for p in cold1]):.0f} tokens, {prompt_check}\nraw llama-cpp-python ...", flush=True)
    raw = run_raw(cold1, cached, warmup_raw, args.max_tokens)

    print("Triton (response cache off) ...", flush=True)
    with triton("generator") as server, SyncClient(server.grpc_url) as client:
        metrics_url = triton_metrics.metrics_url(server.host, server.metrics_port)
        run_level(client, metrics_url, [warmup_triton], 1, 8)  # first requests pay for lazy allocations
        levels = {"c1": run_level(client, metrics_url, cold1, 1, args.max_tokens)}
        levels["prime"] = run_level(client, metrics_url, cached[:1], 1, args.max_tokens)
        levels["cached"] = run_level(client, metrics_url, cached[1:], 1, args.max_tokens)
        levels["c2"] = run_level(client, metrics_url, cold2, 2, args.max_tokens)
        levels["c4"] = run_level(client, metrics_url, cold4, 4, args.max_tokens)
        served = model_parameters(server.grpc_url, api.GENERATOR)
        version = server_version(server.grpc_url)

    rows = {"raw_c1": summarise(raw["cold"]["timings"], raw["cold"]["wall_s"]),
            "raw_cached": summarise(raw["cached"]["timings"], raw["cached"]["wall_s"]),
            **{f"triton_{level}": levels[level]["row"] for level in ("c1", "cached", "c2", "c4")}}
    return {
        "triton_version": version, "data_source": results.repo_relative(HELD_OUT),
        "settings": {"gguf": results.file_digest(served_file(api.GENERATOR, "model.gguf")),
                     "max_tokens": args.max_tokens, "review_tokens": args.review_tokens, "temperature": 0.0,
                     "raw": {"n_ctx": RAW_N_CTX, "n_threads": THREADS}, "server_params": served,
                     "response_cache": False},
        "prompts": {**prompt_check, "raw_cached_tokens": {"cold": 0, "cached prefix": min(prompt_check["cached_common_tokens"], default=0)}},
        "rows": rows, "targets": targets(rows), "limits": limits(rows, served),
        "agreement": {"identical": sum(r.text == t.text for r, t in zip(raw["cold"]["timings"], levels["c1"]["timings"])),
                      "prompts": len(cold1)},
        "requests": {"raw": {k: [asdict(t) for t in v["timings"]] for k, v in raw.items()},
                     "triton": {k: [asdict(t) for t in v["timings"]] for k, v in levels.items()}},
    }


def markdown(report: dict) -> str:
    s, rows, server = report["settings"], report["rows"], report["settings"]["server_params"]
    ms = lambda seconds: "-" if seconds is None else f"{seconds * 1e3:.0f}"  # noqa: E731
    engine = ", ".join(f"{k}={v}" for k, v in server.items() if k != api.CHAT_TEMPLATE_PARAMETER)
    lines = results.header(
        report, "Generator: Triton `generator` vs raw llama-cpp-python",
        f"`{s['gguf']['path']}` ({s['gguf']['bytes'] / 2**30:.2f} GiB); prompts of ~{rows['triton_c1']['prompt_tokens_mean']:.0f} "
        f"tokens (a {report['prompts']['instruction_tokens']}-token instruction block + real reviews from "
        f"`{report['data_source']}`), {server[api.CHAT_TEMPLATE_PARAMETER]}, greedy, max_tokens {s['max_tokens']}; raw: "
        f"`Llama(n_ctx={s['raw']['n_ctx']}, n_threads={s['raw']['n_threads']})`, server: {engine}; Triton "
        f"{report['triton_version']}, llama-cpp-python {report['machine']['versions']['llama_cpp_python']};")
    lines += ["| system | prompts | concurrency | requests | prompt tokens | from prefix cache | output tokens (mean) "
              "| output tokens/s | vs raw | TTFT p50 / p95 ms | TPOT p50 / p95 ms | prompt tokens/s (p50) |",
              "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for key, (system, kind, concurrency) in ROWS.items():
        row = rows[key]
        cached = (f"{row['engine']['reused_prompt_tokens_mean']:.0f}" if "engine" in row
                  else report["prompts"]["raw_cached_tokens"][kind])
        stopped = f" ({row['stopped_early']} stopped early)" if row["stopped_early"] else ""
        lines.append(f"| {system} | {kind} | {concurrency} | {row['requests']} | {row['prompt_tokens_mean']:.0f} | "
                     f"{cached} | {row['output_tokens_mean']:.1f}{stopped} | {row['output_tokens_per_s']:.2f} | "
                     f"{row['output_tokens_per_s'] / rows['raw_c1']['output_tokens_per_s']:.2f}x | "
                     f"{ms(row['ttft_p50_s'])} / {ms(row['ttft_p95_s'])} | {ms(row['tpot_p50_s'])} / "
                     f"{ms(row['tpot_p95_s'])} | {row['prompt_tokens_per_s_p50']:.0f} |")
    lines += ["", "Output tokens/s = all output tokens of the row / its wall time (prefill included; at concurrency N, "
              "N streams together). TTFT and TPOT (time per output token after the first) per request, as the client "
              "sees them; prompt tokens/s = prompt tokens / TTFT. Cold prompts share no prefix with any earlier "
              "prompt; cached ones share the instruction block with the request before them.", "",
              "## Targets", "", "| target | measured | |", "|---|---|---|"]
    lines += [f"| {t['name']} | {t['measured']} | **{'met' if t['met'] else 'missed'}** |" for t in report["targets"].values()]
    same = report["agreement"]
    lines += ["", f"Raw and Triton (concurrency 1, cold) produced identical text for {same['identical']} of "
              f"{same['prompts']} prompts (greedy; the server prefills in chunks of {server['prefill_chunk']} tokens, "
              "the raw `Llama` in one batch, so floating-point sums may differ).", "", "## Where the time goes", "",
              "The generator engine's own figures, from its Triton metrics (means per request): queue = waiting for a "
              "sequence slot in the engine; TTFT = from arrival in the engine to the first token; TPOT = decode "
              "time / (tokens - 1).", "",
              "| row | engine queue ms | engine TTFT ms | client TTFT p50 ms | engine TPOT ms | client TPOT p50 ms |",
              "|---|---:|---:|---:|---:|---:|"]
    for key in ("triton_c1", "triton_cached", "triton_c2", "triton_c4"):
        row, (_, kind, concurrency) = rows[key], ROWS[key]
        lines.append(f"| {kind}, concurrency {concurrency} | {ms(row['engine']['queue_mean_s'])} | "
                     f"{ms(row['engine']['ttft_mean_s'])} | {ms(row['ttft_p50_s'])} | {ms(row['engine']['tpot_mean_s'])} | "
                     f"{ms(row['tpot_p50_s'])} |")
    return "\n".join([*lines, "", *report["limits"], ""])


def plot(report: dict, path) -> None:
    labels = {key: f"{system.split()[0]} {kind} c{concurrency}" for key, (system, kind, concurrency) in ROWS.items()}
    results.bar_chart(path, "Generator: raw llama-cpp-python vs Triton", [
        ("output tokens/s", {labels[k]: row["output_tokens_per_s"] for k, row in report["rows"].items()}),
        ("TTFT p50 s", {labels[k]: row["ttft_p50_s"] for k, row in report["rows"].items()})])


def arguments(parser) -> None:
    parser.add_argument("--max-tokens", type=int, default=128, help="output tokens per request (default 128)")
    parser.add_argument("--review-tokens", type=int, default=80,
                        help="review tokens per prompt, list numbering included (default 80: ~300-token prompts)")
    parser.add_argument("--cold", type=int, default=4, help="cold prompts at concurrency 1, raw and Triton (default 4)")
    parser.add_argument("--cached", type=int, default=4, help="cached-prefix prompts after one priming one (default 4)")
    parser.add_argument("--c2", type=int, default=6, help="cold prompts at concurrency 2 (default 6)")
    parser.add_argument("--c4", type=int, default=8, help="cold prompts at concurrency 4 (default 8)")


if __name__ == "__main__":
    results.main("generator", measure, markdown, plot, arguments)
