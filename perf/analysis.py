"""Wall time and prompt tokens of the analysis client against a seed-004-style baseline, in one run.

    python perf/analysis.py [--entities 20] [--reviews-per-entity 35] [--skip-baseline] [--quick]

Both sides analyse the same entities: the best-covered movies of the held-out split
(build/data/test.jsonl; 15 movies have 35 reviews, the next ones 34), each with its first
--reviews-per-entity reviews in file order. Per entity both produce every review's sentiment (with
a generator re-check of the doubtful ones), embeddings, a JSON summary (aspects praised /
criticised) and JSON strengths, with the same prompts text (client/prompts.py, rendered as ChatML),
the same JSON schemas as grammar, the same sampling (temperature 0.5, top_p 0.9, seed 7) and the
same max_tokens (prompts.max_tokens_for). A review is doubtful, on both sides, when the classifier's
confidence is below Settings().recheck_below or it contains a contrast word ("but", "however", ...).

One system at a time (the machine has 2 cores):
  1. baseline, all in this process, nothing served, as seed 004 did it: transformers
     `pipeline("text-classification")` on the fine-tuned checkpoint (torch FP32, batch 32, 2 threads),
     `SentenceTransformer.encode(batch_size=32, normalize_embeddings=True)` on the packaged
     embedder, and llama-cpp-python `Llama(n_ctx=8192, n_threads=2)` on the served GGUF; entity
     after entity: classify and embed its reviews, one re-check call per doubtful review (the
     client sends up to prompts.RECHECK_BATCH of them per call), then a summary call and a
     strengths call with ALL its reviews in the prompt. Model loading is timed
     apart and not part of the wall time. The models are freed before the server starts.
  2. this client: tritonserver (the whole model repository, response cache on, as deployed) and a
     throwaway redis-server, both on free loopback ports; `SyncAnalyzer.analyze_many(entities)` with
     an empty Redis (cold: sentiment and embeddings over gRPC, re-checks, summary and strengths from
     a diverse top-K within `prompt_token_budget`, up to `concurrency` entities at a time), then the
     same call again in a new session on the same Redis (warm rerun). Server startup is timed apart.

Prompt tokens are counted by the GGUF's own tokenizer (the baseline's prompts) and by the server
(`num_input_tokens`, the client's calls). Reported: wall time per system, cold vs warm, generator
calls per kind with their prompt and output tokens, summary + strengths prompt tokens per entity
(all reviews vs top-K), label agreement between the two systems and with the critics' fresh/rotten.
Targets: client >= 3x faster than the baseline cold; warm rerun <= 2 % of the cold run; summary +
strengths prompt tokens >= 70 % fewer than with all reviews, for 35-review entities at the default K.
Writes perf/results/analysis.json and perf/results/analysis.md.
"""
import argparse
import functools
import gc
import json
import signal
import sys
import time
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, replace
from importlib import metadata
from pathlib import Path

import numpy as np
import redis
import tritonclient.grpc as grpcclient

from reviewlens.build_engines.data import find_sources, read_jsonl
from reviewlens.build_engines.paths import BUILD_DIR, MODEL_REPOSITORY
from reviewlens.client import prompts
from reviewlens.client.demo import best_covered_movies
from reviewlens.client.analysis import Entity, EntityAnalysis, SyncAnalyzer, is_doubtful
from reviewlens.client.generation import chatml
from reviewlens.client.redis_server import RedisServer
from reviewlens.client.settings import Settings
from reviewlens.ensemble.server import TritonServer, free_port
from throughput import RESULTS_DIR, OtherLoad, machine_info, served_max_length, write_results

TEST_SPLIT = BUILD_DIR / "data" / "test.jsonl"
GGUF_CANDIDATES = (MODEL_REPOSITORY / "generator" / "1" / "model.gguf", BUILD_DIR / "models" / "generator" / "model.gguf")
BATCH = 32
TORCH_THREADS = 2
LLAMA_N_CTX = 8192
LLAMA_THREADS = 2
TEMPERATURE, TOP_P = 0.5, 0.9
FULL_REVIEWS = 35  # the best-covered movies of the sample data: the reduction target is stated for them
TARGETS = {"speedup_cold": 3.0, "warm_vs_cold": 0.02, "prompt_reduction": 0.70}
SERVER_LOG = BUILD_DIR / "triton" / "perf_analysis_server.log"


