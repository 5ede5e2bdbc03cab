"""The client rides through a tritonserver restart: a real server killed mid-analysis and started
again on the same ports; the run completes and what finished before the kill stays cached."""
import os
import signal
import threading

import pytest

from reviewlens.client.analysis import Entity
from reviewlens.client.settings import Settings
from reviewlens.client.sync import SyncAnalyzer
from reviewlens.local.paths import BUILD_DIR
from reviewlens.local.sample_data import best_covered_movies
from reviewlens.local.tritonserver import TritonServer, free_port


def _server(ports: tuple[int, int, int]) -> TritonServer:
    return TritonServer(grpc_port=ports[0], http_port=ports[1], metrics_port=ports[2],
                        log_path=BUILD_DIR / "triton" / "restart-test-server.log")


@pytest.mark.slow
def test_a_run_completes_across_a_server_restart_and_a_rerun_is_served_from_the_cache(redis_server):
    ports = (free_port(), free_port(), free_port())
    entities = [Entity(movie, texts[:4], movie) for movie, texts in best_covered_movies(3).items()]
    first = _server(ports).start()
    second = _server(ports)
    settings = Settings(urls=(first.grpc_url,), redis_url=redis_server.url)
    done: list[str] = []

    def kill_and_restart_after_the_first_entity(result) -> None:
        done.append(result.entity_id)
        if len(done) == 1:
            os.killpg(first.process.pid, signal.SIGKILL)
            first.process.wait()
            threading.Thread(target=second.start, daemon=True).start()

    try:
        with SyncAnalyzer(settings) as analyzer:
            results = analyzer.analyze_many(entities, on_done=kill_and_restart_after_the_first_entity)
        assert [r.entity_id for r in results] == [e.entity_id for e in entities]
        assert second.process is not None and second.process.poll() is None  # the run finished on the new server
        with SyncAnalyzer(settings) as analyzer:
            again = analyzer.analyze_many(entities)
        assert all(r.metrics.get("from_cache") for r in again)
    finally:
        second.stop()
        first.stop()
