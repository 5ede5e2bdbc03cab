"""Bad input gets a clear error (or a documented truncation) and the server keeps answering."""
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from reviewlens.client.wire import text_input
from reviewlens.ensemble import interface as api

ENSEMBLES = [api.SENTIMENT.name, api.EMBED.name]


def infer_raw(grpc, array: np.ndarray, datatype: str = api.TEXT.datatype, model: str = api.SENTIMENT.name):
    tensor = grpcclient.InferInput(api.TEXT.name, list(array.shape), datatype)
    tensor.set_data_from_numpy(array)
    return grpc.infer(model, [tensor])


@pytest.fixture(autouse=True)
def server_still_answers(grpc, models):
    yield
    assert grpc.is_server_ready()
    assert all(grpc.is_model_ready(m) for m in ENSEMBLES)
    assert models.sentiment(["Still here and still great."])[0].label == "positive"


@pytest.mark.parametrize("model", ENSEMBLES)
# Blank, and also only zero-width and bidi control characters: nothing a classifier could read.
@pytest.mark.parametrize("text", ["", "   \n\t ", "\u200b\u200d\u2060\ufeff", "\u202e\u200f\u2066 \u2069"])
def test_empty_text_is_rejected_naming_the_row(grpc, model, text):
    with pytest.raises(InferenceServerException, match=r"TEXT\[1\] is empty"):
        grpc.infer(model, [text_input(["fine review", text])])


def test_invalid_utf8_is_rejected_naming_the_byte(grpc):
    with pytest.raises(InferenceServerException, match=r"TEXT\[0\] is not valid UTF-8: byte 0xff at offset 4"):
        infer_raw(grpc, np.array([[b"good\xff movie"]], dtype=object))


@pytest.mark.parametrize("model", ENSEMBLES)
def test_a_100k_character_text_is_truncated_and_flagged(grpc, model):
    text = "An enormous review that goes on and on. " * 2500
    assert len(text) == 100_000
    result = grpc.infer(model, [text_input([text, "short one"])])
    assert result.as_numpy(api.TRUNCATED.name).reshape(-1).tolist() == [True, False]


def test_a_text_over_the_byte_limit_is_rejected(grpc):
    with pytest.raises(InferenceServerException, match=r"TEXT\[0\] is 2,000,000 bytes; the limit is 1,000,000"):
        infer_raw(grpc, np.array([[b"a" * 2_000_000]], dtype=object))


def test_wrong_datatype_is_rejected(grpc):
    with pytest.raises(InferenceServerException, match="data-type is 'INT32', but model 'sentiment' expects 'BYTES'"):
        infer_raw(grpc, np.array([[1]], dtype=np.int32), datatype="INT32")


def test_wrong_shape_is_rejected(grpc):
    with pytest.raises(InferenceServerException, match="unexpected shape"):
        infer_raw(grpc, np.array([[b"one", b"two"]], dtype=object))


def test_a_bad_request_does_not_fail_its_neighbours(triton, grpc):
    """Requests batched with a bad one still get their answers."""
    from concurrent.futures import ThreadPoolExecutor

    def send(i):
        client = grpcclient.InferenceServerClient(triton.grpc_url)
        text = b"\xc3\x28 broken" if i % 4 == 0 else f"Review {i}: a lovely, moving and wonderful film.".encode()
        try:
            return infer_raw(client, np.array([[text]], dtype=object)).as_numpy(api.LABEL.name)[0][0]
        except InferenceServerException as err:
            return err
    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(send, range(32)))
    for i, result in enumerate(results):
        if i % 4 == 0:
            assert isinstance(result, InferenceServerException) and "not valid UTF-8" in str(result)
        else:
            assert result == b"positive"
