"""Reliability of the served models under load, overload, bad input, fuzzing and faults, in one run.

    python perf/reliability.py [--quick]        # or: make reliability

Against a real tritonserver and a real redis-server on free loopback ports:
  1. sustained load: 10,000 requests at concurrency 64 over the three served models, one text or
     one short prompt per request, through the project's client with no retry window (a refusal
     is counted, never hidden by a retry); RSS of tritonserver and its stubs sampled meanwhile;
  2. overload: bursts beyond the queue limits (sentiment: its tokenizer's queue of 1,024; the
     generator: 4 sequences + a queue of 64), all sent at once;
  3. the bad-input matrix: every class of bad request, each sent beside good neighbours, with the
     outcome it should get and the one it got;
  4. fuzzing: 10,000 requests of random bytes, random code points and damaged reviews, each with
     the outcome the served interface promises for it (interface.is_blank, MAX_TEXT_BYTES, UTF-8);
  5. redis-server killed (SIGKILL) during an analysis (SyncAnalyzer): the run completes uncached;
  6. tritonserver killed (SIGKILL) during an analysis and started again on the same ports;
  7. a graceful stop (SIGINT, as TritonServer.stop() and Ctrl-C) under load, with readiness polled
     on HTTP and gRPC and requests sent in a tight loop, to see the order of events.
Steps 1-4 and 7 share one server (response cache off: every request is computed), 5-6 another
(response cache on, as deployed). After each step the server must be READY and answer.
Writes reliability.json, .md and .png to perf/results/ (build/perf-smoke/ with --quick).
"""
import asyncio
import logging
import os
import random
import signal
import threading
import time
from collections import Counter
from dataclasses import replace

import numpy as np
import redis
import tritonclient.grpc as grpcclient
import tritonclient.grpc.aio as aioclient

from harness import faults, results
from harness.baselines import sample_reviews
from harness.faults import Outcome
from harness.load import closed_loop, percentile
from harness.server import server_version, triton
from reviewlens.client import transport, wire
from reviewlens.client.analysis import Entity
from reviewlens.client.settings import Settings
from reviewlens.client.sync import SyncAnalyzer, SyncClient
from reviewlens.client.wire import GenerationParams
from reviewlens.ensemble import interface as api
from reviewlens.local.paths import BUILD_DIR
from reviewlens.local.redis_server import RedisServer
from reviewlens.local.sample_data import best_covered_movies
from reviewlens.local.tritonserver import EXIT_TIMEOUT_S, TritonServer, free_port

ENSEMBLES = (api.SENTIMENT.name, api.EMBED.name)
# Share of each model in the sustained load and the fuzzing: the generator decodes ~25 tokens/s on
# the 2 cores, so it gets few requests, each a short prompt and a few tokens.
LOAD_MIX = {api.SENTIMENT.name: 0.695, api.EMBED.name: 0.30, api.GENERATOR.name: 0.005}
FUZZ_MIX = {api.SENTIMENT.name: 0.60, api.EMBED.name: 0.395, api.GENERATOR.name: 0.005}
LOAD_MAX_TOKENS = 4
MAX_RSS_GROWTH = 0.10
GOOD_NEIGHBOURS = 8
GREEDY = GenerationParams(temperature=0.0)
SIZES = {  # full run, --quick
    "load_requests": (10_000, 600), "load_warmup": (500, 100), "concurrency": (64, 64),
    "burst_sentiment": (3_000, 1_500), "burst_generator": (100, 80), "fuzz_cases": (10_000, 600),
    "entities": (2, 2), "reviews_per_entity": (3, 3), "stop_callers": (32, 16),
}


def size(args, name: str) -> int:
    return SIZES[name][1 if args.quick else 0]


def server_answers(server: TritonServer) -> dict:
    """READY, and one request to each served model answered (or what went wrong, within a minute)."""
    with SyncClient(server.grpc_url, Settings(retry_window_s=0, deadline_s=60)) as client:
        try:
            label = client.sentiment(["Still here and still great."])[0].label
            norm = float(np.linalg.norm(client.embed(["Still here."])[0]))
            tokens = client.generate(faults.short_prompt("fine"), 2, GREEDY).output_tokens
        except Exception as error:  # noqa: BLE001  (a server that stopped answering is a finding)
            return {"ready": server.is_ready(), "sentiment": None, "generator_tokens": 0,
                    "failed": " / ".join(faults.classify(error))}
    return {"ready": server.is_ready(), "sentiment": label, "embed_norm": round(norm, 4), "generator_tokens": tokens}


def latency_ms(outcomes: list[Outcome], q: float) -> float | None:
    value = percentile([o.latency_s * 1e3 for o in outcomes if o.kind == "answered"], q)
    return round(value, 1) if value is not None else None


# -- 1. sustained load -----------------------------------------------------------------------------

