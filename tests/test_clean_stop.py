"""Stopping tritonserver as Ctrl-C does (SIGINT, TritonServer.stop()) unloads every model and
exits with code 0 within the exit timeout, whatever the generator has served.

Each test starts a server of its own (the session's server is shared). The exit code says
whether every model unloaded; the server's log names the models (after exit there is no
endpoint left to ask).
"""
import threading
import time

import pytest

from reviewlens.client.sync import SyncClient
from reviewlens.local.tritonserver import EXIT_TIMEOUT_S, TritonServer, free_port

@pytest.fixture
def server(tmp_path):
    own = TritonServer(grpc_port=free_port(), http_port=free_port(), metrics_port=free_port(),
                       log_path=tmp_path / "tritonserver.log")
    with own:
        yield own


def stop_and_check(server: TritonServer) -> None:
    """Stop the server; it exits with code 0, within the exit timeout, every model unloaded."""
    started = time.monotonic()
    exit_code = server.stop()
    took = time.monotonic() - started
    log = server.log_path.read_text(errors="replace")
    models = sorted(config.parent.name for config in server.model_repository.glob("*/config.pbtxt"))
    still_loaded = [name for name in models if f"successfully unloaded '{name}'" not in log]
    assert "Exit timeout expired" not in log
    assert still_loaded == []
    assert exit_code == 0
    assert took < EXIT_TIMEOUT_S


def prompt(client: SyncClient) -> str:
    return client.chat_prompt([{"role": "user", "content": "Write a long story about a cat."}])


def test_stops_cleanly_after_streamed_requests(server):
    with SyncClient(server.grpc_url) as client:
        text = prompt(client)
        threads = [threading.Thread(target=lambda: [client.generate(text, 4, stream=True) for _ in range(6)])
                   for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    stop_and_check(server)


def test_stops_cleanly_after_a_cancelled_stream(server):
    with SyncClient(server.grpc_url) as client:
        for n, _ in enumerate(client.stream(prompt(client), 500), start=1):
            if n == 4:
                break  # closing the stream cancels the generation on the server
        time.sleep(1)  # the decode loop notices the cancellation between two steps
    stop_and_check(server)


def test_stops_cleanly_with_generations_in_flight(server):
    client = SyncClient(server.grpc_url)
    text = prompt(client)
    outcomes = []

    def generate() -> None:
        try:
            client.generate(text, 300, stream=True)
            outcomes.append("answered")
        except Exception as error:  # the stop ends it: refused or cancelled, never lost
            outcomes.append(type(error).__name__)

    threads = [threading.Thread(target=generate) for _ in range(6)]  # 4 admitted, 2 waiting for a slot
    for thread in threads:
        thread.start()
    time.sleep(4)
    try:
        stop_and_check(server)
    finally:
        for thread in threads:
            thread.join()
        client.close()
    assert len(outcomes) == len(threads)
