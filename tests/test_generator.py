"""The `generator` model on the real tritonserver with the real GGUF: streaming, guidance, concurrency,
cancellation, priority and bad input."""
import json
import queue
import time
from concurrent.futures import ThreadPoolExecutor

import jsonschema
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from reviewlens.client.sync import SyncClient
from reviewlens.client.wire import GenerationParams, generator_inputs
from reviewlens.ensemble import interface as api
from reviewlens.local import triton_metrics

SUMMARY_SCHEMA = {
    "type": "object",
    "properties": {
        "positive": {"type": "array", "items": {"type": "string", "maxLength": 60}, "maxItems": 3},
        "negative": {"type": "array", "items": {"type": "string", "maxLength": 60}, "maxItems": 3},
        "score": {"type": "integer", "minimum": 1, "maximum": 5},
    },
    "required": ["positive", "negative", "score"],
    "additionalProperties": False,
}


@pytest.fixture(scope="module")
def generator(triton):
    client = SyncClient(triton.grpc_url)
    yield client
    client.close()


@pytest.fixture(scope="module")
def raw_grpc(triton):
    """A plain gRPC client, for requests the project's client would never build."""
    client = grpcclient.InferenceServerClient(triton.grpc_url)
    yield client
    client.close()


def ask(generator, text: str, system: str | None = None) -> str:
    messages = [{"role": "system", "content": system}] if system else []
    return generator.chat_prompt([*messages, {"role": "user", "content": text}])


def test_streamed_chunks_concatenate_to_the_non_streamed_text(generator):
    prompt = ask(generator, "Describe a rainy afternoon in a small town in three sentences.")
    params = GenerationParams(temperature=0.8, seed=1234)
    # llama.cpp's numbers depend on how the prompt was split into batches, so both measured
    # requests take the same path: the prompt is in the prefix cache before either of them runs.
    generator.generate(prompt, 1, params)
    streamed = generator.generate(prompt, 48, params, stream=True)
    whole = generator.generate(prompt, 48, params, stream=False)
    assert len(streamed.chunks) > 5
    assert "".join(streamed.chunks) == whole.text
    assert len(whole.chunks) == 1
    assert streamed.output_tokens == whole.output_tokens > 5


def test_korean_streams_as_whole_characters(generator):
    chunks = generator.generate(ask(generator, "서울의 가을 날씨를 한국어로 두 문장으로 설명해 주세요."), 48, stream=True).chunks
    text = "".join(chunks)
    assert len(chunks) > 5
    assert "\ufffd" not in text  # no character was cut between two chunks
    assert sum("\uac00" <= c <= "\ud7a3" for c in text) >= 10  # Hangul syllables
    for chunk in chunks:
        assert chunk.encode("utf-8").decode("utf-8") == chunk


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
def test_json_schema_guided_output_validates(generator, stream):
    prompt = ask(generator, "Reviews of a movie: 'Great acting and a moving score.' 'The plot drags in the middle.' "
                            "Summarise the positive and negative aspects and give a score from 1 to 5 as JSON.")
    result = generator.generate(prompt, 256, GenerationParams(json_schema=SUMMARY_SCHEMA), stream=stream)
    jsonschema.validate(json.loads(result.text), SUMMARY_SCHEMA)


def test_json_guide_without_schema_gives_json(generator, raw_grpc):
    prompt = ask(generator, "Give the title and year of a famous film as JSON.")
    inputs = generator_inputs(prompt, 96, GenerationParams(), stream=False)
    text = _collect(raw_grpc, [*inputs, _tensor(api.GUIDE_TYPE, np.array([[b"json"]], dtype=object))])
    assert isinstance(json.loads(text), (dict, list))


def test_stop_words_end_the_output_and_are_not_part_of_it(generator):
    prompt = ask(generator, "Count from 1 to 20, separated by commas and spaces. Only the numbers.")
    full = generator.generate(prompt, 80).text
    stopped = generator.generate(prompt, 80, GenerationParams(stop_words=["7"])).text
    assert "7" in full and "7" not in stopped
    assert full.startswith(stopped) and len(stopped) < len(full)


def test_two_concurrent_requests_make_progress_together(triton):
    arrivals: dict[int, list[float]] = {0: [], 1: []}

    def run(i: int) -> int:
        time.sleep(0.2 * i)
        client = SyncClient(triton.grpc_url)
        prompt = client.chat_prompt([{"role": "user", "content": f"Count from {i * 100} to {i * 100 + 300}, "
                                                                 "separated by spaces."}])
        result = client.generate(prompt, 40, stream=True, on_text=lambda _: arrivals[i].append(time.monotonic()))
        client.close()
        return result.output_tokens

    with ThreadPoolExecutor(2) as pool:
        assert list(pool.map(run, (0, 1), timeout=300)) == [40, 40]
    # Continuous batching: the second request's text starts arriving before the first one is done.
    assert arrivals[1][0] < arrivals[0][-1]