def sustained_load(server: TritonServer, reviews: list[str], args) -> dict:
    rng = random.Random(11)
    models = list(LOAD_MIX)
    count, warmup, concurrency = size(args, "load_requests"), size(args, "load_warmup"), size(args, "concurrency")
    items = [(rng.choices(models, weights=list(LOAD_MIX.values()))[0], rng.choice(reviews))
             for _ in range(warmup + count)]
    # No retry window: a refusal comes back as one, so nothing is hidden; a deadline turns a hang
    # into a loss instead of a stuck run.
    settings = Settings(retry_window_s=0, deadline_s=600)

    with SyncClient(server.grpc_url, settings) as client:
        def call(item) -> Outcome:
            model, text = item
            sent = time.monotonic()
            try:
                if model == api.SENTIMENT.name:
                    ok = client.sentiment([text])[0].label in api.SENTIMENT_LABELS
                elif model == api.EMBED.name:
                    ok = abs(float(np.linalg.norm(client.embed([text])[0])) - 1) < 1e-2
                else:
                    ok = client.generate(faults.short_prompt(text), LOAD_MAX_TOKENS, GREEDY).output_tokens > 0
            except Exception as error:  # noqa: BLE001  (every outcome is counted)
                return Outcome(*faults.classify(error), sent, time.monotonic())
            return Outcome("answered" if ok else "lost", "" if ok else "an answer out of range", sent, time.monotonic())

        closed_loop(call, items[:warmup], concurrency)  # first requests pay for lazy allocations
        time.sleep(2)
        with faults.RssSampler(server) as rss:
            before = rss.sample()
            load = closed_loop(call, items[warmup:], concurrency)
            time.sleep(2)
            after = rss.sample()
    outcomes = load.answers
    per_model = {}
    for model in models:
        mine = [o for (m, _), o in zip(items[warmup:], outcomes) if m == model]
        per_model[model] = {"requests": len(mine), **faults.tally(mine),
                            "p50_ms": latency_ms(mine, 50), "p99_ms": latency_ms(mine, 99)}
    total_before, total_after = sum(before.values()), sum(after.values())
    peak = max(sum(sample.values()) for _, sample in rss.samples)
    start = rss.samples[0][0]
    return {
        "requests": count, "warmup_requests": warmup, "concurrency": concurrency, "mix": LOAD_MIX,
        "generator_max_tokens": LOAD_MAX_TOKENS, "wall_s": round(load.wall_s, 1),
        "requests_per_s": round(count / load.wall_s, 1), **faults.tally(outcomes),
        "p50_ms": latency_ms(outcomes, 50), "p99_ms": latency_ms(outcomes, 99), "per_model": per_model,
        "details": faults.details(outcomes),
        "rss_mib": {"before": before, "after": after, "total_before": round(total_before, 1),
                    "total_after": round(total_after, 1), "total_peak": round(peak, 1),
                    "growth": round(total_after / total_before - 1, 4),
                    "samples": [(round(t - start, 1), round(sum(s.values()), 1)) for t, s in rss.samples]},
        "after": server_answers(server),
    }


# -- 2. overload -----------------------------------------------------------------------------------

def overload(server: TritonServer, reviews: list[str], args) -> dict:
    async def bursts() -> dict:
        client = aioclient.InferenceServerClient(server.grpc_url)
        try:
            rows = [[reviews[i % len(reviews)].encode()] for i in range(size(args, "burst_sentiment"))]
            sentiment = await asyncio.gather(*(faults.infer(
                client, api.SENTIMENT.name, faults.text_rows(row),
                check=lambda result: faults.valid_answer(api.SENTIMENT.name, result, 1)) for row in rows))
            prompts = [faults.short_prompt(reviews[i]) for i in range(size(args, "burst_generator"))]
            generator = await asyncio.gather(*(faults.generate(
                client, wire.generator_inputs(p, 2, GREEDY, False)) for p in prompts))
        finally:
            await client.close()
        return {api.SENTIMENT.name: sentiment, api.GENERATOR.name: generator}

    started = time.monotonic()
    outcome_lists = asyncio.run(bursts())
    report = {model: {"sent_at_once": len(outcomes), **faults.tally(outcomes),
                      "refused_queue_full": sum(o.kind == "refused" and transport.QUEUE_FULL in o.detail
                                                for o in outcomes),
                      "p50_ms": latency_ms(outcomes, 50), "details": faults.details(outcomes)}
              for model, outcomes in outcome_lists.items()}
    report["wall_s"] = round(time.monotonic() - started, 1)
    report["after"] = server_answers(server)
    return report


# -- 3. the bad-input matrix -----------------------------------------------------------------------

def _ensemble_cases(model: str) -> list[dict]:
    """Every class of bad (or borderline) TEXT request to an ensemble, with the outcome it should get."""
    t, rows = faults.tensor, faults.text_rows
    big = ("An enormous review that goes on and on. " * 2500).encode()
    cases = [
        ("empty text", rows([b""]), "error", "TEXT[0] is empty"),
        ("whitespace only", rows([b"   \n\t "]), "error", "TEXT[0] is empty"),
        ("zero-width characters only", rows(["\u200b\u200d\u2060\ufeff".encode()]), "error",
         "TEXT[0] is empty (only control or format characters)"),
        ("bidi controls only", rows(["\u202e\u200f\u2066 \u2069".encode()]), "error", "TEXT[0] is empty"),
        ("an empty row beside a good one", rows([b"fine review", b""]), "error", "TEXT[1] is empty"),
        ("invalid UTF-8", rows([b"good\xff movie"]), "error", "TEXT[0] is not valid UTF-8: byte 0xff at offset 4"),
        ("lone surrogate", rows(["a\ud800b".encode("utf-8", "surrogatepass")]), "error",
         "TEXT[0] is not valid UTF-8: byte 0xed at offset 1"),
        ("overlong UTF-8 encoding", rows([b"a\xc0\xafb"]), "error", "not valid UTF-8: byte 0xc0"),
        ("multi-byte character cut at the end", rows([b"caf\xc3"]), "error", "not valid UTF-8: byte 0xc3 at offset 3"),
        ("NUL and control characters inside a review", rows([b"good\x00 movie\x07, fine\x1b"]), "answered", ""),
        ("100,000-character text (truncated, flagged)", rows([big, b"short one"]), "answered", ""),
        ("2,000,000 bytes (over the 1,000,000-byte limit)", rows([b"a" * 2_000_000]), "error",
         "TEXT[0] is 2,000,000 bytes; the limit is 1,000,000"),
        ("wrong datatype INT32", [t(api.TEXT.name, np.array([[1]], dtype=np.int32), "INT32")], "error",
         f"data-type is 'INT32', but model '{model}' expects 'BYTES'"),
        ("wrong datatype FP32", [t(api.TEXT.name, np.array([[1.0]], dtype=np.float32), "FP32")], "error",
         f"data-type is 'FP32', but model '{model}' expects 'BYTES'"),
        ("wrong shape [1, 2]", [t(api.TEXT.name, np.array([[b"one", b"two"]], dtype=object), "BYTES")], "error",
         "unexpected shape"),
        ("no batch dimension, shape [1]", [t(api.TEXT.name, np.array([b"one"], dtype=object), "BYTES")], "error",
         "unexpected shape"),
        ("zero rows, shape [0, 1]", [t(api.TEXT.name, np.zeros((0, 1), dtype=object), "BYTES")], "error", "got 0"),
        (f"{api.MAX_BATCH_SIZE} rows (the limit)", rows([b"a fine film"] * api.MAX_BATCH_SIZE), "answered", ""),
        (f"{api.MAX_BATCH_SIZE + 1} rows", rows([b"a fine film"] * (api.MAX_BATCH_SIZE + 1)), "error",
         f"batch-size must be <= {api.MAX_BATCH_SIZE}"),
        ("unknown input name", [t("TEXTS", np.array([[b"good"]], dtype=object), "BYTES")], "error",
         "unexpected inference input 'TEXTS'"),
        ("no input", [], "error", "missing required input(s) ['TEXT']"),
    ]
    built = [{"name": name, "model": model, "inputs": inputs, "expected": expected, "message": message}
             for name, inputs, expected, message in cases]
    built += [{"name": "unknown output requested", "model": model, "inputs": rows([b"good"]), "expected": "error",
               "message": "unexpected inference output 'NOPE'", "outputs": ["NOPE"]},
              {"name": "unknown version 7", "model": model, "inputs": rows([b"good"]), "expected": "error",
               "message": f"'{model}' version 7 is not found", "version": "7"}]
    return built