@dataclass
class Call:
    """One generator call as the benchmark records it (both systems)."""
    kind: str              # recheck / summary / strengths
    entity_id: str | None  # None for the client's calls: its metrics do not name the entity
    prompt_tokens: int
    output_tokens: int
    seconds: float
    cached: bool = False   # answered from the client's Redis cache, nothing generated


# ---------------------------------------------------------------- entities and prompts

def load_entities(count: int, reviews_per_entity: int) -> list[Entity]:
    """The `count` movies with the most held-out reviews (ties by name), each with its first reviews."""
    return [Entity(name, texts[:reviews_per_entity], name) for name, texts in best_covered_movies(count).items()]


def critics_labels(entities: list[Entity]) -> dict[str, list[str]]:
    """Per entity, the critics' fresh/rotten of each review as positive/negative."""
    rows = {(r["movie_name"], r["text"]): r["label"] for r in read_jsonl(TEST_SPLIT)}
    return {e.entity_id: ["positive" if rows[(e.entity_id, t)] == 1 else "negative" for t in e.reviews]
            for e in entities}


def all_review_prompts(kind: str, entity: Entity) -> dict[str, list[dict[str, str]]]:
    """The baseline's summary and strengths messages: every review of the entity, in order."""
    return {"summary": prompts.summary_messages(kind, entity.reviews),
            "strengths": prompts.strengths_messages(kind, entity.reviews)}


def gguf_path() -> Path:
    for path in GGUF_CANDIDATES:
        if path.is_file():
            return path
    sys.exit(f"error: no GGUF at {' or '.join(map(str, GGUF_CANDIDATES))}; run `make build` first")


# ---------------------------------------------------------------- baseline (seed 004 style)

def generate(llm, grammar_for, kind: str, entity_id: str, messages: list[dict[str, str]],
             schema: dict, seed: int) -> tuple[dict | None, Call]:
    """One JSON-constrained completion with the client's sampling; None when the text is not JSON."""
    started = time.perf_counter()
    # top_k 0 and min_p 0 switch off llama-cpp-python's defaults (40, 0.05), which the server does not apply.
    completion = llm.create_completion(chatml(messages), max_tokens=prompts.max_tokens_for(schema),
                                       temperature=TEMPERATURE, top_p=TOP_P, top_k=0, min_p=0.0,
                                       seed=seed, grammar=grammar_for(json.dumps(schema)))
    seconds = time.perf_counter() - started
    usage = completion["usage"]
    call = Call(kind, entity_id, usage["prompt_tokens"], usage["completion_tokens"], round(seconds, 3))
    try:
        return json.loads(completion["choices"][0]["text"]), call
    except json.JSONDecodeError:
        return None, call


