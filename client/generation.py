"""Calls to the `generator` model over a gRPC stream, and the chat formatting it expects.

The generator takes a complete prompt (as TensorRT-LLM's ensemble does), so chat formatting lives
here. The model config's `chat_template` parameter says which format the served model needs;
`GeneratorClient` reads it once and `chat_prompt` renders messages in it. Only ChatML is needed
today: the CPU model (Qwen2.5-Coder-1.5B-Instruct) and the GPU one (Qwen2.5-7B-Instruct) share it.
"""
import json
import queue
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np
import tritonclient.grpc as grpcclient

# Qwen2.5's template inserts this system message when the conversation has none.
QWEN_DEFAULT_SYSTEM = "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."


def chatml(messages: list[dict[str, str]], default_system: str = QWEN_DEFAULT_SYSTEM) -> str:
    """Render messages ({"role", "content"}) as ChatML, ending with the assistant's turn opened."""
    if not messages or messages[0]["role"] != "system":
        messages = [{"role": "system", "content": default_system}, *messages]
    turns = "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in messages)
    return turns + "<|im_start|>assistant\n"


CHAT_TEMPLATES: dict[str, Callable[[list[dict[str, str]]], str]] = {"chatml": chatml}


@dataclass
class Generated:
    """The outcome of one generation, with the timings a client sees."""

    text: str
    chunks: list[str]
    prompt_tokens: int
    output_tokens: int
    time_to_first_token_s: float
    total_s: float

    @property
    def time_per_output_token_s(self) -> float:
        """Mean time between output tokens after the first."""
        if self.output_tokens <= 1:
            return 0.0
        return (self.total_s - self.time_to_first_token_s) / (self.output_tokens - 1)

    def json(self):
        """The text parsed as JSON (for guided requests)."""
        return json.loads(self.text)


@dataclass
class GenerationParams:
    """Optional inputs of the generator; None leaves the model's default."""

    temperature: float | None = None
    top_k: int | None = None
    top_p: float | None = None
    seed: int | None = None
    repetition_penalty: float | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    stop_words: list[str] = field(default_factory=list)
    json_schema: dict | None = None
    grammar: str | None = None  # llama.cpp GBNF on the CPU profile


def chat_template_of(config: dict, model: str = "generator") -> Callable[[list[dict[str, str]]], str]:
    """The renderer of the chat format a generator's model config (JSON) names in `chat_template`."""
    template = config.get("parameters", {}).get("chat_template", {}).get("string_value", "chatml")
    if template not in CHAT_TEMPLATES:
        raise ValueError(f"{model} expects chat template {template!r}, which this client cannot render")
    return CHAT_TEMPLATES[template]


def response_fields(result) -> tuple[bool, tuple[str, int, int] | None]:
    """Whether a generator response is the last one, and its (text delta, prompt tokens, output
    tokens so far); None for the empty final response, which carries no text."""
    final = result.get_response().parameters["triton_final_response"].bool_param
    text = result.as_numpy("text_output")
    if text is None:
        return final, None
    return final, (text.reshape(-1)[0].decode("utf-8"), int(result.as_numpy("num_input_tokens").reshape(-1)[0]),
                   int(result.as_numpy("num_output_tokens").reshape(-1)[0]))


def _tensor(name: str, value, datatype: str) -> grpcclient.InferInput:
    array = np.array([value if isinstance(value, list) else [value]],
                     dtype={"BYTES": object, "INT32": np.int32, "FP32": np.float32,
                            "UINT64": np.uint64, "BOOL": bool}[datatype])
    tensor = grpcclient.InferInput(name, list(array.shape), datatype)
    tensor.set_data_from_numpy(array)
    return tensor


