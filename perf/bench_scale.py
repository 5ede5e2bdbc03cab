"""Scale-out on one 2-core machine: one vs two Triton replicas, each pinned to its own core, through
the Ray job and through the single-process path; then, on paper, a fleet for a million entities.

    python perf/bench_scale.py [--entities 20] [--reviews-per-entity 35]

Fresh tritonservers for each system (response cache off, no prefix cache carried over), replica
i pinned to core i (TritonServer.cpus, as `taskset -c`; their models size their threads to that
one core). For each system, the same best-covered held-out movies on a fresh redis-server, cold:
  1. single process, one replica: `SyncAnalyzer.analyze_many` (what `reviewlens precompute` runs);
  2. single process, both replicas: the same with both URLs (the pool spreads the calls);
  3. Ray job, one replica: `precompute_on_ray` (client/ray_job.py) with one actor, on a local Ray
     of 2 CPUs (`ray.init(num_cpus=2)`) started once, outside the timings;
  4. Ray job, both replicas: two actors, one per URL.
Entities per minute from each wall time; Ray's overhead = (3) against (1), the same single server;
scale-out = (4) against (3) and (2) against (1). The Ray client actors run on the same two cores as
the servers. The estimate for 1,000,000 entities takes this run's per-entity generator work
(output and prompt tokens per entity, from the results' own metrics) and states what it assumes of
a GPU replica. Writes scale.json, .md, .png to perf/results/ (build/perf-smoke/ with --quick).
"""
import time
from contextlib import ExitStack, contextmanager
from dataclasses import replace

import ray

from harness import results
from harness.baselines import best_covered_entities
from harness.server import triton
from reviewlens.client.ray_job import precompute_on_ray
from reviewlens.client.settings import Settings
from reviewlens.client.sync import SyncAnalyzer
from reviewlens.local.redis_server import RedisServer
from reviewlens.local.tritonserver import free_port

# What the paper estimate assumes of one GPU replica (an L4-class 24 GB GPU serving the 7B generator
# in bfloat16 with TensorRT-LLM in-flight batching, ~32 sequences): aggregate decode tokens/s (its
# 300 GB/s read the 15 GB of weights ~20 times a second, each step one token for every sequence)
# and prompt tokens/s of prefill. Assumptions, not measurements: nothing here has a GPU.
GPU_DECODE_TOKENS_PER_S = 600
GPU_PREFILL_TOKENS_PER_S = 4000
MILLION = 1_000_000


def per_entity_work(analysed) -> dict:
    """Generator calls and tokens per entity, from each result's own list of its calls."""
    calls = [c for r in analysed for c in r.metrics.get("llm", []) if not c["cached"]]
    count = len(analysed)
    return {"calls": round(len(calls) / count, 2), "prompt_tokens": round(sum(c["prompt_tokens"] for c in calls) / count, 1),
            "output_tokens": round(sum(c["output_tokens"] for c in calls) / count, 1)}


def run_system(name: str, entities, settings: Settings, on_ray: bool) -> dict:
    with RedisServer(free_port()) as cache:
        settings = replace(settings, redis_url=cache.url)
        started = time.perf_counter()
        if on_ray:
            run = precompute_on_ray(entities, settings)
            analysed, failed = run.results, len(run.failed)
        else:
            with SyncAnalyzer(settings) as analyzer:
                analysed, failed = analyzer.analyze_many(entities), 0
        wall_s = time.perf_counter() - started
    print(f"  {name}: {wall_s:.1f} s ({failed} failed)", flush=True)
    return {"system": name, "replicas": len(settings.urls), "ray": on_ray, "wall_s": round(wall_s, 2),
            "entities": len(analysed), "failed": failed,
            "entities_per_minute": round(len(analysed) / wall_s * 60, 2), "work": per_entity_work(analysed)}