def run_baseline(entities: list[Entity], settings: Settings, gguf: Path) -> dict:
    """Seed 004's way, in this process: pipeline + SentenceTransformer + sequential per-entity LLM calls."""
    import torch
    from llama_cpp import Llama, LlamaGrammar
    from sentence_transformers import SentenceTransformer
    from transformers import pipeline

    torch.set_num_threads(TORCH_THREADS)
    sources = find_sources()
    checkpoint = sources.sentiment_model or BUILD_DIR / "checkpoints" / "classifier"
    if not (checkpoint / "config.json").is_file():
        sys.exit(f"error: no classifier checkpoint in {checkpoint}; run `make classifier` first")
    loading = time.perf_counter()
    classify = pipeline("text-classification", model=str(checkpoint), device="cpu")
    embedder = SentenceTransformer(str(sources.embedder), device="cpu")
    llm = Llama(model_path=str(gguf), n_ctx=LLAMA_N_CTX, n_threads=LLAMA_THREADS, verbose=False)
    load_s = time.perf_counter() - loading
    # Same truncation as the served tokenizer, so both systems classify the same tokens.
    options = {"batch_size": BATCH, "truncation": True, "max_length": served_max_length("sentiment_tokenizer")}
    classify(entities[0].reviews[:2], **options)  # first calls pay for lazy allocations (Triton warms up at load)
    embedder.encode(entities[0].reviews[:2], batch_size=BATCH)

    grammar_for = functools.cache(lambda schema: LlamaGrammar.from_json_schema(schema, verbose=False))
    calls, results = [], []
    phases = Counter()
    started = time.perf_counter()
    for entity in entities:
        entity_started = time.perf_counter()
        tick = time.perf_counter()
        predictions = classify(entity.reviews, **options)
        phases["classify"] += time.perf_counter() - tick
        tick = time.perf_counter()
        embeddings = embedder.encode(entity.reviews, batch_size=BATCH, normalize_embeddings=True)
        phases["embed"] += time.perf_counter() - tick
        labels = [p["label"] for p in predictions]
        classifier_labels = list(labels)
        rechecked = [i for i, (text, p) in enumerate(zip(entity.reviews, predictions))
                     if is_doubtful(text, p["score"], settings)]
        tick = time.perf_counter()
        for i in rechecked:
            answer, call = generate(llm, grammar_for, "recheck", entity.entity_id,
                                    prompts.recheck_messages([entity.reviews[i]]), prompts.recheck_schema(1),
                                    settings.seed)
            calls.append(call)
            if answer is not None:
                labels[i] = answer["labels"][0]
        phases["recheck"] += time.perf_counter() - tick
        present = [label for label in prompts.LABELS if label in labels]
        answers = {}
        messages = all_review_prompts(settings.entity_kind, entity)
        schemas = {"summary": prompts.summary_schema(present), "strengths": prompts.STRENGTHS_SCHEMA}
        for kind in ("summary", "strengths"):
            tick = time.perf_counter()
            answers[kind], call = generate(llm, grammar_for, kind, entity.entity_id, messages[kind], schemas[kind],
                                           settings.seed)
            calls.append(call)
            phases[kind] += time.perf_counter() - tick
        centre = embeddings.mean(axis=0)
        results.append({
            "entity_id": entity.entity_id, "labels": labels, "classifier_labels": classifier_labels,
            "rechecked": rechecked, "most_typical_review": entity.reviews[int(np.argmax(embeddings @ centre))],
            "summary": answers["summary"], "strengths": answers["strengths"],
        })
        print(f"  baseline {entity.entity_id}: {len(entity.reviews)} reviews, {len(rechecked)} re-checked, "
              f"{time.perf_counter() - entity_started:.1f} s", flush=True)
    wall_s = time.perf_counter() - started
    llm.close()  # frees the weights and KV cache now: the server must not share the 2 cores or memory with it
    del classify, embedder, llm, grammar_for
    gc.collect()
    return {"load_s": round(load_s, 2), "wall_s": round(wall_s, 2),
            "phases_s": {k: round(v, 2) for k, v in phases.items()},
            "calls": [asdict(c) for c in calls], "entities": results,
            "unparsable_answers": sum(r[k] is None for r in results for k in ("summary", "strengths"))}


# ---------------------------------------------------------------- this client

def run_client(entities: list[Entity], settings: Settings) -> dict:
    """tritonserver + redis-server; analyze_many cold (empty Redis), then warm (new session, same Redis)."""
    server = TritonServer(grpc_port=free_port(), http_port=free_port(), metrics_port=free_port(), log_path=SERVER_LOG)
    starting = time.perf_counter()
    with server, RedisServer(free_port()) as cache_server:
        startup_s = time.perf_counter() - starting
        client = grpcclient.InferenceServerClient(server.grpc_url)
        triton_version = client.get_server_metadata(as_json=True)["version"]
        client.close()
        settings = replace(settings, urls=(server.grpc_url,), redis_url=cache_server.url)
        runs = {}
        for phase in ("cold", "warm"):
            with SyncAnalyzer(settings) as analyzer:
                started = time.perf_counter()

                def progress(result: EntityAnalysis) -> None:
                    print(f"  client {phase} {result.entity_id}: {time.perf_counter() - started:.1f} s"
                          + (" (from Redis)" if result.metrics.get("from_cache") else ""), flush=True)
                results = analyzer.analyze_many(entities, on_done=progress)
                wall_s = time.perf_counter() - started
                calls = [Call(c.kind, None, c.prompt_tokens, c.output_tokens, c.total_s, c.cached)
                         for c in analyzer.metrics.calls]
            store = redis.Redis.from_url(cache_server.url)
            runs[phase] = {"wall_s": round(wall_s, 4), "calls": [asdict(c) for c in calls],
                           "from_cache": sum(bool(r.metrics.get("from_cache")) for r in results),
                           "redis_keys": store.dbsize(), "redis_used_bytes": store.info("memory")["used_memory"],
                           "entities": [r.to_json() for r in results]}
            redis_version = store.info("server")["redis_version"]
            store.close()
            print(f"client {phase}: {wall_s:.3f} s", flush=True)
    return {"startup_s": round(startup_s, 1), "triton_version": triton_version, "redis_version": redis_version, **runs}


