"""Session fixtures: one real tritonserver on free loopback ports for the whole run."""
import pytest
import tritonclient.grpc as grpcclient

from reviewlens.build_engines.paths import BUILD_DIR, MODEL_REPOSITORY
from reviewlens.client.inference import ReviewModels
from reviewlens.ensemble.server import TritonServer, free_port

BUILT_FILES = ["classifier/1/model.onnx", "encoder/1/model.onnx", "sentiment_tokenizer/1/tokenizer.json",
               "embed_tokenizer/1/tokenizer.json", "sentiment_postprocess/1/labels.json", "generator/1/model.gguf"]


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
    client = ReviewModels(triton.grpc_url)
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
    import json
    with open(BUILD_DIR / "data" / "test.jsonl") as lines:
        texts = [json.loads(line)["text"] for line in lines]
    assert len(texts) >= 200
    return texts


@pytest.fixture(scope="session")
def redis_server():
    """A real redis-server on a free loopback port, in memory only."""
    from reviewlens.client.redis_server import RedisServer
    with RedisServer(free_port()) as server:
        yield server