def request_inputs(prompt: str, max_tokens: int, params: GenerationParams, stream: bool) -> list[grpcclient.InferInput]:
    """The generator's input tensors for one prompt (shape [1, ...]: one request, one prompt)."""
    inputs = [_tensor("text_input", prompt.encode("utf-8"), "BYTES"),
              _tensor("max_tokens", max_tokens, "INT32"),
              _tensor("stream", stream, "BOOL")]
    if params.temperature is not None:
        inputs.append(_tensor("temperature", params.temperature, "FP32"))
    if params.top_k is not None:
        inputs.append(_tensor("top_k", params.top_k, "INT32"))
    if params.top_p is not None:
        inputs.append(_tensor("top_p", params.top_p, "FP32"))
    if params.seed is not None:
        inputs.append(_tensor("random_seed", params.seed, "UINT64"))
    for name in ("repetition_penalty", "presence_penalty", "frequency_penalty"):
        if getattr(params, name) is not None:
            inputs.append(_tensor(name, getattr(params, name), "FP32"))
    if params.stop_words:
        inputs.append(_tensor("stop_words", [w.encode("utf-8") for w in params.stop_words], "BYTES"))
    if params.json_schema is not None:
        inputs.append(_tensor("guided_decoding_guide_type", b"json_schema", "BYTES"))
        inputs.append(_tensor("guided_decoding_guide", json.dumps(params.json_schema).encode("utf-8"), "BYTES"))
    elif params.grammar is not None:
        inputs.append(_tensor("guided_decoding_guide_type", b"ebnf_grammar", "BYTES"))
        inputs.append(_tensor("guided_decoding_guide", params.grammar.encode("utf-8"), "BYTES"))
    return inputs


class GeneratorClient:
    """One gRPC connection to a server's `generator`; generate() may be called from one thread at a time."""

    def __init__(self, url: str, model: str = "generator", timeout_s: float = 600.0):
        self.client = grpcclient.InferenceServerClient(url)
        self.model = model
        self.timeout_s = timeout_s
        self.chat_template = chat_template_of(self.client.get_model_config(model, as_json=True)["config"], model)

    def chat_prompt(self, messages: list[dict[str, str]]) -> str:
        """Messages rendered in the served model's chat format."""
        return self.chat_template(messages)

    def stream(self, prompt: str, max_tokens: int, params: GenerationParams | None = None,
               priority: int = 0) -> Iterator[tuple[str, int, int]]:
        """Yield (text delta, prompt tokens, output tokens so far) as the server streams them.

        Closing the iterator early cancels the request on the server.
        """
        yield from self._responses(prompt, max_tokens, params or GenerationParams(), True, priority)

    def generate(self, prompt: str, max_tokens: int, params: GenerationParams | None = None,
                 stream: bool = False, priority: int = 0,
                 on_text: Callable[[str], None] | None = None) -> Generated:
        """Generate text; with stream=True the text arrives in chunks (passed to on_text) as it is made."""
        started = time.perf_counter()
        first = None
        chunks, prompt_tokens, output_tokens = [], 0, 0
        for delta, prompt_tokens, output_tokens in self._responses(prompt, max_tokens, params or GenerationParams(),
                                                                   stream, priority):
            if first is None:
                first = time.perf_counter()
            if delta:
                chunks.append(delta)
                if on_text:
                    on_text(delta)
        end = time.perf_counter()
        return Generated("".join(chunks), chunks, prompt_tokens, output_tokens,
                         (first or end) - started, end - started)

    def _responses(self, prompt, max_tokens, params, stream, priority):
        results: queue.Queue = queue.Queue()
        self.client.start_stream(callback=lambda result, error: results.put((result, error)))
        finished = False
        try:
            self.client.async_stream_infer(self.model, request_inputs(prompt, max_tokens, params, stream),
                                           request_id=uuid.uuid4().hex, priority=priority,
                                           enable_empty_final_response=True)
            deadline = time.monotonic() + self.timeout_s
            while not finished:
                try:
                    result, error = results.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    raise TimeoutError(f"no response from {self.model} within {self.timeout_s:.0f} s") from None
                if error is not None:
                    finished = True
                    raise error
                finished, fields = response_fields(result)
                if fields is not None:
                    yield fields
        finally:
            self.client.stop_stream(cancel_requests=not finished)

    def close(self) -> None:
        self.client.close()

