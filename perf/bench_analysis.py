"""Wall time, generator calls and tokens of the analysis client against a seed-004-style baseline, in one run.

    python perf/bench_analysis.py [--entities 20] [--reviews-per-entity 35] [--skip-baseline]
                                  [--goodput-delay 5] [--quick]

Every system analyses the same entities, the best-covered movies of the held-out split (15 have 35
reviews, the next ones 34), with the client Settings' sampling, JSON schemas as grammar and
max_tokens rule. One system at a time (the machine has 2 cores):
  1. baseline, in this process, as seed 004 did it (perf/harness/baselines.py): transformers
     pipeline, SentenceTransformer and llama-cpp-python `Llama(n_ctx=8192)` on the served GGUF,
     entity after entity: one re-check call per doubtful review (is_doubtful), then a JSON summary
     and JSON strengths with ALL the entity's reviews in the prompt;
  2. the client (client/analysis.py) with its default Settings: tritonserver (response cache on,
     as deployed) and a throwaway redis-server; `SyncAnalyzer.analyze_many(entities)` on an empty
     Redis (cold), then again in a new session (warm rerun): per review and per sentence sentiment
     and embeddings, aspects mined from the sentences and named with a summary in ONE generator
     call per entity, strengths computed;
  3. the client with the opt-in generator re-checks (recheck_below 0.8 and contrast words: the
     doubtful reviews re-checked in batches), cold, on a fresh server and Redis;
  4. goodput: on a fresh server with the response cache off and no Redis (every request computed),
     one other entity (the next best-covered movie) alone by `analyze` (an online request, priority
     1), then the batch of entities (`analyze_many`, priority 2) with that entity analysed in its own
     session --goodput-delay seconds after the batch started.
Model loading and server startup are timed apart. Tokens are counted by llama-cpp-python (baseline)
and by the server (client). Labels are compared with the critics' fresh/rotten.
Targets: client cold >= 5x faster than the baseline (wall time); warm rerun <= 2 % of the cold run.
Writes analysis.json, .md, .png to perf/results/ (build/perf-smoke/ with --quick).
"""
import os
import threading
import time
from collections import defaultdict
from dataclasses import asdict, replace

import numpy as np
import redis

from harness import results
from harness.baselines import SEED004_RECHECK_BELOW, best_covered_entities, critics_labels, seed004_analysis
from harness.server import served_file, server_version, triton
from reviewlens.client.analysis import Entity
from reviewlens.client.settings import Settings
from reviewlens.client.sync import SyncAnalyzer
from reviewlens.ensemble import interface as api
from reviewlens.local.redis_server import RedisServer
from reviewlens.local.sample_data import HELD_OUT
from reviewlens.local.tritonserver import free_port

FULL_REVIEWS = 35  # the best-covered movies of the sample data have 35 held-out reviews
TARGETS = {"speedup_cold": 5.0, "warm_vs_cold": 0.02}
# The client with its opt-in generator re-checks of doubtful reviews, by seed 004's rule.
WITH_RECHECKS = {"recheck_below": SEED004_RECHECK_BELOW}


def generator_calls(analyzer: SyncAnalyzer) -> list[dict]:
    """The session's generator calls as the client measured them (seconds include queueing)."""
    return [{"kind": c.kind, "cached": c.cached, "prompt_tokens": c.prompt_tokens, "output_tokens": c.output_tokens,
             "ttft_s": c.ttft_s, "seconds": c.total_s} for c in analyzer.metrics.calls]


def analyse_batch(entities: list[Entity], settings: Settings, label: str) -> dict:
    """analyze_many in a new session: wall time, generator calls, run summary, results."""
    with SyncAnalyzer(settings) as analyzer:
        started = time.perf_counter()
        analysed = analyzer.analyze_many(entities, on_done=lambda r: print(
            f"  {label} {r.entity_id}: {time.perf_counter() - started:.1f} s"
            + (" (from Redis)" if r.metrics.get("from_cache") else ""), flush=True))
        wall_s = time.perf_counter() - started
        return {"wall_s": round(wall_s, 4), "calls": generator_calls(analyzer),
                "run": analyzer.metrics.summary(settings.sla_ttft_s),
                "from_cache": sum(bool(r.metrics.get("from_cache")) for r in analysed),
                "entities": [r.to_json() for r in analysed]}