def paper_estimate(work: dict) -> dict:
    """Replicas and hours for a million entities, from the measured work per entity and the assumed GPU rates."""
    decode_s = work["output_tokens"] / GPU_DECODE_TOKENS_PER_S
    prefill_s = work["prompt_tokens"] / GPU_PREFILL_TOKENS_PER_S
    per_entity_s = decode_s + prefill_s   # the generator's share; the encoders are ~1 % on a GPU
    replica_hours = MILLION * per_entity_s / 3600
    return {"gpu_decode_tokens_per_s": GPU_DECODE_TOKENS_PER_S, "gpu_prefill_tokens_per_s": GPU_PREFILL_TOKENS_PER_S,
            "seconds_per_entity_per_replica": round(per_entity_s, 4), "replica_hours": round(replica_hours, 1),
            "replicas_for_8_hours": max(1, -(-round(replica_hours, 1) // 8))}


@contextmanager
def replicas(count: int, name: str):
    """count fresh tritonservers (response cache off), replica i pinned to core i: no prefix cache
    or warm-up is carried from one system to the next."""
    servers = [triton(f"scale_{name}_{i}") for i in range(count)]
    with ExitStack() as stack:
        for core, server in enumerate(servers):
            server.cpus = frozenset({core})
            stack.enter_context(server)
        yield tuple(server.grpc_url for server in servers)


def measure(args, out) -> dict:
    if args.quick:
        args.entities, args.reviews_per_entity = 2, 6
    entities = best_covered_entities(args.entities, args.reviews_per_entity)
    print(f"{len(entities)} entities, {sum(len(e.reviews) for e in entities)} reviews", flush=True)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    rows = []
    try:
        for system, count, on_ray in (("single process, 1 replica", 1, False), ("single process, 2 replicas", 2, False),
                                      ("Ray job, 1 replica", 1, True), ("Ray job, 2 replicas", 2, True)):
            with replicas(count, f"{'ray' if on_ray else 'single'}{count}") as urls:
                rows.append(run_system(system, entities, Settings(urls=urls), on_ray))
    finally:
        ray.shutdown()
    by = {(r["replicas"], r["ray"]): r for r in rows}
    return {"entities": len(entities), "reviews": sum(len(e.reviews) for e in entities), "rows": rows,
            "ray_overhead": round(by[(1, True)]["wall_s"] / by[(1, False)]["wall_s"] - 1, 4),
            "scale_out_ray": round(by[(1, True)]["wall_s"] / by[(2, True)]["wall_s"], 3),
            "scale_out_single": round(by[(1, False)]["wall_s"] / by[(2, False)]["wall_s"], 3),
            "paper": paper_estimate(by[(1, False)]["work"]), "work": by[(1, False)]["work"]}


def markdown(report: dict) -> str:
    lines = results.header(
        report, "Scale-out: one vs two Triton replicas (one core each), single process vs the Ray job",
        f"{report['entities']} best-covered held-out movies ({report['reviews']} reviews), cold, a fresh redis-server "
        "per system; fresh tritonservers per system (response cache off), replica i pinned to core i; a local Ray "
        "of 2 CPUs started once;")
    lines += ["| system | replicas | wall time s | entities per minute | failed |", "|---|---:|---:|---:|---:|"]
    lines += [f"| {r['system']} | {r['replicas']} | {r['wall_s']:.1f} | {r['entities_per_minute']:.2f} | {r['failed']} |"
              for r in report["rows"]]
    w, p = report["work"], report["paper"]
    lines += ["", f"Ray's overhead over the single-process path on one replica: {report['ray_overhead']:+.1%} of the "
              f"wall time. Two replicas instead of one: {report['scale_out_ray']:.2f}x through Ray, "
              f"{report['scale_out_single']:.2f}x in one process (ideal 2x: each replica has a core of its own, "
              "but the clients, Redis and Ray share them).", "",
              "## On paper: 1,000,000 entities of 35 reviews", "",
              f"Measured per entity here: {w['calls']} generator calls, {w['prompt_tokens']:.0f} prompt and "
              f"{w['output_tokens']:.0f} output tokens (the naming call); the encoders' work is small beside it. "
              f"Assumed for one GPU replica (the 7B generator on TensorRT-LLM with in-flight batching, an L4-class "
              f"GPU; not measured, there is no GPU here): {p['gpu_decode_tokens_per_s']} output tokens/s aggregate "
              f"and {p['gpu_prefill_tokens_per_s']} prompt tokens/s. Then one entity costs "
              f"{p['seconds_per_entity_per_replica'] * 1000:.0f} ms of a replica, a million "
              f"{p['replica_hours']:.0f} replica-hours: {p['replicas_for_8_hours']:.0f} replicas finish in a "
              "nightly 8-hour window, if the Ray actors keep every replica's batch full (about 32 entities in "
              "flight per replica) and Redis (a cluster) holds about 100 keys per entity (1,964 for the 20 movies of "
              "perf/results/analysis.md).", ""]
    return "\n".join(lines)


def plot(report: dict, path) -> None:
    results.bar_chart(path, "Entities per minute, cold", [(
        "entities per minute", {r["system"]: r["entities_per_minute"] for r in report["rows"]})])


def arguments(parser) -> None:
    parser.add_argument("--entities", type=int, default=20, help="movies, best-covered first (default 20; --quick 2)")
    parser.add_argument("--reviews-per-entity", type=int, default=35, help="reviews per movie, at most (default 35)")


if __name__ == "__main__":
    results.main("scale", measure, markdown, plot, arguments)