def _generator_cases() -> list[dict]:
    """Every class of bad generator request, each parameter out of range on either side, with the
    error it should get."""
    prompt = faults.short_prompt("fine")
    t = faults.tensor

    def inputs(max_tokens: int = 8, params: GenerationParams = GREEDY, prompt_text: str = prompt):
        return wire.generator_inputs(prompt_text, max_tokens, params, False)

    def raw_prompt(value: bytes, rows: int = 1):
        return [t(api.TEXT_INPUT.name, np.array([[value] * rows], dtype=object), "BYTES"),
                t(api.MAX_TOKENS.name, np.array([[8]], dtype=np.int32), "INT32")]

    def scalar(spec: api.Tensor, value, datatype: str, dtype):
        return [*inputs(), t(spec.name, np.array([[value]], dtype=dtype), datatype)]

    def guide(kind: bytes, text: bytes):
        return [*inputs(), t(api.GUIDE_TYPE.name, np.array([[kind]], dtype=object), "BYTES"),
                t(api.GUIDE.name, np.array([[text]], dtype=object), "BYTES")]
    schema = {"type": "object", "properties": {"word": {"type": "string"}}, "required": ["word"]}
    cases = [
        ("empty prompt", raw_prompt(b"  "), "text_input[0] is empty"),
        ("zero-width-only prompt", raw_prompt("\u200b\u2060".encode()), "text_input[0] is empty"),
        ("invalid UTF-8 prompt", raw_prompt(b"caf\xe9 au lait"), "not valid UTF-8: byte 0xe9 at offset 3"),
        ("lone surrogate in the prompt", raw_prompt("a\udc00".encode("utf-8", "surrogatepass")), "not valid UTF-8"),
        ("prompt over the byte limit (2,000,000 bytes)", raw_prompt(b"a" * 2_000_000),
         "text_input[0] is 2,000,000 bytes; the limit is 1,000,000"),
        ("two prompts in one request", raw_prompt(b"hi", rows=2), "one prompt per request"),
        ("huge prompt (~80,000 tokens)", inputs(prompt_text="word " * 80_000), "the context holds"),
        ("max_tokens 0", inputs(0), "max_tokens must be at least 1"),
        ("max_tokens negative", inputs(-3), "max_tokens must be at least 1"),
        ("max_tokens beyond the context", inputs(100_000), "exceeds the context"),
        ("max_tokens of the wrong type (FP32)", [raw_prompt(prompt.encode())[0],
                                                 t(api.MAX_TOKENS.name, np.array([[8.0]], dtype=np.float32), "FP32")],
         "data-type is 'FP32', but model 'generator' expects 'INT32'"),
        ("max_tokens missing", [raw_prompt(prompt.encode())[0]], "max_tokens"),
        ("temperature -1", inputs(params=GenerationParams(temperature=-1.0)), "temperature must be in [0, 10]"),
        ("temperature 11", inputs(params=GenerationParams(temperature=11.0)), "temperature must be in [0, 10]"),
        ("top_p 0", inputs(params=GenerationParams(top_p=0.0)), "top_p must be in (0, 1]"),
        ("top_p 1.5", inputs(params=GenerationParams(top_p=1.5)), "top_p must be in (0, 1]"),
        ("top_k -1", inputs(params=GenerationParams(top_k=-1)), "top_k must be >= 0"),
        ("repetition_penalty 0", inputs(params=GenerationParams(repetition_penalty=0.0)),
         "repetition_penalty must be in (0, 10]"),
        ("repetition_penalty 11", inputs(params=GenerationParams(repetition_penalty=11.0)),
         "repetition_penalty must be in (0, 10]"),
        ("presence_penalty -3", inputs(params=GenerationParams(presence_penalty=-3.0)),
         "presence_penalty must be in [-2, 2]"),
        ("presence_penalty 3", inputs(params=GenerationParams(presence_penalty=3.0)),
         "presence_penalty must be in [-2, 2]"),
        ("frequency_penalty -3", inputs(params=GenerationParams(frequency_penalty=-3.0)),
         "frequency_penalty must be in [-2, 2]"),
        ("frequency_penalty 3", inputs(params=GenerationParams(frequency_penalty=3.0)),
         "frequency_penalty must be in [-2, 2]"),
        ("random_seed of the wrong type (INT32)", scalar(api.RANDOM_SEED, 7, "INT32", np.int32),
         "data-type is 'INT32', but model 'generator' expects 'UINT64'"),
        ("temperature of two values", [*inputs(params=GenerationParams()), t(
            api.TEMPERATURE.name, np.array([[0.5, 0.7]], dtype=np.float32), "FP32")], "unexpected shape"),
        ("stop word not UTF-8", [*inputs(), t(api.STOP_WORDS.name, np.array([[b"\xff"]], dtype=object), "BYTES")],
         "stop_words[0] is not valid UTF-8"),
        ("unsupported guide type 'regex'", guide(b"regex", b"[a-z]+"), "'regex' is not supported"),
        ("empty JSON schema guide", guide(b"json_schema", b" "), "is empty for guide type json_schema"),
        ("JSON schema that is not JSON", guide(b"json_schema", b"{not json"), "guided_decoding_guide is not JSON"),
        ("invalid JSON schema", inputs(params=GenerationParams(json_schema={"type": "nonsense"})),
         "not a valid JSON schema"),
        ("invalid grammar", inputs(params=GenerationParams(grammar="root ::= (")), "could not be parsed as a grammar"),
        ("guided output cut by max_tokens", inputs(2, GenerationParams(temperature=0.0, json_schema=schema)),
         "was reached before the guided output was complete"),
    ]
    return [{"name": name, "model": api.GENERATOR.name, "inputs": built, "expected": "error", "message": message}
            for name, built, message in cases]