def test_cancelled_request_stops_generating(generator, triton):
    prompt = ask(generator, "Count from 1 to 2000, one number per line.")
    before = triton_metrics.scrape(triton.metrics_url)
    received = 0
    for _ in generator.stream(prompt, 2000):
        received += 1
        if received == 5:
            break  # closing the stream cancels the request on the server
    deadline = time.monotonic() + 60
    while True:
        figures = triton_metrics.delta(before, triton_metrics.scrape(triton.metrics_url))
        cancelled = figures.value(api.GENERATOR_REQUESTS.name, finish_reason="cancelled")
        if cancelled or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert cancelled == 1, "the server never reported the cancellation"
    assert figures.value(api.GENERATOR_OUTPUT_TOKENS.name, finish_reason="cancelled") < 200
    assert generator.generate(ask(generator, "Say hi."), 8).output_tokens > 0  # the slot is free again


def test_prefill_and_output_tokens_of_each_request_show_up_in_the_metrics(generator, triton):
    # In no prefix slot yet: the first request computes its whole prompt, the second reuses the system message.
    system = "Metrics check. " + "You summarise movie reviews in one short sentence and quote none of them. " * 8
    before = triton_metrics.scrape(triton.metrics_url)
    first = generator.generate(ask(generator, "Great film.", system), 4)
    between = triton_metrics.scrape(triton.metrics_url)
    second = generator.generate(ask(generator, "Dull plot.", system), 4)
    one, two = triton_metrics.delta(before, between), triton_metrics.delta(between, triton_metrics.scrape(triton.metrics_url))
    prefill = api.GENERATOR_PREFILL_TOKENS.name
    assert one.value(prefill, source=api.PREFILL_COMPUTED) == first.prompt_tokens
    assert one.value(prefill, source=api.PREFILL_REUSED) == 0
    assert two.value(prefill, source=api.PREFILL_COMPUTED) < 20  # about the user turn
    assert two.value(prefill) == second.prompt_tokens
    for figures, result in ((one, first), (two, second)):
        assert figures.value(api.GENERATOR_REQUESTS.name) == 1
        assert figures.value(api.GENERATOR_OUTPUT_TOKENS.name) == result.output_tokens
        assert figures.value(f"{api.GENERATOR_TIME_TO_FIRST_TOKEN_SECONDS.name}_count") == 1


def test_higher_priority_request_starts_first_when_all_slots_are_busy(triton):
    started: dict[str, float] = {}

    def run(name: str, text: str, max_tokens: int, priority: int) -> int:
        client = SyncClient(triton.grpc_url)
        prompt = client.chat_prompt([{"role": "user", "content": text}])
        result = client.generate(prompt, max_tokens, stream=True, priority=priority,
                                 on_text=lambda _: started.setdefault(name, time.monotonic()))
        client.close()
        return result.output_tokens

    with ThreadPoolExecutor(6) as pool:
        busy = [pool.submit(run, f"busy{i}", f"Count from {i * 100} to {i * 100 + 300}, separated by spaces.", 40, 2)
                for i in range(4)]
        deadline = time.monotonic() + 120
        while len(started) < 4 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(started) == 4, "the four sequence slots did not all start"
        normal = pool.submit(run, "normal", "Say one word.", 4, 2)
        time.sleep(0.3)
        urgent = pool.submit(run, "urgent", "Say one word.", 4, 1)
        time.sleep(0.3)  # both wait in Triton's queue before a slot frees up
        assert "normal" not in started and "urgent" not in started
        assert [f.result(timeout=300) for f in busy] == [40] * 4
        assert normal.result(timeout=300) > 0 and urgent.result(timeout=300) > 0
    assert started["urgent"] < started["normal"]


def _collect(raw_grpc: grpcclient.InferenceServerClient, inputs) -> str:
    """Send raw input tensors over a gRPC stream and return the text (raises the server's error)."""
    results = queue.Queue()
    raw_grpc.start_stream(callback=lambda result, error: results.put((result, error)))
    try:
        raw_grpc.async_stream_infer(api.GENERATOR.name, inputs)
        result, error = results.get(timeout=300)
        if error is not None:
            raise error
        return result.as_numpy(api.TEXT_OUTPUT.name).reshape(-1)[0].decode()
    finally:
        raw_grpc.stop_stream()