# ---------------------------------------------------------------- figures

def per_kind(calls: list[dict]) -> dict[str, dict]:
    """Generator calls per kind: generated and cached counts, prompt and output tokens, summed seconds."""
    kinds = {}
    for kind in ("recheck", "summary", "strengths"):
        of_kind = [c for c in calls if c["kind"] == kind]
        made = [c for c in of_kind if not c["cached"]]
        kinds[kind] = {"calls": len(made), "cached": len(of_kind) - len(made),
                       "prompt_tokens": sum(c["prompt_tokens"] for c in made),
                       "output_tokens": sum(c["output_tokens"] for c in made),
                       "seconds": round(sum(c["seconds"] for c in made), 2)}
    return kinds


def prompt_tokens_per_entity(entities: list[Entity], tokenized: dict[str, int], baseline: dict | None,
                             client_cold: dict) -> list[dict]:
    """Summary + strengths prompt tokens per entity: all reviews (the baseline's calls; without a
    baseline run, its prompts tokenized) vs the client's top-K (counted by the server)."""
    measured = defaultdict(int)
    for call in (baseline or {}).get("calls", []):
        if call["kind"] in ("summary", "strengths"):
            measured[call["entity_id"]] += call["prompt_tokens"]
    client = {r["entity_id"]: sum(c["prompt_tokens"] for c in r["metrics"].get("llm", []))
              for r in client_cold["entities"]}
    rows = []
    for entity in entities:
        all_reviews = measured.get(entity.entity_id) or tokenized[entity.entity_id]
        rows.append({"entity_id": entity.entity_id, "reviews": len(entity.reviews), "all_reviews": all_reviews,
                     "top_k": client[entity.entity_id],
                     "reduction": round(1 - client[entity.entity_id] / all_reviews, 4)})
    return rows


def agreement(a: list[str], b: list[str]) -> float:
    return round(float(np.mean([x == y for x, y in zip(a, b)])), 4)


def label_figures(entities: list[Entity], baseline: dict | None, client_cold: dict) -> dict:
    truth = critics_labels(entities)
    client = {r["entity_id"]: [s["label"] for s in r["reviews"]] for r in client_cold["entities"]}
    every = lambda labels: [label for e in entities for label in labels[e.entity_id]]  # noqa: E731
    figures = {"reviews": sum(len(e.reviews) for e in entities),
               "client_accuracy": agreement(every(client), every(truth)),
               "client_rechecked": sum(s["rechecked"] for r in client_cold["entities"] for s in r["reviews"])}
    if baseline:
        final = {r["entity_id"]: r["labels"] for r in baseline["entities"]}
        first = {r["entity_id"]: r["classifier_labels"] for r in baseline["entities"]}
        figures.update({
            "baseline_vs_client": agreement(every(final), every(client)),
            "baseline_accuracy": agreement(every(final), every(truth)),
            "baseline_classifier_accuracy": agreement(every(first), every(truth)),
            "baseline_rechecked": sum(len(r["rechecked"]) for r in baseline["entities"]),
        })
    return figures


