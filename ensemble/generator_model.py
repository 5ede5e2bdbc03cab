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
config (see client/wire.py).

execute() validates each request (errors go back at once as INVALID_ARG), hands the valid ones to
the LlamaEngine and returns only when the engine has a free sequence slot: the requests that
are still waiting stay in Triton's queue, which orders them by priority level.

The config's parameters (n_ctx, prefix_slots, prefill_chunk, threads, chat_template) are read
with no default of their own: a missing one fails the load, naming it. Each
request's figures (finish reason, prompt tokens computed or reused, output tokens, queue time,
time to first token, decode time) go to Triton's metrics endpoint as the custom metrics of
interface.GENERATOR_METRICS.
"""
import json
import os
import signal
import threading
from pathlib import Path

import numpy as np
import triton_python_backend_utils as pb_utils

from reviewlens.ensemble import interface

from .llm_engine import Generation, GenerationError, LlamaEngine, RequestFigures
from .tokenizer import decode_texts

CHAT_TEMPLATE_MARKERS = {"chatml": "<|im_start|>"}
PARAMETERS = ("n_ctx", "prefix_slots", "prefill_chunk", "threads", interface.CHAT_TEMPLATE_PARAMETER)
# Optional scalar inputs and the Generation field each sets; an absent one keeps Generation's default.
OPTIONAL_SCALARS = {
    interface.STREAM: ("stream", bool), interface.TEMPERATURE: ("temperature", float),
    interface.TOP_K: ("top_k", int), interface.TOP_P: ("top_p", float), interface.RANDOM_SEED: ("seed", int),
    interface.REPETITION_PENALTY: ("repetition_penalty", float),
    interface.PRESENCE_PENALTY: ("presence_penalty", float), interface.FREQUENCY_PENALTY: ("frequency_penalty", float),
}


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        if not pb_utils.using_decoupled_model_transaction_policy(config):
            raise pb_utils.TritonModelException(f"{args['model_name']} must be decoupled (model_transaction_policy)")
        given = {key: value["string_value"] for key, value in config.get("parameters", {}).items()}
        missing = [name for name in PARAMETERS if name not in given]
        if missing:
            raise pb_utils.TritonModelException(f"{args['model_name']}'s config.pbtxt lacks the parameter "
                                                f"{', '.join(missing)}")
        gguf = Path(args["model_repository"]) / args["model_version"] / "model.gguf"
        if not gguf.is_file():
            raise pb_utils.TritonModelException(f"{gguf} is missing: run `make build` (or make generator install-models)")
        self.metrics = _EngineMetrics()
        self.engine = LlamaEngine(str(gguf), n_ctx=int(given["n_ctx"]), max_sequences=int(config["max_batch_size"]),
                                  prefix_slots=int(given["prefix_slots"]), prefill_chunk=int(given["prefill_chunk"]),
                                  n_threads=int(given["threads"]), on_figures=self.metrics.record)
        template = given[interface.CHAT_TEMPLATE_PARAMETER]
        marker = CHAT_TEMPLATE_MARKERS.get(template)
        if marker is None or marker not in self.engine.chat_template:
            self.engine.close()
            raise pb_utils.TritonModelException(
                f"{gguf.name}'s chat template is not {template!r} as the config's "
                f"{interface.CHAT_TEMPLATE_PARAMETER} parameter says; "
                "serve a ChatML model or change the parameter and the client's formatting together")
        _on_stop_signal(self.engine.stop_serving)
        pb_utils.Logger.log_info(
            f"{args['model_name']}: {gguf} loaded; context {self.engine.n_ctx} tokens, {self.engine.max_sequences} "
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
            pb_utils.Tensor(interface.TEXT_OUTPUT.name, np.array([[text.encode("utf-8")]], dtype=np.object_)),
            pb_utils.Tensor(interface.NUM_INPUT_TOKENS.name, np.array([[self.n_input]], dtype=np.int32)),
            pb_utils.Tensor(interface.NUM_OUTPUT_TOKENS.name, np.array([[n_output]], dtype=np.int32)),
        ])
        self._send(response, pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL if final else 0)

    def error(self, message: str) -> None:
        self._send(pb_utils.InferenceResponse(error=pb_utils.TritonError(message, pb_utils.TritonError.INVALID_ARG)),
                   pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)

    def cancelled(self) -> None:
        self._send(pb_utils.InferenceResponse(error=pb_utils.TritonError("the request was cancelled",
                                                                         pb_utils.TritonError.CANCELLED)),
                   pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)

    def _send(self, response, flags) -> None:
        try:
            self.sender.send(response, flags=flags)
        except Exception as err:  # the client disconnected: stop generating for it
            pb_utils.Logger.log_warn(f"{interface.GENERATOR.name}: response not delivered ({err}); cancelling")
            self.gone.set()


class _EngineMetrics:
    """The engine's figures as Triton custom metrics: one series per metric of
    interface.GENERATOR_METRICS and label value, created at load so that every series reads 0 until
    its first event."""

    def __init__(self):
        self.families = []  # a family stays registered while referenced
        self.series = {}
        for metric in interface.GENERATOR_METRICS:
            family = pb_utils.MetricFamily(name=metric.name, description=metric.description,
                                           kind=getattr(pb_utils.MetricFamily, metric.kind))
            self.families.append(family)
            for labels in metric.label_sets:
                extra = {"buckets": list(metric.buckets)} if metric.buckets else {}
                self.series[(metric.name, *labels.values())] = family.Metric(labels=labels, **extra)

    def record(self, figures: RequestFigures) -> None:
        """Count one ended request (called on the engine's decode thread)."""
        reason = figures.finish_reason
        self.series[(interface.GENERATOR_REQUESTS.name, reason)].increment(1)
        counts = {(interface.GENERATOR_OUTPUT_TOKENS.name, reason): figures.output_tokens,
                  (interface.GENERATOR_PREFILL_TOKENS.name, interface.PREFILL_COMPUTED): figures.computed_prompt_tokens,
                  (interface.GENERATOR_PREFILL_TOKENS.name, interface.PREFILL_REUSED): figures.cached_prompt_tokens}
        for key, count in counts.items():
            if count:
                self.series[key].increment(count)
        for metric, seconds in ((interface.GENERATOR_QUEUE_SECONDS, figures.queue_s),
                                (interface.GENERATOR_TIME_TO_FIRST_TOKEN_SECONDS, figures.time_to_first_token_s),
                                (interface.GENERATOR_DECODE_SECONDS, figures.decode_s)):
            if seconds is not None:
                self.series[(metric.name,)].observe(seconds)
        pb_utils.Logger.log_verbose(f"{interface.GENERATOR.name}: {figures}")


def _on_stop_signal(stop_serving) -> None:
    """Call stop_serving on a thread of its own when this stub gets SIGINT or SIGTERM.

    tritonserver cancels nothing when it stops: it waits for in-flight requests, and a generation
    of hundreds of tokens outlives --exit-timeout-secs. Ctrl-C and TritonServer.stop() signal the
    whole process group, this stub included. A Python signal handler would run only when the
    stub's main thread next executes Python (it sits in C++ between two execute() calls), so the
    signal is taken from the wakeup fd, which the C-level handler writes at once.
    """
    readable, writable = os.pipe()
    os.set_blocking(writable, False)
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: None)
    signal.set_wakeup_fd(writable)

    def watch() -> None:
        os.read(readable, 1)
        pb_utils.Logger.log_info(f"{interface.GENERATOR.name}: stop signal; ending the requests in flight")
        stop_serving()
    threading.Thread(target=watch, name="stop-signal", daemon=True).start()


