"""Pre-computation on Ray (client/ray_job.py): a real local Ray cluster, two real tritonserver
replicas and a real three-master Redis Cluster. The Ray job decides what the single-machine path
decides; a replica killed mid-job or a Ray worker killed mid-job loses and duplicates nothing."""
import os
import signal
import subprocess
import sys

import psutil
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import ray
import redis

from reviewlens.client.analysis import Entity
from reviewlens.client.ray_job import precompute_on_ray, write_results
from reviewlens.client.settings import Settings
from reviewlens.client.sync import SyncAnalyzer
from reviewlens.local.paths import BUILD_DIR
from reviewlens.local.redis_server import RedisClusterServer
from reviewlens.local.sample_data import best_covered_movies
from reviewlens.local.tritonserver import TritonServer, free_port

# Ray's local cluster and a second tritonserver take about 25 s to start; a job of four entities 25-90 s.
pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def replica():
    """A second tritonserver on the same model repository: the fleet is it and the session's."""
    server = TritonServer(grpc_port=free_port(), http_port=free_port(), metrics_port=free_port(),
                          log_path=BUILD_DIR / "triton" / "ray-replica-server.log")
    with server:
        yield server


@pytest.fixture
def fleet(triton, replica) -> tuple[str, str]:
    """The two replicas' URLs, the second started again if a test killed it."""
    if replica.process.poll() is not None:
        replica.start()
    return triton.grpc_url, replica.grpc_url


@pytest.fixture(scope="module")
def ray_cluster():
    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=256 * 1024 ** 2)
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


@pytest.fixture(scope="module")
def entities() -> list[Entity]:
    """Four held-out movies, four real reviews each."""
    return [Entity(m, texts[:4], m.replace("_", " ").title()) for m, texts in best_covered_movies(4).items()]


def ray_settings(fleet, cluster: RedisClusterServer) -> Settings:
    # One entity per actor at a time: with four entities, both actors are busy whenever one reports.
    return Settings(urls=fleet, redis_url=cluster.url, concurrency=1)


def decided(result: dict) -> dict:
    """What the encoders and the clustering decide: everything but the generated names and summary
    (llama.cpp's numerics depend on the batch a generation shares) and the run's metrics."""
    def unnamed(item: dict, *generated: str) -> dict:
        return {k: v for k, v in item.items() if k not in generated}
    return {**unnamed(result, "summary", "metrics"),
            "aspects": [unnamed(a, "name", "named_by") for a in result["aspects"]],
            "strengths": [unnamed(c, "aspect", "text") for c in result["strengths"]],
            "weaknesses": [unnamed(c, "aspect", "text") for c in result["weaknesses"]]}


def cached_keys(cluster: RedisClusterServer, kind: str) -> list[bytes]:
    """Every key of one kind (entity, text, llm) on the cluster's masters."""
    found = []
    for port in cluster.ports:
        node = redis.Redis(port=port)
        found += [key for key in node.scan_iter(count=1000) if f":{kind}:".encode() in key]
        node.close()
    return found


def analysis_workers() -> set[int]:
    """Process ids of the job's actors (Ray titles an actor's process after its class)."""
    return {p.pid for p in psutil.process_iter(["cmdline"]) if "ray::AnalysisWorker" in " ".join(p.info["cmdline"] or [])}


def test_the_ray_job_decides_what_the_single_machine_path_decides(ray_cluster, fleet, redis_cluster, entities):
    with SyncAnalyzer(Settings(urls=fleet[:1], redis_url=None)) as analyzer:
        single = analyzer.analyze_many(entities)
    run = precompute_on_ray(entities, ray_settings(fleet, redis_cluster))
    assert run.failed == {} and run.recomputed == []
    assert [r.entity_id for r in run.results] == [e.entity_id for e in entities]
    assert [decided(r.to_json()) for r in run.results] == [decided(r.to_json()) for r in single]
    assert sum(len(r.aspects) for r in single) >= 2  # there were aspects to agree on
    assert all(r.metrics["from_cache"] is False for r in run.results)  # the actors analysed them
    assert len(cached_keys(redis_cluster, "entity")) == len(entities)