def run_client(entities: list[Entity], settings: Settings, phases: tuple[str, ...], benchmark: str) -> dict:
    """A tritonserver (response cache on, as deployed) and a redis-server of its own; each phase a
    new session on the same Redis (the first finds it empty)."""
    starting = time.perf_counter()
    with triton(benchmark, response_cache=True) as server, RedisServer(free_port()) as cache_server:
        startup_s = time.perf_counter() - starting
        settings = replace(settings, urls=(server.grpc_url,), redis_url=cache_server.url)
        runs = {"startup_s": round(startup_s, 1), "triton_version": server_version(server.grpc_url)}
        store = redis.Redis.from_url(cache_server.url)
        for phase in phases:
            runs[phase] = analyse_batch(entities, settings, phase)
            runs[phase].update(redis_keys=store.dbsize(), redis_used_bytes=store.info("memory")["used_memory"])
        runs["redis_version"] = store.info("server")["redis_version"]
        store.close()
    return runs


def analyse_single(entity: Entity, settings: Settings, clock_zero: float) -> dict:
    """One entity in a session of its own: wall time, its generator calls and their goodput."""
    with SyncAnalyzer(settings) as analyzer:
        started = time.perf_counter()
        result = analyzer.analyze(entity)
        ended = time.perf_counter()
        calls = generator_calls(analyzer)
    generated = [c for c in calls if not c["cached"]]
    return {"wall_s": round(ended - started, 3), "started_at_s": round(started - clock_zero, 2),
            "ended_at_s": round(ended - clock_zero, 2), "calls": calls,
            "goodput": round(sum(c["ttft_s"] < settings.sla_ttft_s for c in generated) / len(generated), 3)
            if generated else None, "aspects": len(result.aspects)}


def goodput_run(batch: list[Entity], single: Entity, settings: Settings, delay_s: float) -> dict:
    """The single entity alone, then while the batch runs (started delay_s after it), on one server
    with the response cache off and no Redis, so that both runs of the single entity compute everything."""
    starting = time.perf_counter()
    with triton("analysis_goodput", response_cache=False) as server:
        startup_s = time.perf_counter() - starting
        settings = replace(settings, urls=(server.grpc_url,), redis_url=None)
        print(f"  goodput: {single.entity_id} alone ...", flush=True)
        alone = analyse_single(single, settings, time.perf_counter())
        outcome: dict = {}

        def run_batch():
            try:
                outcome["batch"] = analyse_batch(batch, settings, "batch")
                outcome["batch"]["ended_at_s"] = round(time.perf_counter() - batch_started, 2)
            except BaseException as error:  # re-raised in the main thread
                outcome["error"] = error
        batch_started = time.perf_counter()
        worker = threading.Thread(target=run_batch, name="batch")
        worker.start()
        time.sleep(delay_s)
        print(f"  goodput: {single.entity_id} while the batch runs ...", flush=True)
        during = analyse_single(single, settings, batch_started)
        worker.join()
        if "error" in outcome:
            raise outcome["error"]
    batch_result = outcome["batch"]
    del batch_result["entities"]  # the batch's results are not what is measured here
    return {"startup_s": round(startup_s, 1), "delay_s": delay_s, "single": single.entity_id,
            "single_reviews": len(single.reviews), "alone": alone, "during_batch": during, "batch": batch_result,
            "batch_still_running": during["ended_at_s"] <= batch_result["ended_at_s"]}


def per_kind(calls: list[dict]) -> dict[str, dict]:
    """Generator calls per kind: generated and cached counts, prompt and output tokens, summed seconds."""
    kinds = {}
    for kind in dict.fromkeys(c["kind"] for c in calls):
        made = [c for c in calls if c["kind"] == kind and not c["cached"]]
        kinds[kind] = {"calls": len(made), "cached": sum(c["kind"] == kind for c in calls) - len(made),
                       **{what: sum(c[what] for c in made) for what in ("prompt_tokens", "output_tokens")},
                       "seconds": round(sum(c["seconds"] for c in made), 2)}
    return kinds