def targets_and_reasons(report: dict) -> dict:
    """Each target with its measured value, met or missed, and a one-line reason from this run's figures."""
    baseline, client, settings = report.get("baseline"), report["client"], report["settings"]
    cold, warm = client["cold"], client["warm"]
    cold_kinds, targets = report["calls"]["client_cold"], {}
    if baseline:
        ratio = baseline["wall_s"] / cold["wall_s"]
        b_kinds = report["calls"]["baseline"]

        def total(kinds: dict, what: str) -> int:
            return sum(k[what] for k in kinds.values())
        targets["speedup_cold"] = {
            "name": "client cold >= 3x faster than the baseline (wall time, same entities)",
            "value": round(ratio, 3), "met": ratio >= TARGETS["speedup_cold"],
            "measured": f"{ratio:.2f}x ({baseline['wall_s']:.1f} vs {cold['wall_s']:.1f} s)",
            "reason": f"the baseline spent {total(b_kinds, 'seconds'):.0f} of {baseline['wall_s']:.0f} s in "
                      f"{total(b_kinds, 'calls')} sequential generator calls ({total(b_kinds, 'prompt_tokens')} "
                      f"prompt / {total(b_kinds, 'output_tokens')} output tokens); the client generated "
                      f"{total(cold_kinds, 'prompt_tokens')} prompt / {total(cold_kinds, 'output_tokens')} output "
                      f"tokens in {total(cold_kinds, 'calls')} calls, up to {settings['concurrency']} entities at "
                      f"a time on the same {report['machine']['cores']} cores"}
    else:
        targets["speedup_cold"] = {"name": "client cold >= 3x faster than the baseline", "value": None, "met": None,
                                   "measured": "not measured (--skip-baseline)", "reason": "baseline not run"}
    share = warm["wall_s"] / cold["wall_s"]
    warm_calls = sum(not c["cached"] for c in warm["calls"])
    targets["warm_vs_cold"] = {
        "name": "warm rerun <= 2 % of the cold run (same entities, same Redis)",
        "value": round(share, 5), "met": share <= TARGETS["warm_vs_cold"],
        "measured": f"{share:.2%} ({warm['wall_s'] * 1e3:.0f} ms vs {cold['wall_s']:.1f} s)",
        "reason": f"{warm['from_cache']} of {len(warm['entities'])} entity results came whole from Redis, "
                  f"{warm_calls} generator calls were made"}
    rows = report["prompt_tokens"]
    full = [r for r in rows if r["reviews"] == FULL_REVIEWS]
    judged = full or rows
    reduction = 1 - sum(r["top_k"] for r in judged) / sum(r["all_reviews"] for r in judged)
    scope = (f"{len(full)} entities with {FULL_REVIEWS} reviews" if full
             else f"all {len(rows)} entities (none has {FULL_REVIEWS} reviews in this run)")
    targets["prompt_reduction"] = {
        "name": f"summary + strengths prompt tokens >= 70 % fewer than with all reviews "
                f"({FULL_REVIEWS}-review entities, K={settings['top_k']})",
        # The target is stated for 35-review entities; with fewer reviews per entity it is not judged.
        "value": round(reduction, 4), "met": reduction >= TARGETS["prompt_reduction"] if full else None,
        "measured": f"{reduction:.1%} over {scope} ({np.mean([r['top_k'] for r in judged]):.0f} vs "
                    f"{np.mean([r['all_reviews'] for r in judged]):.0f} tokens per entity, lowest "
                    f"{min(r['reduction'] for r in judged):.1%})",
        "reason": f"the client's review text is capped by prompt_token_budget ({settings['prompt_token_budget']} "
                  f"estimated tokens for the summary, {settings['prompt_token_budget'] // 2} for strengths); "
                  f"the two system messages alone take {report['system_prompt_tokens']} tokens per entity"}
    return targets


# ---------------------------------------------------------------- report