def _tensor(spec: api.Tensor, array, datatype=None):
    """A tensor of exactly this array and datatype (default the spec's), right or wrong."""
    tensor = grpcclient.InferInput(spec.name, list(array.shape), datatype or spec.datatype)
    tensor.set_data_from_numpy(array)
    return tensor


BAD_REQUESTS = {
    "empty prompt": (lambda p: [_tensor(api.TEXT_INPUT, np.array([[b"  "]], dtype=object)),
                                _tensor(api.MAX_TOKENS, np.array([[8]], dtype=np.int32))],
                     "text_input[0] is empty"),
    "max_tokens zero": (lambda p: generator_inputs(p, 0, GenerationParams(), False), "max_tokens must be at least 1"),
    "max_tokens negative": (lambda p: generator_inputs(p, -3, GenerationParams(), False), "max_tokens must be at least 1"),
    "max_tokens beyond the context": (lambda p: generator_inputs(p, 100_000, GenerationParams(), False),
                                      "exceeds the context"),
    "prompt longer than the context": (lambda p: generator_inputs("word " * 9000, 8, GenerationParams(), False),
                                       "the context holds"),
    "invalid UTF-8": (lambda p: [_tensor(api.TEXT_INPUT, np.array([[b"caf\xe9 au lait"]], dtype=object)),
                                 _tensor(api.MAX_TOKENS, np.array([[8]], dtype=np.int32))],
                      "not valid UTF-8: byte 0xe9 at offset 3"),
    "two prompts in one request": (lambda p: [_tensor(api.TEXT_INPUT, np.array([[b"a", b"b"]], dtype=object)),
                                              _tensor(api.MAX_TOKENS, np.array([[8]], dtype=np.int32))],
                                   "one prompt per request"),
    "schema that is not JSON": (lambda p: [*generator_inputs(p, 8, GenerationParams(), False),
                                           _tensor(api.GUIDE_TYPE, np.array([[b"json_schema"]], dtype=object)),
                                           _tensor(api.GUIDE, np.array([[b"{not json"]], dtype=object))],
                                "guided_decoding_guide is not JSON"),
    "invalid schema": (lambda p: generator_inputs(p, 8, GenerationParams(json_schema={"type": "nonsense"}), False),
                       "not a valid JSON schema"),
    "unsupported guide type": (lambda p: [*generator_inputs(p, 8, GenerationParams(), False),
                                          _tensor(api.GUIDE_TYPE, np.array([[b"regex"]], dtype=object)),
                                          _tensor(api.GUIDE, np.array([[b"[a-z]+"]], dtype=object))],
                               "'regex' is not supported"),
    "invalid grammar": (lambda p: generator_inputs(p, 8, GenerationParams(grammar="root ::= ("), False),
                        "could not be parsed as a grammar"),
    "temperature out of range": (lambda p: generator_inputs(p, 8, GenerationParams(temperature=-1.0), False),
                                 "temperature must be in [0, 10]"),
    "top_p out of range": (lambda p: generator_inputs(p, 8, GenerationParams(top_p=1.5), False), "top_p must be in (0, 1]"),
    "repetition_penalty out of range": (lambda p: generator_inputs(p, 8, GenerationParams(repetition_penalty=0.0), False),
                                       "repetition_penalty must be in (0, 10]"),
    "max_tokens of the wrong type": (lambda p: [_tensor(api.TEXT_INPUT, np.array([[p.encode()]], dtype=object)),
                                                _tensor(api.MAX_TOKENS, np.array([[8.0]], dtype=np.float32), "FP32")],
                                     "max_tokens"),
    "max_tokens missing": (lambda p: [_tensor(api.TEXT_INPUT, np.array([[p.encode()]], dtype=object))],
                           "max_tokens"),
}


@pytest.mark.parametrize("case", BAD_REQUESTS, ids=list(BAD_REQUESTS))
def test_bad_request_gets_a_clear_error(generator, raw_grpc, case):
    build, message = BAD_REQUESTS[case]
    with pytest.raises(InferenceServerException) as error:
        _collect(raw_grpc, build(ask(generator, "Say hi.")))
    assert message in str(error.value)


def test_server_keeps_serving_after_bad_requests(generator, raw_grpc):
    for build, _ in BAD_REQUESTS.values():
        with pytest.raises(InferenceServerException):
            _collect(raw_grpc, build(ask(generator, "Say hi.")))
    assert generator.generate(ask(generator, "Say hi."), 8).output_tokens > 0