def per_entity(entities: list[Entity], baseline: dict | None, cold: dict, rechecks: dict) -> dict:
    """Generator calls, prompt and output tokens per entity, all exact: the baseline's calls, the
    default client's (its naming call) and, with re-checks on, the doubtful reviews and the calls
    each result lists in metrics["llm"]."""
    rows = {e.entity_id: {"entity_id": e.entity_id, "reviews": len(e.reviews)} for e in entities}
    if baseline:
        for call in baseline["calls"]:
            row = rows[call["entity_id"]]
            row["baseline_calls"] = row.get("baseline_calls", 0) + 1
            for what in ("prompt_tokens", "output_tokens"):
                row[f"baseline_{what}"] = row.get(f"baseline_{what}", 0) + call[what]
    for system, run in (("client", cold), ("rechecks", rechecks)):
        for result in run["entities"]:
            m = result["metrics"]
            made = [c for c in m["llm"] if not c["cached"]]
            rows[result["entity_id"]].update({
                "sentences": m["sentences"], f"{system}_doubtful": m["rechecked"], f"{system}_calls": len(made),
                **{f"{system}_{what}": sum(c[what] for c in made) for what in ("prompt_tokens", "output_tokens")}})
    count = len(entities)
    mean = {}
    for system, run in (("baseline", baseline), ("client", cold), ("client with re-checks", rechecks)):
        if run:
            t = totals(per_kind(run["calls"]))
            mean[system] = {what: round(t[what] / count, 1) for what in ("calls", "prompt_tokens", "output_tokens")}
    return {"mean": mean, "rows": list(rows.values())}


def label_figures(entities: list[Entity], baseline: dict | None, cold: dict, rechecks: dict) -> dict:
    """Label agreement with the critics' fresh/rotten (and between baseline and client)."""
    truth = critics_labels(entities)

    def labels_of(run: dict) -> dict[str, list[str]]:
        return {r["entity_id"]: [s["label"] for s in r["reviews"]] for r in run["entities"]}

    def agree(a: dict, b: dict) -> float:
        return round(float(np.mean([x == y for e in entities for x, y in zip(a[e.entity_id], b[e.entity_id], strict=True)])), 4)
    client, rechecked = labels_of(cold), labels_of(rechecks)
    figures = {"reviews": sum(len(e.reviews) for e in entities), "client_accuracy": agree(client, truth),
               "client_rechecks_accuracy": agree(rechecked, truth),
               "client_rechecked": sum(s["rechecked"] for r in rechecks["entities"] for s in r["reviews"])}
    if baseline:
        final = {r["entity_id"]: r["labels"] for r in baseline["entities"]}
        first = {r["entity_id"]: r["classifier_labels"] for r in baseline["entities"]}
        figures.update({"baseline_vs_client": agree(final, client), "baseline_accuracy": agree(final, truth),
                        "baseline_classifier_accuracy": agree(first, truth),
                        "baseline_rechecked": sum(len(r["rechecked"]) for r in baseline["entities"])})
    return figures


def totals(kinds: dict) -> dict:
    return {what: sum(k[what] for k in kinds.values()) for what in ("calls", "prompt_tokens", "output_tokens", "seconds")}


def targets_and_reasons(report: dict) -> dict:
    """Each target with its measured value, met or missed, and a one-line reason from this run's figures."""
    baseline, client, s = report.get("baseline"), report["client"], report["settings"]
    cold, warm, rechecks = client["cold"], client["warm"], report["client_rechecks"]["cold"]
    targets = {"speedup_cold": {"name": "client cold >= 5x faster than the baseline", "value": None, "met": None,
                                "measured": "not measured (--skip-baseline)", "reason": "baseline not run"}}
    if baseline:
        ratio = baseline["wall_s"] / cold["wall_s"]
        b, c = totals(report["calls"]["baseline"]), totals(report["calls"]["client_cold"])
        targets["speedup_cold"] = {
            "name": "client cold >= 5x faster than the baseline (wall time, same entities)", "value": round(ratio, 3),
            "met": ratio >= TARGETS["speedup_cold"], "measured": f"{ratio:.2f}x ({baseline['wall_s']:.1f} vs {cold['wall_s']:.1f} s)",
            "reason": f"the baseline spent {b['seconds']:.0f} of {baseline['wall_s']:.0f} s in {b['calls']} sequential "
                      f"generator calls ({b['prompt_tokens']} prompt / {b['output_tokens']} output tokens); the client "
                      f"made {c['calls']} calls ({c['prompt_tokens']} prompt / {c['output_tokens']} output tokens), "
                      f"up to {s['concurrency']} entities at a time on the same {os.cpu_count()} cores; with the "
                      f"opt-in re-checks it takes {rechecks['wall_s']:.1f} s ({baseline['wall_s'] / rechecks['wall_s']:.2f}x)"}
    share = warm["wall_s"] / cold["wall_s"]
    targets["warm_vs_cold"] = {
        "name": "warm rerun <= 2 % of the cold run (same entities, same Redis)", "value": round(share, 5),
        "met": share <= TARGETS["warm_vs_cold"], "measured": f"{share:.2%} ({warm['wall_s'] * 1e3:.0f} ms vs {cold['wall_s']:.1f} s)",
        "reason": f"{warm['from_cache']} of {len(warm['entities'])} entity results came whole from Redis, "
                  f"{sum(not c['cached'] for c in warm['calls'])} generator calls were made"}
    return targets