def markdown(report: dict) -> str:
    machine, s, client = report["machine"], report["settings"], report["client"]
    baseline, targets, labels = report.get("baseline"), report["targets"], report["labels"]
    lines = [
        "# Analysis: this client over Triton vs a seed-004-style in-process baseline",
        "",
        f"{len(report['entities'])} movies of `{report['data_source']}` with "
        + (f"{report['reviews_min']}-{report['reviews_max']}" if report["reviews_min"] != report["reviews_max"]
           else f"{report['reviews_min']}")
        + f" reviews each ({labels['reviews']} reviews). Generator: {report['gguf']} "
        f"(ChatML, JSON-schema grammar, temperature {TEMPERATURE}, top_p {TOP_P}, seed {s['seed']}). Client "
        f"settings: top_k {s['top_k']}, prompt_token_budget {s['prompt_token_budget']}, concurrency "
        f"{s['concurrency']}, recheck_below {s['recheck_below']}. {machine['cores']} cores ({machine['cpu_model']}), "
        f"{machine['date']}; Triton {client['triton_version']}, llama-cpp-python {machine['versions']['llama_cpp_python']}. "
        "Generated by `perf/analysis.py`"
        + (" (--quick: a smoke test, the figures mean nothing)." if report["quick"] else "."),
        f"Other processes used {machine['other_processes_cpu_share']:.0%} of the CPU meanwhile.",
        "",
        "| system | wall time s | vs baseline | model load / server start s |",
        "|---|---:|---:|---:|",
    ]
    if baseline:
        lines.append(f"| baseline: pipeline + SentenceTransformer + sequential llama-cpp-python, all reviews in "
                     f"the prompts | {baseline['wall_s']:.1f} | 1.00x | {baseline['load_s']:.1f} |")
    cold, warm = client["cold"], client["warm"]
    versus = f"{baseline['wall_s'] / cold['wall_s']:.2f}x" if baseline else "-"
    lines += [f"| client, cold (empty Redis) | {cold['wall_s']:.1f} | {versus} | {client['startup_s']} |",
              f"| client, warm rerun ({warm['from_cache']} of {len(warm['entities'])} entities from Redis; "
              f"{warm['wall_s'] / cold['wall_s']:.2%} of cold) | {warm['wall_s']:.3f} | - | - |"]
    lines += ["", "Wall time: from the first entity to the last result; loading the in-process models and starting "
              "tritonserver (all three models) are not included.", "", "## Targets", "",
              "| target | measured | | why |", "|---|---|---|---|"]
    for target in targets.values():
        verdict = "not judged" if target["met"] is None else ("**met**" if target["met"] else "**missed**")
        lines.append(f"| {target['name']} | {target['measured']} | {verdict} | {target['reason']} |")
    lines += ["", "## Generator calls", "",
              "| system | kind | calls | from Redis | prompt tokens | output tokens | seconds (summed) |",
              "|---|---|---:|---:|---:|---:|---:|"]
    for system, kinds in report["calls"].items():
        for kind, k in kinds.items():
            lines.append(f"| {system.replace('_', ' ')} | {kind} | {k['calls']} | {k['cached']} | {k['prompt_tokens']} | "
                         f"{k['output_tokens']} | {k['seconds']:.1f} |")
    lines += ["", "Client seconds are per call (time to the last token, queueing included) and overlap, up to "
              f"{s['concurrency']} entities at a time.", ""]
    if baseline:
        p = baseline["phases_s"]
        lines += [f"Baseline time by step: classify {p.get('classify', 0):.1f} s, embed {p.get('embed', 0):.1f} s, "
                  f"re-check {p.get('recheck', 0):.1f} s, summary {p.get('summary', 0):.1f} s, strengths "
                  f"{p.get('strengths', 0):.1f} s; answers that were not JSON: {baseline['unparsable_answers']}.", ""]
    source = "as the baseline sent them" if baseline else "the baseline's prompts tokenized, not run"
    lines += ["## Summary + strengths prompt tokens per entity", "",
              f"All reviews ({source}) vs the client's top-K within the budget (counted by the server).", "",
              "| entity | reviews | all reviews | top-K | reduction |", "|---|---:|---:|---:|---:|"]
    for row in report["prompt_tokens"]:
        lines.append(f"| {row['entity_id']} | {row['reviews']} | {row['all_reviews']} | {row['top_k']} | "
                     f"{row['reduction']:.1%} |")
    lines += ["", "## Labels", ""]
    if baseline:
        lines.append(f"Final labels (after re-checks) agree between baseline and client for "
                     f"{labels['baseline_vs_client']:.1%} of {labels['reviews']} reviews. Agreement with the "
                     f"critics' fresh/rotten: baseline {labels['baseline_accuracy']:.1%} (classifier alone "
                     f"{labels['baseline_classifier_accuracy']:.1%}), client {labels['client_accuracy']:.1%}. "
                     f"Re-checked: baseline {labels['baseline_rechecked']}, client {labels['client_rechecked']} "
                     "(torch FP32 vs served INT8 confidences).")
    else:
        lines.append(f"Client agreement with the critics' fresh/rotten: {labels['client_accuracy']:.1%}; "
                     f"re-checked {labels['client_rechecked']}.")
    lines += ["", f"Redis after the cold run: {cold['redis_keys']} keys, {cold['redis_used_bytes'] / 2**20:.1f} MiB.", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--entities", type=int, default=20, help="movies, best-covered first (default 20)")
    parser.add_argument("--reviews-per-entity", type=int, default=FULL_REVIEWS,
                        help=f"reviews per movie, at most (default {FULL_REVIEWS}: all)")
    parser.add_argument("--skip-baseline", action="store_true",
                        help="client only; the baseline's prompt tokens are then tokenized, not measured")
    parser.add_argument("--quick", action="store_true", help="smoke run: 3 entities x 10 reviews")
    args = parser.parse_args()
    if args.quick:
        args.entities, args.reviews_per_entity = 3, 10
    other_load = OtherLoad()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if not TEST_SPLIT.is_file():
        sys.exit(f"error: {TEST_SPLIT} is missing; run `make data` first")
    gguf = gguf_path()
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    settings = Settings()
    started = time.perf_counter()
    entities = load_entities(args.entities, args.reviews_per_entity)
    print(f"{len(entities)} entities, {sum(len(e.reviews) for e in entities)} reviews", flush=True)

    from llama_cpp import Llama
    vocab = Llama(model_path=str(gguf), vocab_only=True, verbose=False)
    tokenize = lambda text: vocab.tokenize(text.encode("utf-8"), special=True)  # noqa: E731  as create_completion does
    tokenized = {e.entity_id: sum(len(tokenize(chatml(m))) for m in all_review_prompts(settings.entity_kind, e).values())
                 for e in entities}
    # The part of both prompts that holds no review: system message and empty JSON array, ChatML included.
    system_prompt_tokens = sum(len(tokenize(chatml(m)))
                               for m in all_review_prompts(settings.entity_kind, Entity("-", [])).values())
    del vocab

    baseline = None
    if not args.skip_baseline:
        print("baseline (in process) ...", flush=True)
        baseline = run_baseline(entities, settings, gguf)
        print(f"baseline: {baseline['wall_s']:.1f} s (+ {baseline['load_s']:.1f} s loading)", flush=True)

    print("client (tritonserver + redis-server) ...", flush=True)
    client = run_client(entities, settings)

    machine = machine_info()
    machine["versions"]["llama_cpp_python"] = metadata.version("llama_cpp_python")
    machine["versions"]["redis-server"] = client["redis_version"]
    report = {
        "machine": machine,
        "quick": args.quick,
        "data_source": str(TEST_SPLIT),
        "gguf": f"{gguf} ({gguf.stat().st_size / 2**30:.2f} GiB)",
        "settings": {k: v for k, v in asdict(settings).items() if k not in ("urls", "redis_url")},
        "entities": [{"entity_id": e.entity_id, "reviews": len(e.reviews)} for e in entities],
        "reviews_min": min(len(e.reviews) for e in entities),
        "reviews_max": max(len(e.reviews) for e in entities),
        "system_prompt_tokens": system_prompt_tokens,
        "baseline": baseline,
        "client": client,
        "calls": {**({"baseline": per_kind(baseline["calls"])} if baseline else {}),
                  "client_cold": per_kind(client["cold"]["calls"]), "client_warm": per_kind(client["warm"]["calls"])},
        "prompt_tokens": prompt_tokens_per_entity(entities, tokenized, baseline, client["cold"]),
        "labels": label_figures(entities, baseline, client["cold"]),
    }
    report["targets"] = targets_and_reasons(report)
    report["duration_s"] = round(time.perf_counter() - started, 1)
    write_results("analysis", report, markdown, other_load)
    print(f"took {report['duration_s']:.0f} s", flush=True)


if __name__ == "__main__":
    main()