def _unary_generator_case() -> dict:
    return {"name": "generator called without a stream (ModelInfer)", "model": api.GENERATOR.name, "unary": True,
            "inputs": wire.generator_inputs(faults.short_prompt("fine"), 2, GREEDY, False), "expected": "error",
            "message": "doesn't support models with decoupled transaction policy"}


def bad_input(server: TritonServer, reviews: list[str]) -> dict:
    cases = [case for model in ENSEMBLES for case in _ensemble_cases(model)]
    cases.append({"name": "unknown model", "model": "no_such_model", "inputs": faults.text_rows([b"good"]),
                  "expected": "error", "message": "Request for unknown model: 'no_such_model' is not found"})
    cases += [*_generator_cases(), _unary_generator_case()]

    async def one(client, case: dict) -> dict:
        model = case["model"]
        ensemble = model in ENSEMBLES or model == "no_such_model"
        if ensemble or case.get("unary"):
            outputs = [grpcclient.InferRequestedOutput(name) for name in case["outputs"]] if "outputs" in case else None
            bad = faults.infer(client, model, case["inputs"], outputs=outputs, version=case.get("version", ""))
        else:
            bad = faults.generate(client, case["inputs"])
        # Good requests sent at the same moment, so that the dynamic batcher can put them in the bad one's batch.
        target = model if model in ENSEMBLES else api.SENTIMENT.name
        if model == api.GENERATOR.name:
            neighbours = [faults.generate(client, wire.generator_inputs(faults.short_prompt(reviews[0]), 1, GREEDY, False))]
        else:
            neighbours = [faults.infer(client, target, faults.text_rows([reviews[i].encode()]),
                                       check=lambda result: faults.valid_answer(target, result, 1))
                          for i in range(GOOD_NEIGHBOURS)]
        observed, *answers = await asyncio.gather(bad, *neighbours)
        matched = observed.kind == case["expected"] and (not case["message"] or case["message"] in observed.detail)
        return {"model": model, "case": case["name"], "expected": case["expected"],
                "expected_message": case["message"], "observed": observed.kind, "observed_message": observed.detail,
                "as_expected": matched, "ms": round(observed.latency_s * 1e3, 1), "neighbours": len(answers),
                "neighbours_answered": sum(a.kind == "answered" for a in answers)}

    async def every_case() -> list[dict]:
        client = aioclient.InferenceServerClient(server.grpc_url)
        try:
            return [await one(client, case) for case in cases]
        finally:
            await client.close()
    rows = asyncio.run(every_case())
    return {"cases": rows, "classes": len(rows), "as_expected": sum(r["as_expected"] for r in rows),
            "neighbours": sum(r["neighbours"] for r in rows),
            "neighbours_answered": sum(r["neighbours_answered"] for r in rows), "after": server_answers(server)}


# -- 4. fuzzing ------------------------------------------------------------------------------------

def fuzz(server: TritonServer, reviews: list[str], args) -> dict:
    rng = random.Random(4)
    models = list(FUZZ_MIX)
    cases = []
    for _ in range(size(args, "fuzz_cases")):
        model = rng.choices(models, weights=list(FUZZ_MIX.values()))[0]
        kind = rng.choice(faults.FUZZ_KINDS)
        # Most requests hold one text; some several, so a bad row must refuse its own request only.
        count = 1 if model == api.GENERATOR.name or rng.random() < 0.8 else rng.randint(2, 8)
        cases.append((model, kind, [faults.fuzz_row(rng, kind, reviews) for _ in range(count)]))

    async def send_all() -> list[Outcome]:
        client = aioclient.InferenceServerClient(server.grpc_url)
        slots = asyncio.Semaphore(size(args, "concurrency"))

        async def one(model: str, rows: list[bytes]) -> Outcome:
            async with slots:
                if model == api.GENERATOR.name:
                    inputs = [faults.tensor(api.TEXT_INPUT.name, np.array([rows], dtype=object), "BYTES"),
                              faults.tensor(api.MAX_TOKENS.name, np.array([[1]], dtype=np.int32), "INT32")]
                    return await faults.generate(client, inputs)
                return await faults.infer(client, model, faults.text_rows(rows),
                                          check=lambda result: faults.valid_answer(model, result, len(rows)))
        try:
            return await asyncio.gather(*(one(model, rows) for model, _, rows in cases))
        finally:
            await client.close()
    started = time.monotonic()
    outcomes = asyncio.run(send_all())
    wall_s = time.monotonic() - started
    expected = [faults.expected_outcome(rows) for _, _, rows in cases]
    # A clear error names the row it is about (TEXT[i], text_input[0]) and what is wrong with it.
    clear = [o.kind == "error" and ("TEXT[" in o.detail or "text_input[" in o.detail) for o in outcomes]
    by_kind = {}
    for kind in faults.FUZZ_KINDS:
        index = [i for i, (_, k, _) in enumerate(cases) if k == kind]
        by_kind[kind] = {"cases": len(index), **faults.tally([outcomes[i] for i in index])}
    mismatches = [{"model": cases[i][0], "kind": cases[i][1], "expected": expected[i], "observed": o.kind,
                   "message": o.detail, "rows": [row[:60].hex() for row in cases[i][2]]}
                  for i, o in enumerate(outcomes) if o.kind != expected[i]]
    errors = Counter(" ".join(w if not any(c.isdigit() for c in w) else "N" for w in o.detail.split())
                     for o in outcomes if o.kind == "error")
    return {"cases": len(cases), "mix": FUZZ_MIX, "wall_s": round(wall_s, 1), **faults.tally(outcomes),
            "per_model": {m: {"cases": sum(c[0] == m for c in cases),
                              **faults.tally([o for c, o in zip(cases, outcomes) if c[0] == m])} for m in models},
            "per_kind": by_kind, "multi_row_requests": sum(len(c[2]) > 1 for c in cases),
            "expected_answered": expected.count("answered"), "expected_refused": expected.count("error"),
            "as_expected": len(cases) - len(mismatches), "errors_naming_the_row": sum(clear),
            "error_messages": dict(errors.most_common(12)), "mismatches": mismatches[:20],
            "after": server_answers(server)}