def measure(args, out) -> dict:
    if args.quick:
        args.entities, args.reviews_per_entity, args.goodput_delay = 3, 10, 2.0
    settings = Settings()
    *entities, single = best_covered_entities(args.entities + 1, args.reviews_per_entity)
    print(f"{len(entities)} entities, {sum(len(e.reviews) for e in entities)} reviews", flush=True)
    baseline = None
    if not args.skip_baseline:
        print("baseline (in process) ...", flush=True)
        baseline = seed004_analysis(entities, settings)
        print(f"baseline: {baseline['wall_s']:.1f} s (+ {baseline['load_s']:.1f} s loading)", flush=True)
    print("client (tritonserver + redis-server) ...", flush=True)
    client = run_client(entities, settings, ("cold", "warm"), "analysis")
    print("client with re-checks (fresh tritonserver + redis-server) ...", flush=True)
    rechecks = run_client(entities, replace(settings, **WITH_RECHECKS), ("cold",), "analysis_rechecks")
    print("goodput: one entity while the batch runs (fresh tritonserver, no caches) ...", flush=True)
    goodput = goodput_run(entities, single, settings, args.goodput_delay)
    gguf = served_file(api.GENERATOR, "model.gguf")
    report = {
        "data_source": results.repo_relative(HELD_OUT), "gguf": f"{results.repo_relative(gguf)} ({gguf.stat().st_size / 2**30:.2f} GiB)",
        "settings": {k: v for k, v in asdict(settings).items() if k not in ("urls", "redis_url")},
        "entities": [{"entity_id": e.entity_id, "reviews": len(e.reviews)} for e in entities],
        "reviews_min": min(len(e.reviews) for e in entities), "reviews_max": max(len(e.reviews) for e in entities),
        "baseline": baseline, "client": client, "client_rechecks": rechecks, "goodput": goodput,
        "calls": {**({"baseline": per_kind(baseline["calls"])} if baseline else {}),
                  "client_cold": per_kind(client["cold"]["calls"]), "client_warm": per_kind(client["warm"]["calls"]),
                  "client_rechecks": per_kind(rechecks["cold"]["calls"])},
        "per_entity": per_entity(entities, baseline, client["cold"], rechecks["cold"]),
        "labels": label_figures(entities, baseline, client["cold"], rechecks["cold"]),
    }
    return {**report, "targets": targets_and_reasons(report)}


