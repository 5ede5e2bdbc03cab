"""Session fixtures: one real tritonserver on free loopback ports for the whole run."""
import pytest
import tritonclient.grpc as grpcclient

from reviewlens.build_engines import artifacts
from reviewlens.local.paths import BUILD_DIR, MODEL_REPOSITORY
from reviewlens.client.sync import SyncClient
from reviewlens.local.redis_server import RedisClusterServer, RedisServer
from reviewlens.local.sample_data import held_out_reviews
from reviewlens.local.tritonserver import TritonServer, free_port, free_ports

BUILT_FILES = [artifact.served_path for artifact in artifacts.served("cpu")]


@pytest.fixture(scope="session")
def triton():
    missing = [f for f in BUILT_FILES if not (MODEL_REPOSITORY / f).exists()]
    if missing:
        pytest.fail(f"built models missing in model_repository/ ({', '.join(missing)}): run `make build`")
    server = TritonServer(grpc_port=free_port(), http_port=free_port(), metrics_port=free_port(),
                          log_path=BUILD_DIR / "triton" / "test-server.log")
    with server:
        yield server


@pytest.fixture(scope="session")
def models(triton):
    client = SyncClient(triton.grpc_url)
    yield client
    client.close()


@pytest.fixture
def grpc(triton):
    client = grpcclient.InferenceServerClient(triton.grpc_url)
    yield client
    client.close()


@pytest.fixture(scope="session")
def review_texts():
    """Real held-out review texts (Rotten Tomatoes), from the build's data split."""
    texts = [review["text"] for review in held_out_reviews()]
    assert len(texts) >= 200
    return texts


@pytest.fixture(scope="session")
def redis_server():
    """A real redis-server on a free loopback port, in memory only."""
    with RedisServer(free_port()) as server:
        yield server


@pytest.fixture
def redis_cluster():
    """A real Redis Cluster of three masters on free loopback ports (no replicas)."""
    ports = free_ports(6)
    with RedisClusterServer(ports[:3], ports[3:]) as cluster:
        yield cluster
