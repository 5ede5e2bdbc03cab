"""The cache on a real Redis Cluster of three masters (Debian's redis-server in cluster mode): a rerun
served whole from the cluster, one slot per entity, a dead node survived, a failover (a replica
promoted) that loses no cached result."""
import logging
from collections import defaultdict

import pytest
import redis

from reviewlens.client.analysis import Entity
from reviewlens.client.cache import content_hash
from reviewlens.client.settings import Settings
from reviewlens.local.redis_server import RedisClusterServer
from reviewlens.local.sample_data import best_covered_movies
from reviewlens.local.tritonserver import free_ports

from test_client import analyse, assert_rerun_is_served_whole_from_the_cache


@pytest.fixture(scope="module")
def entities() -> list[Entity]:
    """Three held-out movies, four real reviews each."""
    return [Entity(m, texts[:4]) for m, texts in best_covered_movies(3).items()]


def keys_by_node(cluster: RedisClusterServer) -> dict[int, list[bytes]]:
    found = {}
    for port in cluster.ports:
        node = redis.Redis(port=port)
        found[port] = list(node.scan_iter(count=1000))
        node.close()
    return found


def test_a_rerun_is_served_whole_from_the_cluster_without_inference(triton, redis_cluster, entities, grpc):
    assert_rerun_is_served_whole_from_the_cache(Settings(urls=(triton.grpc_url,), redis_url=redis_cluster.url), entities, grpc)


def test_the_keys_of_one_entity_share_a_slot_and_entities_spread_over_the_masters(triton, redis_cluster, entities):
    cluster = redis_cluster
    analyse(Settings(urls=(triton.grpc_url,), redis_url=cluster.url), entities)
    nodes_of_tag, slots_of_tag = defaultdict(set), defaultdict(set)
    probe = redis.Redis(port=cluster.ports[0])
    for port, keys in keys_by_node(cluster).items():
        for key in keys:
            tag = key.split(b"{", 1)[1].split(b"}", 1)[0]
            nodes_of_tag[tag].add(port)
            slots_of_tag[tag].add(probe.cluster("keyslot", key))
    probe.close()
    assert len(slots_of_tag) == len(entities)   # one hash tag per entity
    assert all(len(slots) == 1 for slots in slots_of_tag.values())
    assert len({port for ports in nodes_of_tag.values() for port in ports}) >= 2


def test_a_master_stopped_mid_run_the_run_completes_uncached_with_one_warning(triton, redis_cluster, entities, caplog):
    cluster = redis_cluster
    settings = Settings(urls=(triton.grpc_url,), redis_url=cluster.url, redis_retry_s=600.0)
    with caplog.at_level(logging.WARNING, logger="reviewlens.client"):
        results = analyse(settings, entities[:2], on_done=lambda _: cluster.nodes[1].stop())
    assert len(results) == 2 and all(r.aspects for r in results)
    assert sum("unreachable" in m for m in caplog.messages) == 1


def test_a_malformed_cluster_url_is_refused_by_name():
    with pytest.raises(ValueError, match="redis_url"):
        Settings(redis_url="redis+cluster://127.0.0.1").validate()


def test_a_master_failover_mid_run_loses_no_cached_result(triton, entities, caplog):
    """Three masters with a replica each; the master holding the first finished entity's result
    stops right after it was written, its replica takes over, and a rerun finds that result."""
    ports = free_ports(12)
    replicas = list(zip(ports[6:9], ports[9:12]))
    with RedisClusterServer(ports[:3], ports[3:6], replicas) as cluster:
        settings = Settings(urls=(triton.grpc_url,), redis_url=cluster.url, redis_retry_s=1.0)
        first_done: list[str] = []
        stopped: list[int] = []

        def stop_its_master(result) -> None:
            if not first_done:
                first_done.append(result.entity_id)
                stopped.append(cluster.master_of("rl:{" + content_hash(result.entity_id)[:16] + "}:entity"))
                cluster.nodes[stopped[0]].stop()   # SIGTERM: a clean stop, the replica is in sync
        with caplog.at_level(logging.WARNING, logger="reviewlens.client"):
            results = analyse(settings, entities, on_done=stop_its_master)
        assert len(results) == len(entities) and all(r.aspects for r in results)
        cluster.wait_for_failover(stopped[0])
        again = {r.entity_id: r for r in analyse(settings, entities)}
    assert again[first_done[0]].metrics == {"from_cache": True}
    assert again[first_done[0]].to_json() | {"metrics": {}} == \
        next(r for r in results if r.entity_id == first_done[0]).to_json() | {"metrics": {}}