@pytest.mark.slow  # about 90 s: an actor restarted or a replica lost, and their entities retried
def test_a_ray_worker_killed_mid_job_loses_and_duplicates_no_entity(ray_cluster, fleet, redis_cluster, entities,
                                                                     tmp_path):
    before: set[int] = set()
    restarted: set[int] = set()

    def kill_a_busy_worker(entity_id: str, error: str | None) -> None:
        workers = analysis_workers()
        if not before:
            assert len(workers) == 2  # both with an entity in flight: one each, two of four still to go
            before.update(workers)
            os.kill(min(workers), signal.SIGKILL)
        else:
            restarted.update(workers - before)
    run = precompute_on_ray(entities, ray_settings(fleet, redis_cluster), on_entity=kill_a_busy_worker)
    assert run.failed == {} and run.recomputed == []
    assert not psutil.pid_exists(min(before)) and restarted  # Ray started the killed actor again
    write_results(run.results, tmp_path / "results.parquet")
    rows = pq.read_table(tmp_path / "results.parquet").to_pylist()
    assert sorted(row["entity_id"] for row in rows) == sorted(e.entity_id for e in entities)
    assert len(cached_keys(redis_cluster, "entity")) == len(entities)


def test_the_cli_runs_the_job_from_parquet_on_a_joined_cluster(ray_cluster, fleet, redis_cluster, entities, tmp_path):
    rows = [{"entity_id": e.entity_id, "entity_name": e.name, "text": t} for e in entities[:2] for t in e.reviews]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "reviews.parquet")
    urls = [arg for url in fleet for arg in ("--url", url)]
    done = subprocess.run(
        [sys.executable, "-m", "reviewlens.client.cli", "precompute", str(tmp_path / "reviews.parquet"), *urls,
         "--redis", redis_cluster.url, "--ray", ray_cluster, "--out", str(tmp_path / "results.parquet"),
         "--run-dir", str(tmp_path / "runs")], capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "precomputed 2 entities on Ray: 2 analysed, 0 already cached, 0 failed" in done.stdout
    assert "precompute: 2/2 entities (0 failed)" in done.stderr
    written = pq.read_table(tmp_path / "results.parquet").to_pylist()
    assert [row["entity_id"] for row in written] == [e.entity_id for e in entities[:2]]


def test_an_entity_that_keeps_failing_is_reported_by_id_and_leaves_no_result_in_the_cache(
        ray_cluster, fleet, redis_cluster, entities):
    # 3 s is enough for the metadata and the encoders, not for a naming call on this CPU: every
    # attempt fails in the generator after the entity's texts were classified and embedded.
    settings = Settings(urls=fleet, redis_url=redis_cluster.url, concurrency=1, deadline_s=3.0)
    run = precompute_on_ray(entities[:2], settings)
    assert sorted(run.failed) == sorted(e.entity_id for e in entities[:2]) and run.results == []
    assert all("DEADLINE" in error.upper() for error in run.failed.values()), run.failed
    assert cached_keys(redis_cluster, "entity") == []
    assert cached_keys(redis_cluster, "text")  # what was complete of them stays: each text's sentiment and embedding


@pytest.mark.slow  # about 90 s: an actor restarted or a replica lost, and their entities retried
def test_a_replica_killed_mid_job_the_job_completes_on_the_other(ray_cluster, fleet, redis_cluster, replica, entities):
    def kill_the_replica_after_the_first_entity(entity_id: str, error: str | None) -> None:
        if replica.process.poll() is None:
            os.killpg(replica.process.pid, signal.SIGKILL)
            replica.process.wait()
    run = precompute_on_ray(entities, ray_settings(fleet, redis_cluster),
                            on_entity=kill_the_replica_after_the_first_entity)
    assert replica.process.poll() is not None  # it was killed with three entities to go
    assert run.failed == {} and run.recomputed == []
    assert [r.entity_id for r in run.results] == [e.entity_id for e in entities]
    assert all(r.metrics["from_cache"] is False for r in run.results)