# -- 5, 6. faults during an analysis ---------------------------------------------------------------

class _ClientLog(logging.Handler):
    """The client's log lines (retries, Redis going away), kept for the report."""

    def __init__(self):
        super().__init__(logging.INFO)
        self.lines: list[tuple[float, str]] = []

    def emit(self, record) -> None:
        self.lines.append((time.monotonic(), faults.one_line(record.levelname, record.getMessage())))

    def __enter__(self) -> "_ClientLog":
        logger = logging.getLogger("reviewlens.client")
        logger.setLevel(logging.INFO)
        logger.addHandler(self)
        return self

    def __exit__(self, *exc) -> None:
        logging.getLogger("reviewlens.client").removeHandler(self)


def _entities(args, skip: int) -> list[Entity]:
    movies = best_covered_movies(skip + size(args, "entities"))
    return [Entity(movie, texts[:size(args, "reviews_per_entity")], movie) for movie, texts in list(movies.items())[skip:]]


def redis_killed(server: TritonServer, args) -> dict:
    """redis-server SIGKILLed when the analysis's first entity is done; the rest must complete uncached."""
    entities = _entities(args, 0)
    cache = RedisServer(free_port()).start()
    settings = Settings(urls=(server.grpc_url,), redis_url=cache.url)
    done, killed_at = [], []

    def kill_after_the_first(result) -> None:
        done.append((time.monotonic(), result.entity_id, bool(result.metrics.get("from_cache"))))
        if len(done) == 1:
            keys = redis.Redis.from_url(cache.url).dbsize()
            cache.process.send_signal(signal.SIGKILL)
            cache.process.wait()
            killed_at.append((time.monotonic(), keys))
    started = time.monotonic()
    try:
        with _ClientLog() as log, SyncAnalyzer(settings) as analyzer:
            analysed = analyzer.analyze_many(entities, on_done=kill_after_the_first)
            hits, misses = analyzer.metrics.cache_hits, analyzer.metrics.cache_misses
        outcome, error = "completed", ""
    except Exception as failure:  # noqa: BLE001  (a failed run is what this step reports)
        analysed, hits, misses, outcome, error = [], 0, 0, "failed", faults.one_line(type(failure).__name__, str(failure))
    finally:
        cache.stop()  # terminating the killed process is a no-op
    return {"entities": len(entities), "reviews_per_entity": size(args, "reviews_per_entity"), "outcome": outcome,
            "error": error, "results": len(analysed), "in_order": [r.entity_id for r in analysed] == [e.entity_id for e in entities],
            "from_cache": sum(bool(r.metrics.get("from_cache")) for r in analysed),
            "entities_done_after_the_kill": len(done) - 1, "redis_keys_at_the_kill": killed_at[0][1] if killed_at else None,
            "cache_hits": hits, "cache_misses": misses, "wall_s": round(time.monotonic() - started, 1),
            "client_log": [line for _, line in log.lines][:8] if outcome == "completed" else [],
            "after": server_answers(server)}


def server_restart(server: TritonServer, args) -> tuple[dict, TritonServer]:
    """tritonserver SIGKILLed (its process group: the stubs too) when the analysis's first entity is
    done, and started again on the same ports; the run must complete. Returns the new server."""
    entities = _entities(args, size(args, "entities"))
    second = replace(server, process=None, log_path=BUILD_DIR / "triton" / "perf_reliability_restarted_server.log")
    events: dict[str, float] = {}
    done = []

    def restart() -> None:
        second.start()
        events["ready_again"] = time.monotonic()

    def kill_after_the_first(result) -> None:
        done.append(time.monotonic())
        if len(done) == 1:
            events["killed"] = time.monotonic()
            os.killpg(server.process.pid, signal.SIGKILL)
            server.process.wait()
            threading.Thread(target=restart, daemon=True).start()
    with RedisServer(free_port()) as cache:
        settings = Settings(urls=(server.grpc_url,), redis_url=cache.url)
        started = time.monotonic()
        try:
            with _ClientLog() as log, SyncAnalyzer(settings) as analyzer:
                analysed = analyzer.analyze_many(entities, on_done=kill_after_the_first)
            outcome, error = "completed", ""
        except Exception as failure:  # noqa: BLE001
            analysed, outcome, error = [], "failed", faults.one_line(type(failure).__name__, str(failure))
        finished = time.monotonic()
    while second.process is not None and "ready_again" not in events and second.process.poll() is None:
        time.sleep(0.2)
    killed = events.get("killed", started)
    retries = [t for t, line in log.lines if t > killed and "trying again" in line]
    report = {"entities": len(entities), "reviews_per_entity": size(args, "reviews_per_entity"), "outcome": outcome,
              "error": error, "results": len(analysed),
              "in_order": [r.entity_id for r in analysed] == [e.entity_id for e in entities],
              "kill_to_ready_s": round(events["ready_again"] - killed, 1) if "ready_again" in events else None,
              "kill_to_next_entity_done_s": round(done[1] - killed, 1) if len(done) > 1 else None,
              "kill_to_run_end_s": round(finished - killed, 1), "wall_s": round(finished - started, 1),
              "client_retries": len(retries), "last_retry_after_ready_s":
                  round(retries[-1] - events["ready_again"], 1) if retries and "ready_again" in events else None,
              "client_log": [line for t, line in log.lines if t > killed][:6],
              "same_ports": (second.grpc_port, second.http_port) == (server.grpc_port, server.http_port)}
    report["after"] = server_answers(second)
    return report, second


# -- 7. a graceful stop under load -----------------------------------------------------------------

