"""Pre-computation on a Ray cluster over a fleet of Triton servers: `reviewlens precompute --ray ADDRESS`.

    ray.init(address="auto")
    run = precompute_on_ray(read_reviews(Path("reviews.parquet")), Settings.from_env(urls=(...)))
    write_results(run.results, Path("results.parquet")); run.failed  # {entity_id: error}

The driver hands the entities to Ray actors, one per Triton URL. Each actor is one client session
(an Analyzer: a TritonPool over every URL, its own first, so a call that finds its server dead is
retried on the others; and a Redis cache, single or cluster as settings.redis_url says) and
analyses at most `settings.concurrency` entities at a time, so each server has about that many
entities in flight and the fleet no more than its size allows. An entity's analysis is the
Analyzer's own, and it writes the entity's whole result to Redis in one SET once the result is
complete: an entity that fails leaves no half-written result behind (what it may leave are the
per-text sentiments, embeddings and generator answers, each a complete value that a retry reuses).
Ray retries an entity whose actor died (the actor is restarted) or whose analysis failed on a
transient error (no server answered, a Triton error), up to RETRIES times; one still failing is
reported by id and left out of the results.

Strengths and weaknesses compare each entity with all the others, so they cannot be decided per
actor. The driver runs the single-machine path, Analyzer.analyze_many, over every entity that
succeeded: each comes whole from the cache the actors just filled (no inference), and the
comparison is the single-machine code's, so the results are the single-machine path's by
construction. An entity whose result is missing from the cache (Redis lost it, or was down while
its actor finished, or the workers run other code than the driver: the cache keys hash the prompts
and the aspect code, so a version skew misses) is analysed again there, on the driver, and listed
in `recomputed`: slower, still right.

Why sentiment and embeddings are not a Ray Data map_batches stage: the Analyzer already sends each
entity's reviews and sentences to the encoders in one batch per model, deduplicated (a
one-sentence review is sent once) and cached per text under that entity's hash tag. Splitting the
sentences out, mapping them over the cluster and grouping them back by entity would be a second
implementation of that path (segmentation, deduplication, cache keys) to keep equal to the first;
the entity is the unit of work, and the encoders' batches stay per entity.

The driver reads the whole input and keeps every result until the comparison: an input must fit
in its memory, as it does for the single-machine path.
"""
import asyncio
import itertools
import json
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import grpc
import pyarrow as pa
import pyarrow.parquet as pq
import ray
from tritonclient.utils import InferenceServerException

from reviewlens.client.analysis import Analyzer, Entity, EntityAnalysis
from reviewlens.client.reviews_file import InputError, entities_of, read_entities
from reviewlens.client.settings import Settings
from reviewlens.client.sync import SyncAnalyzer
from reviewlens.client.transport import ServersUnavailable

# Tries after the first, per entity and per actor restart: enough to ride through a server or a
# worker lost mid-job, few enough that an entity that always fails is reported within minutes.
RETRIES = 3
# Failures worth a second try: no server answered within the pool's retry window, or one failed
# the call (a deadline, a stream cut). A bad input is not retried: the driver validates it first.
TRANSIENT = [ServersUnavailable, InferenceServerException, grpc.RpcError]
PARQUET_COLUMNS = ("entity_id", "text", "entity_name")


