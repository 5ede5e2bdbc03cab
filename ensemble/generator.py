"""`generator` model (Python backend, decoupled): llama.cpp behind the TensorRT-LLM ensemble's tensors.

Inputs and outputs carry the names and types of tensorrtllm_backend's `ensemble`, so the GPU
profile can serve a TensorRT-LLM engine under the same name without touching clients:
text_input, max_tokens, optional temperature, top_p, top_k, random_seed, repetition_penalty,
presence_penalty, frequency_penalty, stop_words, stream,
guided_decoding_guide_type ("json", "json_schema" or "ebnf_grammar", the latter in llama.cpp's
GBNF dialect) and guided_decoding_guide -> text_output, plus num_input_tokens and
num_output_tokens. Differences: text_output never repeats the prompt (TRT-LLM's
exclude_input_in_output), stop words are not part of the output, temperature 0 (the default)
means greedy decoding, and "regex" guidance is refused.

text_input is the complete prompt: the client applies the chat template. The config parameter
`chat_template` names the template the served model expects ("chatml"); the model refuses to
load a GGUF whose own template is different, and clients read the parameter from the model
config (see client/generation.py).

execute() validates each request (errors go back at once as INVALID_ARG), hands the valid ones to
the LlamaEngine and returns only when the engine has a free sequence slot: the requests that
are still waiting stay in Triton's queue, which orders them by priority level.
"""
import json
import threading
from pathlib import Path

import numpy as np
import triton_python_backend_utils as pb_utils

from .llm_engine import Generation, GenerationError, LlamaEngine
from .tokenizer import decode_texts

CHAT_TEMPLATE_MARKERS = {"chatml": "<|im_start|>"}


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        if not pb_utils.using_decoupled_model_transaction_policy(config):
            raise pb_utils.TritonModelException("generator must be decoupled (model_transaction_policy)")
        params = {key: value["string_value"] for key, value in config.get("parameters", {}).items()}
        gguf = Path(args["model_repository"]) / args["model_version"] / "model.gguf"
        if not gguf.is_file():
            raise pb_utils.TritonModelException(f"{gguf} is missing: run `make build` (or make generator install-models)")
        self.engine = LlamaEngine(str(gguf), n_ctx=int(params.get("n_ctx", 8192)),
                                  max_sequences=int(config["max_batch_size"]),
                                  prefix_slots=int(params.get("prefix_slots", 2)),
                                  prefill_chunk=int(params.get("prefill_chunk", 128)),
                                  n_threads=int(params.get("threads", 0)) or None)
        template = params.get("chat_template", "chatml")
        marker = CHAT_TEMPLATE_MARKERS.get(template)
        if marker is None or marker not in self.engine.chat_template:
            self.engine.close()
            raise pb_utils.TritonModelException(
                f"{gguf.name}'s chat template is not {template!r} as the config's chat_template parameter says; "
                "serve a ChatML model or change the parameter and the client's formatting together")
        pb_utils.Logger.log_info(
            f"generator: {gguf} loaded; context {self.engine.n_ctx} tokens, {self.engine.max_sequences} "
            f"sequences in flight, {len(self.engine.prefixes)} cached prompt prefixes, chat template {template}")

    def execute(self, requests):
        for request in requests:
            sender = request.get_response_sender()
            try:
                responses = _Responses(sender, request)
                generation = _generation(request, responses)
                tokens = self.engine.check(generation)
                responses.n_input = len(tokens)
            except (ValueError, GenerationError) as err:
                sender.send(pb_utils.InferenceResponse(error=pb_utils.TritonError(str(err), pb_utils.TritonError.INVALID_ARG)),
                            flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)
                continue
            self.engine.submit(generation, tokens)
        self.engine.wait_for_capacity()
        return None

    def finalize(self):
        self.engine.close()