def graceful_stop(server: TritonServer, reviews: list[str], args) -> dict:
    """SIGINT (TritonServer.stop()) with sentiment callers in a tight loop and generations in flight,
    readiness polled on HTTP and gRPC: exit code, time to exit, outcomes, and the order of events."""
    callers, generations = size(args, "stop_callers"), 4
    outcomes: list[Outcome] = []
    stop = threading.Event()
    stopped: dict[str, float | int | None] = {}

    async def load() -> list[Outcome]:
        client = aioclient.InferenceServerClient(server.grpc_url)

        async def caller(index: int) -> None:
            text = reviews[index % len(reviews)].encode()
            while not stop.is_set():
                outcome = await faults.infer(client, api.SENTIMENT.name, faults.text_rows([text]), timeout_s=30,
                                             check=lambda result: faults.valid_answer(api.SENTIMENT.name, result, 1))
                outcomes.append(outcome)
                if faults.no_server(outcome):
                    await asyncio.sleep(0.005)

        async def generation(index: int) -> Outcome:
            return await faults.generate(client, wire.generator_inputs(
                faults.short_prompt(reviews[index]), 200, GREEDY, True), timeout_s=60)
        try:
            streams = [asyncio.ensure_future(generation(i)) for i in range(generations)]
            await asyncio.gather(*(caller(i) for i in range(callers)))
            return await asyncio.gather(*streams)
        finally:
            await client.close()

    def signal_stop() -> None:
        stopped["sigint"] = time.monotonic()
        stopped["exit_code"] = server.stop()
        stopped["exited"] = time.monotonic()

    streams: list[Outcome] = []
    runner = threading.Thread(target=lambda: streams.extend(asyncio.run(load())))
    with faults.ReadinessPoller(server, "http") as http, faults.ReadinessPoller(server, "grpc") as grpc_ready:
        runner.start()
        time.sleep(4)  # steady load, the generations decoding
        signal_stop()
        time.sleep(1)  # requests keep coming after the exit: they find no server
        stop.set()
        runner.join()
    sigint = stopped["sigint"]
    after = [o for o in outcomes if o.done >= sigint]  # requests that ended after the signal
    in_flight = [o for o in after if o.sent < sigint]

    def ms(value: float) -> float:
        return round((value - sigint) * 1e3, 1)
    # Everything seen after the signal, by what it was: first and last time, and how often.
    seen: dict[str, list[float]] = {}
    for source, poller in (("HTTP ready", http), ("gRPC ServerReady", grpc_ready)):
        for t, state in poller.observations:
            if t >= sigint:
                seen.setdefault(f"{source}: {state}", []).append(t)
    for o in after:
        seen.setdefault(f"request {o.kind}" + (f": {o.detail}" if o.detail else ""), []).append(o.done)
    timeline = sorted(({"what": what, "first_ms": ms(min(ts)), "last_ms": ms(max(ts)), "count": len(ts)}
                       for what, ts in seen.items()), key=lambda e: e["first_ms"])
    timeline.append({"what": "tritonserver exited", "first_ms": ms(stopped["exited"]), "last_ms": None, "count": 1})
    not_answered = min((o.done for o in after if o.kind != "answered"), default=None)
    # Readiness per protocol: when it first said anything but "ready" (false, an error, no server).
    readiness = {}
    for source, poller in (("HTTP /v2/health/ready", http), ("gRPC ServerReady", grpc_ready)):
        first = poller.first(sigint, lambda state: state != "ready")
        said = next((state for t, state in poller.observations if t == first), None)
        readiness[source] = {"first_not_ready_ms": ms(first) if first is not None else None, "said": said,
                             "before_first_refusal": first is not None and (not_answered is None or first < not_answered),
                             "answered_though_sent_after": sum(o.kind == "answered" and first is not None and o.sent > first
                                                               for o in after)}
    return {
        "callers": callers, "generations_in_flight": generations, "exit_code": stopped["exit_code"],
        "exit_timeout_s": EXIT_TIMEOUT_S, "time_to_exit_s": round(stopped["exited"] - sigint, 2),
        "requests_after_sigint": len(after), **faults.tally(after),
        "refused_no_server": sum(faults.no_server(o) for o in after),
        "in_flight_at_sigint": {"requests": len(in_flight), **faults.tally(in_flight)},
        "generations": [{"kind": o.kind, "detail": o.detail} for o in streams],
        "timeline": timeline, "polls": {"http": len(http.observations), "grpc": len(grpc_ready.observations)},
        "first_request_not_answered_ms": ms(not_answered) if not_answered is not None else None,
        "readiness": readiness,
        "stopped_server_log": results.repo_relative(server.log_path),
    }


# -- the run ---------------------------------------------------------------------------------------

def measure(args, out) -> dict:
    reviews = sample_reviews(2000).texts
    report = {"sizes": {name: size(args, name) for name in SIZES}}
    with triton("reliability") as server:
        report["triton_version"] = server_version(server.grpc_url)
        steps = (("load", lambda: sustained_load(server, reviews, args)),
                 ("overload", lambda: overload(server, reviews, args)),
                 ("bad_input", lambda: bad_input(server, reviews)),
                 ("fuzz", lambda: fuzz(server, reviews, args)),
                 ("graceful_stop", lambda: graceful_stop(server, reviews, args)))
        for name, step in steps:
            print(f"{name} ...", flush=True)
            started = time.monotonic()
            report[name] = step()
            report[name]["step_s"] = round(time.monotonic() - started, 1)
    print("redis_killed ...", flush=True)
    fixed = triton("reliability_faults", response_cache=True).start()
    restarted = None
    try:
        report["redis_killed"] = redis_killed(fixed, args)
        print("server_restart ...", flush=True)
        report["server_restart"], restarted = server_restart(fixed, args)
    finally:
        for each in (restarted, fixed):
            if each is not None:
                each.stop()
    return report


# -- the report ------------------------------------------------------------------------------------

def _after(step: dict) -> str:
    after = step["after"]
    return ("READY and answering all three models" if after["ready"] and after["generator_tokens"] > 0
            and after["sentiment"] in api.SENTIMENT_LABELS else f"NOT answering: {after}")


def _verdict(ok: bool) -> str:
    return "**yes**" if ok else "**NO**"