@ray.remote(num_cpus=0, max_restarts=RETRIES, max_task_retries=RETRIES)
class AnalysisWorker:
    """One client session in a Ray actor: entities in, each one's own metrics out (its result is in
    Redis). num_cpus=0: it waits on Triton and Redis; the servers do the computing."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self._analyzer: Analyzer | None = None
        self._opening = asyncio.Lock()

    async def _session(self) -> Analyzer:
        # Opened on the actor's event loop, where its gRPC channels must live, by the first call.
        async with self._opening:
            if self._analyzer is None:
                analyzer = Analyzer(self.settings)
                try:
                    await analyzer.__aenter__()
                except BaseException:
                    await analyzer.__aexit__()
                    raise
                self._analyzer = analyzer
        return self._analyzer

    @ray.method(retry_exceptions=TRANSIENT)
    async def analyse(self, entity: Entity) -> dict:
        """Analyse one entity (its result goes to Redis) and return its metrics."""
        analyzer = await self._session()
        return (await analyzer.analyze_many([entity]))[0].metrics


@dataclass
class RayRun:
    results: list[EntityAnalysis]                            # entities that succeeded, in input order
    failed: dict[str, str] = field(default_factory=dict)     # entity_id -> the last error, one line
    recomputed: list[str] = field(default_factory=list)      # analysed again on the driver (not in the cache)


def precompute_on_ray(entities: list[Entity], settings: Settings,
                      on_entity: Callable[[str, str | None], None] | None = None) -> RayRun:
    """Analyse the entities on the connected Ray cluster (ray.init first) and compare them.

    on_entity(entity_id, error) is called on the driver as each entity's actor call ends, error None
    when it succeeded. The results' metrics are those of the actor's analysis."""
    settings = settings.validate()
    if settings.redis_url is None:
        raise ValueError("precompute on Ray needs the Redis cache (redis_url): "
                         "the actors hand their results over through it")
    for entity in entities:
        entity.validate()
    if len({e.entity_id for e in entities}) != len(entities):
        raise ValueError("entity ids repeat; give each entity once with all its reviews")
    urls = settings.urls
    workers = [AnalysisWorker.options(max_concurrency=settings.concurrency).remote(
        replace(settings, urls=urls[i:] + urls[:i])) for i in range(len(urls))]
    metrics, failed = {}, {}
    in_flight: dict[ray.ObjectRef, tuple[str, int]] = {}
    busy = [0] * len(workers)

    def submit(entity: Entity) -> None:
        worker = min(range(len(workers)), key=busy.__getitem__)
        in_flight[workers[worker].analyse.remote(entity)] = (entity.entity_id, worker)
        busy[worker] += 1
    waiting = iter(entities)
    # Never more calls than the actors run at once: nothing queues inside an actor, so a restarted
    # one has only its own in-flight entities to retry, and the driver holds no backlog of refs.
    for entity in itertools.islice(waiting, settings.concurrency * len(workers)):
        submit(entity)
    try:
        while in_flight:
            (ref,), _ = ray.wait(list(in_flight), num_returns=1)
            entity_id, worker = in_flight.pop(ref)
            busy[worker] -= 1
            try:
                metrics[entity_id] = ray.get(ref)
            except ray.exceptions.RayError as error:
                failed[entity_id] = _one_line(error)
            if (entity := next(waiting, None)) is not None:
                submit(entity)  # before on_entity: the actor's slot is not left idle while the caller reports
            if on_entity:
                on_entity(entity_id, failed.get(entity_id))
    finally:
        # Every entity's writes were awaited before its call returned: nothing is pending in them.
        for worker in workers:
            ray.kill(worker)
    succeeded = [e for e in entities if e.entity_id in metrics]
    if not succeeded:
        return RayRun([], failed)
    with SyncAnalyzer(settings) as analyzer:
        results = analyzer.analyze_many(succeeded)
    recomputed = [r.entity_id for r in results if not r.metrics.get("from_cache")]
    for result in results:
        if result.metrics.get("from_cache"):
            result.metrics = metrics[result.entity_id]
    return RayRun(results, failed, recomputed)


def _one_line(error: ray.exceptions.RayError) -> str:
    """The underlying error's type and message (Ray's own wrapping adds the remote traceback)."""
    cause = error.cause if isinstance(error, ray.exceptions.RayTaskError) and error.cause is not None else error
    return " ".join(f"{type(cause).__name__}: {cause}".split())[:300]


def read_reviews(path: Path) -> list[Entity]:
    """Entities from a reviews file: Parquet (a .parquet name) or JSON lines (client/reviews_file.py),
    each entity with all its reviews in order of first appearance."""
    if Path(path).suffix != ".parquet":
        return read_entities(path)
    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowException) as error:
        raise InputError(f"{path}: cannot read as Parquet ({error})") from None
    missing = [c for c in PARQUET_COLUMNS[:2] if c not in table.column_names]
    if missing:
        raise InputError(f"{path}: missing column {missing[0]!r} (expected entity_id, text and optionally entity_name)")
    columns = [c for c in PARQUET_COLUMNS if c in table.column_names]
    for column in columns:
        kind = table.schema.field(column).type
        if not (pa.types.is_string(kind) or pa.types.is_large_string(kind)):
            raise InputError(f"{path}: column {column!r} must hold strings, not {kind}")
    # A null cell is a field not given, as an absent key is in JSON lines.
    rows = ((f"{path}: row {row}", {key: value for key, value in record.items() if value is not None})
            for row, record in enumerate(table.select(columns).to_pylist(), start=1))
    entities = entities_of(rows, f"{path}: no reviews (expected rows with entity_id and text)")
    for entity in entities:
        try:
            entity.validate()
        except ValueError as error:
            raise InputError(f"{path}: {error}") from None
    return entities


def write_results(results: list[EntityAnalysis], path: Path) -> None:
    """One Parquet row per entity: entity_id and the result's JSON (client/result.schema.json)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    table = pa.table({"entity_id": pa.array([r.entity_id for r in results], pa.string()),
                      "result": pa.array([json.dumps(r.to_json(), ensure_ascii=False) for r in results], pa.string())})
    pq.write_table(table, path)