def _generation(request, responses: _Responses) -> Generation:
    """Read a request's tensors into a Generation; raise ValueError with a message for the client."""
    prompts = decode_texts(_required(request, interface.TEXT_INPUT), interface.TEXT_INPUT.name)
    if len(prompts) != 1:
        raise ValueError(f"{interface.TEXT_INPUT.name} must hold one prompt per request, got {len(prompts)}")
    stop_words = _optional(request, interface.STOP_WORDS)
    guide_type = _optional(request, interface.GUIDE_TYPE)
    guide = _optional(request, interface.GUIDE)
    has_guide = guide is not None and guide.size > 0 and guide.reshape(-1)[0].strip()
    options = {field: _scalar(value, tensor.name, kind) for tensor, (field, kind) in OPTIONAL_SCALARS.items()
               if (value := _optional(request, tensor)) is not None}

    def on_done(text: str, figures: RequestFigures) -> None:
        responses.text(text, figures.output_tokens, final=True)

    return Generation(
        prompt=prompts[0],
        max_tokens=_scalar(_required(request, interface.MAX_TOKENS), interface.MAX_TOKENS.name, int),
        stop_words=decode_texts(stop_words, interface.STOP_WORDS.name) if stop_words is not None else [],
        guide_type=decode_texts(guide_type, interface.GUIDE_TYPE.name)[0] if guide_type is not None else None,
        guide=decode_texts(guide, interface.GUIDE.name)[0] if has_guide else "",
        on_text=responses.text, on_done=on_done, on_error=responses.error, on_cancel=responses.cancelled,
        is_cancelled=responses.is_cancelled,
        **options,
    )


def _required(request, tensor: interface.Tensor) -> np.ndarray:
    value = _optional(request, tensor)
    if value is None:
        raise ValueError(f"{tensor.name} is required")
    return value


def _optional(request, tensor: interface.Tensor) -> np.ndarray | None:
    found = pb_utils.get_input_tensor_by_name(request, tensor.name)
    return None if found is None else found.as_numpy()


def _scalar(value: np.ndarray, name: str, kind):
    if value.size != 1:
        raise ValueError(f"{name} must hold one value, got shape {list(value.shape)}")
    return kind(value.reshape(-1)[0])