class _Responses:
    """Sends one request's text as responses; a client that went away turns into a cancellation."""

    def __init__(self, sender, request):
        self.sender = sender
        self.request = request
        self.gone = threading.Event()
        self.n_input = 0

    def is_cancelled(self) -> bool:
        return self.gone.is_set() or self.request.is_cancelled()

    def text(self, text: str, n_output: int, final: bool = False) -> None:
        response = pb_utils.InferenceResponse(output_tensors=[
            pb_utils.Tensor("text_output", np.array([[text.encode("utf-8")]], dtype=np.object_)),
            pb_utils.Tensor("num_input_tokens", np.array([[self.n_input]], dtype=np.int32)),
            pb_utils.Tensor("num_output_tokens", np.array([[n_output]], dtype=np.int32)),
        ])
        self._send(response, pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL if final else 0)

    def error(self, message: str) -> None:
        self._send(pb_utils.InferenceResponse(error=pb_utils.TritonError(message, pb_utils.TritonError.INVALID_ARG)),
                   pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)

    def cancelled(self, n_output: int) -> None:
        pb_utils.Logger.log_info(f"generator: request {self.request.request_id()!r} cancelled after {n_output} tokens")
        self._send(pb_utils.InferenceResponse(error=pb_utils.TritonError("the request was cancelled",
                                                                         pb_utils.TritonError.CANCELLED)),
                   pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)

    def _send(self, response, flags) -> None:
        try:
            self.sender.send(response, flags=flags)
        except Exception as err:  # the client disconnected: stop generating for it
            pb_utils.Logger.log_warn(f"generator: response not delivered ({err}); cancelling")
            self.gone.set()


def _generation(request, responses: _Responses) -> Generation:
    """Read a request's tensors into a Generation; raise ValueError with a message for the client."""
    prompts = decode_texts(_required(request, "text_input"), "text_input")
    if len(prompts) != 1:
        raise ValueError(f"text_input must hold one prompt per request, got {len(prompts)}")
    stop_words = _optional(request, "stop_words")
    guide_type = _optional(request, "guided_decoding_guide_type")
    guide = _optional(request, "guided_decoding_guide")
    has_guide = guide is not None and guide.size > 0 and guide.reshape(-1)[0].strip()

    def on_done(text: str, stats: dict) -> None:
        responses.text(text, stats["output_tokens"], final=True)
        pb_utils.Logger.log_info(
            f"generator: {stats['output_tokens']} tokens ({stats['finish_reason']}) for a {stats['prompt_tokens']}-token "
            f"prompt ({stats['cached_prompt_tokens']} from the prefix cache); queue {stats['queue_s']:.2f} s, "
            f"first token {stats['time_to_first_token_s']:.2f} s, decode {stats['decode_s']:.2f} s")

    return Generation(
        prompt=prompts[0],
        max_tokens=_scalar(request, "max_tokens", int),
        stream=_scalar(request, "stream", bool, False),
        temperature=_scalar(request, "temperature", float, 0.0),
        top_k=_scalar(request, "top_k", int, 0),
        top_p=_scalar(request, "top_p", float, 1.0),
        repetition_penalty=_scalar(request, "repetition_penalty", float, 1.0),
        presence_penalty=_scalar(request, "presence_penalty", float, 0.0),
        frequency_penalty=_scalar(request, "frequency_penalty", float, 0.0),
        seed=_scalar(request, "random_seed", int, None),
        stop_words=decode_texts(stop_words, "stop_words") if stop_words is not None else [],
        guide_type=decode_texts(guide_type, "guided_decoding_guide_type")[0] if guide_type is not None else None,
        guide=decode_texts(guide, "guided_decoding_guide")[0] if has_guide else "",
        on_text=responses.text, on_done=on_done, on_error=responses.error, on_cancel=responses.cancelled,
        is_cancelled=responses.is_cancelled,
    )


def _required(request, name: str) -> np.ndarray:
    tensor = pb_utils.get_input_tensor_by_name(request, name)
    if tensor is None:
        raise ValueError(f"{name} is required")
    return tensor.as_numpy()


def _optional(request, name: str) -> np.ndarray | None:
    tensor = pb_utils.get_input_tensor_by_name(request, name)
    return None if tensor is None else tensor.as_numpy()


def _scalar(request, name: str, kind, default=...):
    value = _optional(request, name) if default is not ... else _required(request, name)
    if value is None:
        return default
    if value.size != 1:
        raise ValueError(f"{name} must hold one value, got shape {list(value.shape)}")
    return kind(value.reshape(-1)[0])
