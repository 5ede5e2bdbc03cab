"""What goes over the wire: request tensors from Python values, results from response tensors.

The one place in the client that knows the served tensors (names from ensemble/interface.py): the
async pool (client/transport.py) builds every request and reads every response through it.
Chat formatting lives here too: the generator takes a complete prompt, as TensorRT-LLM's ensemble
does, and its config's `chat_template` parameter says which format the served model expects.
Only ChatML is needed today: the CPU model (Qwen2.5-Coder-1.5B-Instruct) and the GPU one
(Qwen2.5-7B-Instruct) share it.
"""
import json
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import tritonclient.grpc as grpcclient

from reviewlens.ensemble import interface as api

_NUMPY_TYPES = {"BYTES": object, "INT32": np.int32, "INT64": np.int64, "FP32": np.float32,
                "UINT64": np.uint64, "BOOL": bool}


@dataclass(frozen=True)
class Sentiment:
    """One text's `sentiment` result."""
    label: str
    confidence: float
    probs: tuple[float, ...]
    truncated: bool


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


@dataclass(frozen=True)
class GenerationParams:
    """Optional inputs of the generator; None leaves the model's default."""
    temperature: float | None = None  # 0 is greedy decoding
    top_k: int | None = None
    top_p: float | None = None
    seed: int | None = None  # makes sampling reproducible
    repetition_penalty: float | None = None  # penalties on tokens already generated
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    stop_words: tuple[str, ...] = field(default=())
    json_schema: dict | None = field(default=None, hash=False)
    grammar: str | None = None  # llama.cpp GBNF on the CPU profile


def tensor(spec: api.Tensor, array) -> grpcclient.InferInput:
    """An input tensor of the served interface holding `array` (converted to the spec's datatype)."""
    array = np.asarray(array, dtype=_NUMPY_TYPES[spec.datatype])
    value = grpcclient.InferInput(spec.name, list(array.shape), spec.datatype)
    value.set_data_from_numpy(array)
    return value


def text_input(texts: list[str]) -> grpcclient.InferInput:
    """The ensembles' TEXT tensor, shape [n, 1], UTF-8 bytes."""
    return tensor(api.TEXT, [[t.encode("utf-8")] for t in texts])


def requested(model: api.Model) -> list[grpcclient.InferRequestedOutput]:
    return [grpcclient.InferRequestedOutput(t.name) for t in model.outputs]


def sentiments(result) -> list[Sentiment]:
    """One Sentiment per text of a `sentiment` response."""
    columns = (result.as_numpy(t.name) for t in (api.LABEL, api.CONFIDENCE, api.PROBS, api.TRUNCATED))
    return [Sentiment(label[0].decode(), float(confidence[0]), tuple(map(float, probs)), bool(truncated[0]))
            for label, confidence, probs, truncated in zip(*columns)]


def embeddings(result) -> np.ndarray:
    """The unit-norm rows of an `embed` response."""
    return result.as_numpy(api.EMBEDDING.name)


def generator_inputs(prompt: str, max_tokens: int, params: GenerationParams,
                     stream: bool) -> list[grpcclient.InferInput]:
    """The generator's input tensors for one prompt (shape [1, ...]: one request, one prompt)."""
    def one(spec: api.Tensor, value) -> grpcclient.InferInput:
        return tensor(spec, [value if isinstance(value, list) else [value]])

    inputs = [one(api.TEXT_INPUT, prompt.encode("utf-8")), one(api.MAX_TOKENS, max_tokens), one(api.STREAM, stream)]
    optional = {api.TEMPERATURE: params.temperature, api.TOP_K: params.top_k, api.TOP_P: params.top_p,
                api.RANDOM_SEED: params.seed, api.REPETITION_PENALTY: params.repetition_penalty,
                api.PRESENCE_PENALTY: params.presence_penalty, api.FREQUENCY_PENALTY: params.frequency_penalty}
    inputs += [one(spec, value) for spec, value in optional.items() if value is not None]
    if params.stop_words:
        inputs.append(one(api.STOP_WORDS, [w.encode("utf-8") for w in params.stop_words]))
    if params.json_schema is not None:
        inputs += [one(api.GUIDE_TYPE, b"json_schema"), one(api.GUIDE, json.dumps(params.json_schema).encode("utf-8"))]
    elif params.grammar is not None:
        inputs += [one(api.GUIDE_TYPE, b"ebnf_grammar"), one(api.GUIDE, params.grammar.encode("utf-8"))]
    return inputs


def generator_response(result) -> tuple[bool, tuple[str, int, int] | None]:
    """Whether a generator response is the last one, and its (text delta, prompt tokens, output
    tokens so far); None for the empty final response, which carries no text."""
    final = result.get_response().parameters["triton_final_response"].bool_param
    text = result.as_numpy(api.TEXT_OUTPUT.name)
    if text is None:
        return final, None
    return final, (text.reshape(-1)[0].decode("utf-8"),
                   int(result.as_numpy(api.NUM_INPUT_TOKENS.name).reshape(-1)[0]),
                   int(result.as_numpy(api.NUM_OUTPUT_TOKENS.name).reshape(-1)[0]))


# Qwen2.5's template inserts this system message when the conversation has none.
QWEN_DEFAULT_SYSTEM = "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."


def chatml(messages: list[dict[str, str]], default_system: str = QWEN_DEFAULT_SYSTEM) -> str:
    """Render messages ({"role", "content"}) as ChatML, ending with the assistant's turn opened."""
    if not messages or messages[0]["role"] != "system":
        messages = [{"role": "system", "content": default_system}, *messages]
    turns = "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in messages)
    return turns + "<|im_start|>assistant\n"


CHAT_TEMPLATES: dict[str, Callable[[list[dict[str, str]]], str]] = {"chatml": chatml}


def chat_template_of(config: dict) -> Callable[[list[dict[str, str]]], str]:
    """The renderer of the chat format a generator's model config (JSON) names."""
    template = config["parameters"][api.CHAT_TEMPLATE_PARAMETER]["string_value"]
    if template not in CHAT_TEMPLATES:
        raise ValueError(f"{config['name']} expects chat template {template!r}, which this client cannot render")
    return CHAT_TEMPLATES[template]