def markdown(report: dict) -> str:
    s, client, baseline, labels = report["settings"], report["client"], report.get("baseline"), report["labels"]
    cold, warm, rechecks = client["cold"], client["warm"], report["client_rechecks"]["cold"]
    counts = {report["reviews_min"], report["reviews_max"]}
    sampling = "" if s["temperature"] == 0 else f", top_p {s['top_p']}, seed {s['seed']}"
    lines = results.header(
        report, "Analysis: this client over Triton vs a seed-004-style in-process baseline",
        f"{len(report['entities'])} movies of `{report['data_source']}` with {'-'.join(map(str, sorted(counts)))} reviews "
        f"each ({labels['reviews']} reviews). Generator: {report['gguf']} (ChatML, JSON-schema grammar, temperature "
        f"{s['temperature']}{sampling}). Client "
        f"settings: concurrency {s['concurrency']}, re-checks off (with re-checks: recheck_below "
        f"{WITH_RECHECKS['recheck_below']} and contrast words, recheck_batch {s['recheck_batch']}), max_aspects "
        f"{s['max_aspects']} per polarity. Triton {client['triton_version']}, llama-cpp-python "
        f"{report['machine']['versions'].get('llama_cpp_python', '?')};")

    def generated(run: dict) -> str:
        t = totals(per_kind(run["calls"]))
        return f"{t['calls']} | {t['prompt_tokens']} | {t['output_tokens']}"
    lines += ["| system | wall time s | vs baseline | model load / server start s | generator calls | prompt tokens | "
              "output tokens |", "|---|---:|---:|---:|---:|---:|---:|"]
    versus = (lambda run: f"{baseline['wall_s'] / run['wall_s']:.2f}x") if baseline else (lambda run: "-")
    if baseline:
        lines.append(f"| baseline: pipeline + SentenceTransformer + sequential llama-cpp-python, all reviews in the "
                     f"prompts | {baseline['wall_s']:.1f} | 1.00x | {baseline['load_s']:.1f} | {generated(baseline)} |")
    lines += [f"| client, cold (empty Redis) | {cold['wall_s']:.1f} | {versus(cold)} | {client['startup_s']} | {generated(cold)} |",
              f"| client, warm rerun ({warm['from_cache']} of {len(warm['entities'])} entities from Redis; "
              f"{warm['wall_s'] / cold['wall_s']:.2%} of cold) | {warm['wall_s']:.3f} | - | - | {generated(warm)} |",
              f"| client with re-checks (opt-in), cold | {rechecks['wall_s']:.1f} | {versus(rechecks)} | "
              f"{report['client_rechecks']['startup_s']} | {generated(rechecks)} |", "",
              "Wall time: from the first entity to the last result; loading the in-process models and starting "
              "tritonserver (all three models) are not included.", "", "## Targets", "",
              "| target | measured | | why |", "|---|---|---|---|"]
    for t in report["targets"].values():
        verdict = "not judged" if t["met"] is None else ("**met**" if t["met"] else "**missed**")
        lines.append(f"| {t['name']} | {t['measured']} | {verdict} | {t['reason']} |")
    lines += ["", "## Generator calls", "", "| system | kind | calls | from Redis | prompt tokens | output tokens | "
              "seconds (summed) |", "|---|---|---:|---:|---:|---:|---:|"]
    lines += [f"| {system.replace('_', ' ')} | {kind} | {k['calls']} | {k['cached']} | {k['prompt_tokens']} | "
              f"{k['output_tokens']} | {k['seconds']:.1f} |" for system, kinds in report["calls"].items() for kind, k in kinds.items()]
    lines += ["", f"Client seconds are per call (time to the last token, queueing included) and overlap, up to "
              f"{s['concurrency']} entities at a time. Client cold: time to first token p50 {cold['run']['ttft_p50_s']} s, "
              f"goodput {cold['run']['goodput']:.0%} of calls under {s['sla_ttft_s']} s.", ""]
    if baseline:
        p = defaultdict(float, baseline["phases_s"])
        lines += [f"Baseline time by step: classify {p['classify']:.1f} s, embed {p['embed']:.1f} s, re-check "
                  f"{p['recheck']:.1f} s, summary {p['summary']:.1f} s, strengths {p['strengths']:.1f} s; answers "
                  f"that were not JSON: {baseline['unparsable_answers']}.", ""]
    pe = report["per_entity"]
    lines += ["## Generator work per entity", "",
              "| system | calls per entity | prompt tokens per entity | output tokens per entity |", "|---|---:|---:|---:|"]
    lines += [f"| {system} | {m['calls']} | {m['prompt_tokens']:.0f} | {m['output_tokens']:.0f} |" for system, m in pe["mean"].items()]
    lines += ["", "Per entity, generated calls and their tokens, all exact (a result lists its generator calls in "
              "metrics[\"llm\"]): the baseline's; the default client's (its one naming call); with re-checks on, "
              f"the doubtful reviews and every call (re-checks of up to {s['recheck_batch']} reviews, then naming).", "",
              "| entity | reviews | sentences | baseline calls | baseline prompt / output tokens | client calls | client "
              "prompt / output tokens | with re-checks: doubtful | calls | prompt / output tokens |",
              "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in pe["rows"]:
        lines.append(f"| {r['entity_id']} | {r['reviews']} | {r['sentences']} | {r.get('baseline_calls', '-')} | "
                     f"{r.get('baseline_prompt_tokens', '-')} / {r.get('baseline_output_tokens', '-')} | "
                     f"{r['client_calls']} | {r['client_prompt_tokens']} / {r['client_output_tokens']} | "
                     f"{r['rechecks_doubtful']} | {r['rechecks_calls']} | {r['rechecks_prompt_tokens']} / "
                     f"{r['rechecks_output_tokens']} |")
    g = report["goodput"]
    alone, during, batch = g["alone"], g["during_batch"], g["batch"]

    def calls_line(single: dict) -> str:
        made = [c for c in single["calls"] if not c["cached"]]
        ttfts = ", ".join(f"{c['kind']} {c['ttft_s']:.1f}" for c in made)
        return f"{len(made)} calls, TTFT s: {ttfts}"
    lines += ["", "## Goodput: one entity while a batch runs", "",
              f"A fresh tritonserver with the response cache off and no Redis (everything computed). `{g['single']}` "
              f"({g['single_reviews']} reviews, not in the batch) analysed alone, then in its own session "
              f"{g['delay_s']:.0f} s after a {len(report['entities'])}-entity `analyze_many` started. Goodput: share "
              f"of generator calls with time to first token under sla_ttft_s = {s['sla_ttft_s']} s.", "",
              "| request | wall time s | goodput | generator calls |", "|---|---:|---:|---|",
              f"| {g['single']} alone | {alone['wall_s']:.1f} | {alone['goodput']:.0%} | {calls_line(alone)} |",
              f"| {g['single']} during the batch | {during['wall_s']:.1f} | {during['goodput']:.0%} | {calls_line(during)} |",
              f"| the batch ({len(report['entities'])} entities) | {batch['wall_s']:.1f} | {batch['run']['goodput']:.0%} | "
              f"{batch['run']['llm_calls']} calls, TTFT p50 {batch['run']['ttft_p50_s']} s |", "",
              f"The single entity ran from {during['started_at_s']:.0f} s to {during['ended_at_s']:.0f} s after the "
              f"batch started; the batch ended at {batch['ended_at_s']:.0f} s"
              + ("." if g["batch_still_running"] else " (before the single entity: it did not overlap all the way)."), ""]
    lines += ["## Labels", "",
              "Agreement of the final per-review labels with the critics' fresh/rotten "
              "(reviewlens.local.sample_data CRITICS_SENTIMENT):", "",
              "| system | agreement | re-checked reviews |", "|---|---:|---:|"]
    if baseline:
        lines += [f"| baseline (torch FP32 classifier + llama-cpp re-checks) | {labels['baseline_accuracy']:.1%} | "
                  f"{labels['baseline_rechecked']} |",
                  f"| baseline classifier alone | {labels['baseline_classifier_accuracy']:.1%} | 0 |"]
    lines += [f"| client (served classifier) | {labels['client_accuracy']:.1%} | 0 |",
              f"| client with re-checks (served classifier + generator re-checks) | "
              f"{labels['client_rechecks_accuracy']:.1%} | {labels['client_rechecked']} |", ""]
    if baseline:
        lines += [f"Baseline and client final labels agree for {labels['baseline_vs_client']:.1%} of "
                  f"{labels['reviews']} reviews.", ""]
    lines += [f"Redis after the cold run: {cold['redis_keys']} keys, {cold['redis_used_bytes'] / 2**20:.1f} MiB "
              "(per review and per sentence sentiment and embeddings, generator answers, entity results).", ""]
    return "\n".join(lines)


def plot(report: dict, path) -> None:
    client = report["client"]
    systems = {**({"baseline": report["baseline"]["wall_s"]} if report.get("baseline") else {}),
               "client cold": client["cold"]["wall_s"],
               "client cold, with re-checks": report["client_rechecks"]["cold"]["wall_s"],
               "client warm": client["warm"]["wall_s"]}
    mean = report["per_entity"]["mean"]
    tokens = {f"{system} {what}": mean[system][f"{what}_tokens"] for system in mean for what in ("prompt", "output")}
    results.bar_chart(path, "Analysis: client over Triton vs seed-004-style baseline",
                      [("wall time s", systems), ("generator tokens per entity", tokens)])


def arguments(parser) -> None:
    parser.add_argument("--entities", type=int, default=20, help="movies, best-covered first (default 20; --quick 3)")
    parser.add_argument("--reviews-per-entity", type=int, default=FULL_REVIEWS,
                        help=f"reviews per movie, at most (default {FULL_REVIEWS}: all; --quick 10)")
    parser.add_argument("--skip-baseline", action="store_true", help="client only")
    parser.add_argument("--goodput-delay", type=float, default=5.0,
                        help="seconds between the batch's start and the single entity's (default 5; --quick 2)")


if __name__ == "__main__":
    results.main("analysis", measure, markdown, plot, arguments)