def markdown(report: dict) -> str:
    lines = results.header(report, "Reliability: load, overload, bad input, fuzzing and faults",
                           f"Triton {report['triton_version']}, real tritonserver and redis-server on loopback;")
    load, rss = report["load"], report["load"]["rss_mib"]
    mix = ", ".join(f"{share:.1%} {model}" for model, share in load["mix"].items())
    lines += ["## 1. Sustained load", "",
              f"{load['requests']:,} requests ({mix}; one review per sentiment/embed request, a short prompt and "
              f"{load['generator_max_tokens']} output tokens per generator request) from {load['concurrency']} "
              "closed-loop callers through the project's client with no retry window, response cache off, after "
              f"{load['warmup_requests']} warm-up requests: {load['wall_s']} s, {load['requests_per_s']} requests/s.", "",
              "| model | requests | answered | refused | error | lost | p50 ms | p99 ms |",
              "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for model, m in load["per_model"].items():
        lines.append(f"| {model} | {m['requests']:,} | {m['answered']:,} | {m['refused']} | {m['error']} | {m['lost']} | "
                     f"{m['p50_ms']} | {m['p99_ms']} |")
    lines.append(f"| all | {load['requests']:,} | {load['answered']:,} | {load['refused']} | {load['error']} | "
                 f"{load['lost']} | {load['p50_ms']} | {load['p99_ms']} |")
    growth_ok = rss["growth"] < MAX_RSS_GROWTH
    lines += ["", f"RSS of tritonserver and its stub processes (MiB), sampled every 0.5 s: {rss['total_before']:,.0f} "
              f"before, peak {rss['total_peak']:,.0f}, {rss['total_after']:,.0f} after: growth "
              f"**{rss['growth']:+.1%}** (target < {MAX_RSS_GROWTH:.0%}: {_verdict(growth_ok)}); 0 lost: "
              f"{_verdict(load['lost'] == 0)}. Per process:", "",
              "| process | before | after |", "|---|---:|---:|"]
    lines += [f"| {name} | {value:,.0f} | {rss['after'].get(name, 0):,.0f} |" for name, value in rss["before"].items()]
    lines += ["", f"After: {_after(load)}.", ""]

    over = report["overload"]
    lines += ["## 2. Overload", "",
              "Bursts sent all at once with the raw gRPC client (sentiment: one review per request, its tokenizer "
              "queue holds 1,024; generator: 2 output tokens per request, 4 sequences decode while its queue holds 64):",
              "", "| model | sent at once | answered | refused (queue full) | other refusal | error | lost | p50 ms answered |",
              "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for model in (api.SENTIMENT.name, api.GENERATOR.name):
        o = over[model]
        lines.append(f"| {model} | {o['sent_at_once']:,} | {o['answered']:,} | {o['refused_queue_full']:,} | "
                     f"{o['refused'] - o['refused_queue_full']} | {o['error']} | {o['lost']} | {o['p50_ms']} |")
    messages = sorted({faults.one_line(*m.split(": ", 1)) for model in (api.SENTIMENT.name, api.GENERATOR.name)
                       for m in over[model]["details"]})
    lines += ["", "Refusals said: " + "; ".join(f"`{m}`" for m in messages[:4]) + ".", "",
              f"After: {_after(over)}.", ""]

    bad = report["bad_input"]
    lines += ["## 3. Bad input", "",
              f"{bad['classes']} classes of bad or borderline request, each sent with good neighbours at the same moment "
              f"({GOOD_NEIGHBOURS} sentiment/embed requests, or one generation, so the dynamic batcher can batch them "
              f"together): **{bad['as_expected']} / {bad['classes']}** got the expected outcome and message; "
              f"neighbours answered: **{bad['neighbours_answered']} / {bad['neighbours']}**. After: {_after(bad)}.", "",
              "| model | case | expected | observed | server's message | neighbours answered |",
              "|---|---|---|---|---|---:|"]
    for r in bad["cases"]:
        mark = "" if r["as_expected"] else " **(unexpected)**"
        message = faults.one_line(*r["observed_message"].split(": ", 1)).replace("|", "/") if r["observed_message"] else "-"
        lines.append(f"| {r['model']} | {r['case']} | {r['expected']} | {r['observed']}{mark} | `{message}` | "
                     f"{r['neighbours_answered']}/{r['neighbours']} |")
    lines.append("")

    fz = report["fuzz"]
    fuzz_mix = ", ".join(f"{share:.1%} {model}" for model, share in fz["mix"].items())
    lines += ["## 4. Fuzzing", "",
              f"{fz['cases']:,} requests ({fuzz_mix}; {fz['multi_row_requests']:,} sentiment/embed requests of 2-8 rows, "
              "the generator with max_tokens 1) at concurrency 64, in "
              f"{fz['wall_s']} s: answered {fz['answered']:,}, refused {fz['refused']}, error {fz['error']:,}, "
              f"lost **{fz['lost']}**. The served interface promises an answer for {fz['expected_answered']:,} and a "
              f"refusal for {fz['expected_refused']:,} (not UTF-8, or blank): **{fz['as_expected']:,} / {fz['cases']:,}** "
              f"as promised; every error names its row: {_verdict(fz['errors_naming_the_row'] == fz['error'])} "
              f"({fz['errors_naming_the_row']:,} / {fz['error']:,}). After: {_after(fz)}.", "",
              "| fuzz kind | cases | answered | refused | error | lost |", "|---|---:|---:|---:|---:|---:|"]
    lines += [f"| {kind} | {k['cases']:,} | {k['answered']:,} | {k['refused']} | {k['error']:,} | {k['lost']} |"
              for kind, k in fz["per_kind"].items()]
    lines += ["", "Errors (numbers written N): " + "; ".join(f"`{m}` x{n:,}" for m, n in fz["error_messages"].items()) + "."]
    if fz["mismatches"]:
        lines += ["", "Not as promised (first ones; rows as hex): " + "; ".join(
            f"{m['model']} {m['kind']} expected {m['expected']}, got {m['observed']} `{m['message']}`"
            for m in fz["mismatches"][:5]) + "."]
    lines.append("")

    rk = report["redis_killed"]
    lines += ["## 5. Redis killed during an analysis", "",
              f"`SyncAnalyzer.analyze_many` over {rk['entities']} entities of {rk['reviews_per_entity']} reviews (held-out "
              f"movies), redis-server SIGKILLed as the first entity finished ({rk['redis_keys_at_the_kill']} keys in it): "
              f"the run **{rk['outcome']}** in {rk['wall_s']} s with {rk['results']} results in order "
              f"({rk['entities_done_after_the_kill']} finished after the kill, {rk['from_cache']} from the cache; "
              f"cache lookups {rk['cache_hits']} hits / {rk['cache_misses']} misses). "
              + (f"Error: `{rk['error']}`. " if rk["error"] else "")
              + "The client said: " + ("; ".join(f"`{line}`" for line in rk["client_log"]) or "nothing") + ".", ""]

    sr = report["server_restart"]
    lines += ["## 6. tritonserver killed and restarted during an analysis", "",
              f"{sr['entities']} other entities of {sr['reviews_per_entity']} reviews, tritonserver's process group "
              "SIGKILLed as the first entity finished and a new server started at once on the same ports: the run "
              f"**{sr['outcome']}** with {sr['results']} results in order. Kill to READY again: **{sr['kill_to_ready_s']} s**; "
              f"kill to the next entity done: **{sr['kill_to_next_entity_done_s']} s**; kill to the end of the run: "
              f"{sr['kill_to_run_end_s']} s ({sr['client_retries']} client retries logged, the last "
              + (f"{abs(sr['last_retry_after_ready_s'])} s {'after' if sr['last_retry_after_ready_s'] >= 0 else 'before'} "
                 "the new server was READY). " if sr["last_retry_after_ready_s"] is not None else "one unknown). ")
              + (f"Error: `{sr['error']}`. " if sr["error"] else "")
              + "First client lines after the kill: " + "; ".join(f"`{line}`" for line in sr["client_log"][:3]) + ".", "",
              f"After: {_after(sr)}.", ""]

    gs = report["graceful_stop"]
    flight = gs["in_flight_at_sigint"]
    lines += ["## 7. A graceful stop under load", "",
              f"SIGINT to the server's process group (`TritonServer.stop()`) with {gs['callers']} sentiment callers in a "
              f"tight loop (raw gRPC, no retry) and {gs['generations_in_flight']} streamed generations in flight, "
              f"readiness polled in a tight loop on HTTP `/v2/health/ready` ({gs['polls']['http']:,} polls) and gRPC "
              f"ServerReady ({gs['polls']['grpc']:,}): exit code **{gs['exit_code']}** after **{gs['time_to_exit_s']} s** "
              f"(exit timeout {gs['exit_timeout_s']} s). Requests that ended after the signal: "
              f"{gs['requests_after_sigint']:,}: answered {gs['answered']:,}, refused (UNAVAILABLE) {gs['refused']:,} "
              f"({gs['refused_no_server']:,} of them finding no server after it exited), error {gs['error']:,}, "
              f"lost **{gs['lost']}**; of the {flight['requests']} in flight at the signal: answered {flight['answered']}, "
              f"refused {flight['refused']}, error {flight['error']}, lost {flight['lost']}. The generations: "
              + ", ".join(f"{g['kind']} (`{g['detail']}`)" if g["detail"] else g["kind"] for g in gs["generations"]) + ".",
              "", "What was seen after SIGINT, in order (ms after the signal):", "",
              "| seen | first ms | last ms | times |", "|---|---:|---:|---:|"]
    for e in gs["timeline"]:
        last = "-" if e["last_ms"] is None else f"{e['last_ms']:,.1f}"
        lines.append(f"| {e['what'].replace('|', '/')} | {e['first_ms']:,.1f} | {last} | {e['count']:,} |")
    unloaded = sum(e["count"] for e in gs["timeline"] if e["what"].startswith("request error") and "NOT_FOUND" in e["what"])
    if unloaded:
        lines += ["", f"{unloaded:,} of the errors are NOT_FOUND: the ensemble had already unloaded while the server "
                  "still took calls. Unlike UNAVAILABLE, that is a code a client does not retry or send elsewhere."]
    lines += ["", f"The first request not answered ended {gs['first_request_not_answered_ms']} ms after the signal. "
              "Readiness went false (or stopped answering) before it, per protocol:", "",
              "| readiness | first not ready, ms | what it said | before the first refusal | answered though sent after |",
              "|---|---:|---|---|---:|"]
    lines += [f"| {source} | {r['first_not_ready_ms']} | `{r['said']}` | {_verdict(r['before_first_refusal'])} | "
              f"{r['answered_though_sent_after']:,} |" for source, r in gs["readiness"].items()]
    lines.append("")
    return "\n".join(lines)


def plot(report: dict, path) -> None:
    """RSS during the sustained load, and the outcome counts of each step."""
    figure, (memory, counts) = results.plt.subplots(1, 2, figsize=(13, 4))
    samples = report["load"]["rss_mib"]["samples"]
    memory.plot([t for t, _ in samples], [m for _, m in samples], color="tab:blue")
    memory.set_xlabel("seconds into the sustained load")
    memory.set_ylabel("RSS MiB, tritonserver + stubs")
    memory.set_ylim(bottom=0)
    memory.grid(alpha=0.3)
    steps = {"load": report["load"], "overload sentiment": report["overload"][api.SENTIMENT.name],
             "overload generator": report["overload"][api.GENERATOR.name], "fuzz": report["fuzz"],
             "stop (after SIGINT)": report["graceful_stop"]}
    totals = np.array([sum(s[kind] for kind in faults.OUTCOMES) for s in steps.values()], dtype=float)
    labels = [f"{name} ({total:,.0f})" for name, total in zip(steps, totals)]
    left = np.zeros(len(steps))
    for kind, colour in zip(faults.OUTCOMES, ("tab:green", "tab:orange", "tab:blue", "tab:red")):
        share = np.array([s[kind] for s in steps.values()], dtype=float) / np.maximum(totals, 1) * 100
        counts.barh(labels, share, left=left, color=colour, label=kind)
        left += share
    counts.invert_yaxis()
    counts.set_xlabel("% of the step's requests")
    counts.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.18), ncol=len(faults.OUTCOMES))
    results._save(figure, path, "Reliability: RSS under sustained load, and how the requests of each step ended")


def arguments(parser) -> None:
    del parser  # the sizes are fixed: a full run and a --quick one


if __name__ == "__main__":
    results.main("reliability", measure, markdown, plot, arguments)
