"""The Triton model configs of both profiles, rendered from one set of definitions.

    python -m reviewlens.build_engines.model_configs cpu        # rewrite model_repository/*/config.pbtxt
    python -m reviewlens.build_engines.model_configs gpu DIR    # write the GPU profile's own configs under DIR

One function per kind of model (tokenizer, ONNX Runtime step, TensorRT plan, postprocess, ensemble,
generator); `repository(profile)` composes them into {model name: config text}. Both profiles share
the tokenizer, postprocess and ensemble definitions, so their interfaces cannot drift apart. The CPU
configs are committed (Triton and readers need them) and a test asserts they are exactly what this
module renders; the GPU configs are only ever rendered (build/model_repository_gpu/, by
gpu_repository.py). The comments in the rendered text are the configs' documentation.

tensorrtllm_backend's own models (preprocessing, tensorrt_llm, postprocessing) are not re-authored
here: gpu_repository.py fills their templates from the pinned TensorRT-LLM release with
trtllm_template_values(), and the `generator` ensemble below maps our interface onto their tensors.
"""
import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

from .paths import MODEL_REPOSITORY

PROFILES = ("cpu", "gpu")
MAX_BATCH_SIZE = 128  # texts per request, and the TensorRT profiles' largest batch
# GPU tokenizers pad each request to the next of these lengths, capped at the model's max_length.
LENGTH_BUCKETS = (16, 32, 64, 128, 256, 512)
GPU_GENERATOR_MAX_BATCH_SIZE = 64  # sequences in flight in the TensorRT-LLM engine (trtllm_engine.py)
GENERATOR_QUEUE_SIZE = 64
XGRAMMAR_TOKENIZER_INFO = "xgrammar_tokenizer_info.json"  # written beside the engine by trtllm_engine.py


@dataclass(frozen=True)
class Tensor:
    """One input or output of a model config."""
    name: str
    data_type: str  # Triton's type without the TYPE_ prefix: "INT64", "FP32", "STRING", "BOOL", ...
    dims: tuple[int, ...] = (-1,)
    optional: bool = False
    ragged: bool = False

    def text(self) -> str:
        flags = (" optional: true" if self.optional else "") + (" allow_ragged_batch: true" if self.ragged else "")
        dims = ", ".join(map(str, self.dims))
        return f'{{ name: "{self.name}" data_type: TYPE_{self.data_type} dims: [ {dims} ]{flags} }}'


@dataclass(frozen=True)
class Step:
    """One step of an ensemble: the composing model and its {model tensor: ensemble tensor} maps."""
    model: str
    inputs: dict[str, str]
    outputs: dict[str, str]


TEXT = Tensor("TEXT", "STRING", (1,))
TRUNCATED = Tensor("TRUNCATED", "BOOL", (1,))
TOKEN_NAMES = ("input_ids", "attention_mask")
SENTIMENT_OUTPUTS = [Tensor("LABEL", "STRING", (1,)), Tensor("CONFIDENCE", "FP32", (1,)), Tensor("PROBS", "FP32")]

# tensorrtllm_backend's `ensemble` names and types (the CPU generator mirrors them): clients call
# `generator` the same way on both profiles.
GENERATOR_INPUTS = [
    Tensor("text_input", "STRING", ragged=True),
    Tensor("max_tokens", "INT32", (1,)),
    Tensor("temperature", "FP32", (1,), optional=True),
    Tensor("top_k", "INT32", (1,), optional=True),
    Tensor("top_p", "FP32", (1,), optional=True),
    Tensor("random_seed", "UINT64", (1,), optional=True),
    Tensor("repetition_penalty", "FP32", (1,), optional=True),
    Tensor("presence_penalty", "FP32", (1,), optional=True),
    Tensor("frequency_penalty", "FP32", (1,), optional=True),
    Tensor("stop_words", "STRING", optional=True, ragged=True),
    Tensor("stream", "BOOL", (1,), optional=True),
    Tensor("guided_decoding_guide_type", "STRING", (1,), optional=True),
    Tensor("guided_decoding_guide", "STRING", (1,), optional=True),
]
GENERATOR_OUTPUTS = [
    Tensor("text_output", "STRING"),
    Tensor("num_input_tokens", "INT32", (1,)),
    Tensor("num_output_tokens", "INT32", (1,)),
]
CHAT_TEMPLATE_PARAMETER = ("chat_template", "chatml", "clients format prompts with it")


def tensors(field: str, items: list[Tensor]) -> str:
    """An `input [...]` or `output [...]` block: one line for a single tensor, one line per tensor otherwise."""
    if len(items) == 1:
        return f"{field} [ {items[0].text()} ]"
    return f"{field} [\n  " + ",\n  ".join(t.text() for t in items) + "\n]"


def parameter(key: str, value: str, comment: str = "") -> str:
    return f'parameters {{ key: "{key}" value: {{ string_value: "{value}" }} }}' + (f"  # {comment}" if comment else "")


def instance_group(kind: str = "KIND_CPU", profile: str | None = None) -> str:
    profiles = f' profile: [ "{profile}" ]' if profile is not None else ""
    return f"instance_group [ {{ count: 1 kind: {kind}{profiles} }} ]"


def dynamic_batching(delay_us: int | None = None, comment: str = "", priority_levels: int | None = None,
                     max_queue_size: int = 1024, timeout_us: int = 30_000_000) -> str:
    """A dynamic batcher whose queue policy rejects (a clear error) rather than queueing forever."""
    lines = ["dynamic_batching {"]
    if delay_us is not None:
        lines.append(f"  max_queue_delay_microseconds: {delay_us}")
    if comment:
        lines.append(f"  # {comment}")
    if priority_levels:
        lines += [f"  priority_levels: {priority_levels}", f"  default_priority_level: {priority_levels}"]
    lines += ["  default_queue_policy {", f"    max_queue_size: {max_queue_size}", "    timeout_action: REJECT",
              f"    default_timeout_microseconds: {timeout_us}", "    allow_timeout_override: true", "  }", "}"]
    return "\n".join(lines)


def token_warmup() -> str:
    """Warm-up of a token model at load (zero data), so the first request does not pay for allocations."""
    inputs = "\n".join(f'    inputs {{ key: "{name}" value: {{ data_type: TYPE_INT64 dims: [ 16 ] zero_data: true }} }}'
                       for name in TOKEN_NAMES)
    return ("model_warmup [\n  {\n    name: \"eight_rows_of_sixteen_tokens\"\n    batch_size: 8\n"
            f"{inputs}\n  }}\n]")


def render(*blocks: str) -> str:
    return "\n".join(block for block in blocks if block) + "\n"


def header(name: str, kind: str, max_batch_size: int, *comments: str, batch_comments: tuple[str, ...] = ()) -> str:
    """Comment lines, then name, backend or platform ("backend: ..." / "platform: ...") and max_batch_size."""
    return "\n".join([*(f"# {c}" for c in comments), f'name: "{name}"', kind,
                      *(f"# {c}" for c in batch_comments), f"max_batch_size: {max_batch_size}"])


def tokenizer(name: str, ensemble: str, profile: str) -> str:
    """TEXT -> input_ids, attention_mask, TRUNCATED (ensemble/tokenizer.py, the same code on both profiles)."""
    comments = [f"Tokenizer of the `{ensemble}` ensemble: TEXT -> padded token ids. Files in 1/ come from the build."]
    padding = ""
    if profile == "gpu":
        # A TensorRT plan takes no ragged input, and Triton batches only requests of equal shape:
        # padding to a few fixed lengths lets requests batch while wasting little compute.
        comments.append("GPU: each request is padded to the next length bucket (the TensorRT profile covers them all),")
        comments.append("so requests of one bucket batch together in the TensorRT plan.")
        padding = parameter("length_buckets", ",".join(map(str, LENGTH_BUCKETS)), "capped at serving.json's max_length")
    return render(
        header(name, 'backend: "python"', MAX_BATCH_SIZE, *comments),
        tensors("input", [TEXT]),
        tensors("output", [*(Tensor(n, "INT64") for n in TOKEN_NAMES), TRUNCATED]),
        padding,
        instance_group(),
        dynamic_batching(500, 'Overload gives a clear "exceeds maximum queue size" error instead of unbounded latency.'),
    )


def onnx_runtime_model(name: str, description: str, output: str) -> str:
    """CPU profile: the ONNX graph under ONNX Runtime inside the Python backend (ensemble/onnx_model.py)."""
    return render(
        header(name, 'backend: "python"', MAX_BATCH_SIZE,
               f"{description}: ONNX graph (FP32 or INT8, as the build chose) run by ONNX Runtime inside the Python backend.",
               "Inputs are ragged across requests: the model re-pads all rows of a batch in length-sorted chunks."),
        tensors("input", [Tensor(n, "INT64", ragged=True) for n in TOKEN_NAMES]),
        tensors("output", [Tensor(output, "FP32")]),
        parameter("rows_per_chunk", "32"),
        parameter("intra_op_threads", "0", "0: all cores"),
        instance_group(),
        dynamic_batching(2000),
        token_warmup(),
    )


def tensorrt_plan(name: str, description: str, output: str) -> str:
    """GPU profile: the TensorRT plan built on this GPU from the same ONNX (tensorrt_engines.py)."""
    return render(
        header(name, 'platform: "tensorrt_plan"', MAX_BATCH_SIZE,
               f"{description}: TensorRT plan (FP16 or INT8 from the Q/DQ ONNX), built for this GPU by the image's entrypoint.",
               "Rows arrive padded to a length bucket; optimisation profile 0 covers every bucket and batches up to max_batch_size."),
        tensors("input", [Tensor(n, "INT64") for n in TOKEN_NAMES]),
        tensors("output", [Tensor(output, "FP32")]),
        instance_group("KIND_GPU", profile="0"),
        dynamic_batching(2000),
        token_warmup(),
    )


def sentiment_postprocess() -> str:
    return render(
        header("sentiment_postprocess", 'backend: "python"', MAX_BATCH_SIZE,
               "logits -> LABEL (name from 1/labels.json), CONFIDENCE (top probability), PROBS (softmax)."),
        tensors("input", [Tensor("logits", "FP32")]),
        tensors("output", SENTIMENT_OUTPUTS),
        instance_group(),
    )


def ensemble(name: str, comments: list[str], inputs: list[Tensor], outputs: list[Tensor], steps: list[Step],
             max_batch_size: int = MAX_BATCH_SIZE, cache_comment: str | None = None, response_cache: bool = True,
             parameters: tuple[str, ...] = ()) -> str:
    """An ensemble: Triton passes tensors between the steps; it has no batcher of its own."""
    step_texts = []
    for step in steps:
        lines = ["    {", f'      model_name: "{step.model}"', "      model_version: -1"]
        lines += [f'      input_map {{ key: "{k}" value: "{v}" }}' for k, v in step.inputs.items()]
        lines += [f'      output_map {{ key: "{k}" value: "{v}" }}' for k, v in step.outputs.items()]
        step_texts.append("\n".join(lines) + "\n    }")
    cache = ""
    if response_cache:
        cache = (f"# {cache_comment}\n" if cache_comment else "") + "response_cache { enable: true }"
    return render(
        header(name, 'platform: "ensemble"', max_batch_size, *comments),
        tensors("input", inputs),
        tensors("output", outputs),
        *parameters,
        "ensemble_scheduling {\n  step [\n" + ",\n".join(step_texts) + "\n  ]\n}",
        cache,
    )


def token_step(model: str, output: str, output_name: str | None = None) -> Step:
    return Step(model, {n: n for n in TOKEN_NAMES}, {output: output_name or output})


def sentiment() -> str:
    return ensemble(
        "sentiment",
        ["TEXT -> sentiment_tokenizer -> classifier -> sentiment_postprocess -> LABEL, CONFIDENCE, PROBS.",
         "TRUNCATED tells which texts were longer than the classifier's maximum and were cut."],
        [TEXT], [*SENTIMENT_OUTPUTS, TRUNCATED],
        [Step("sentiment_tokenizer", {"TEXT": "TEXT"}, {n: n for n in (*TOKEN_NAMES, "TRUNCATED")}),
         token_step("classifier", "logits"),
         Step("sentiment_postprocess", {"logits": "logits"}, {t.name: t.name for t in SENTIMENT_OUTPUTS})],
        cache_comment="Identical requests (same texts) are answered from Triton's response cache.")


def embed() -> str:
    return ensemble(
        "embed", ["TEXT -> embed_tokenizer -> encoder -> EMBEDDING (unit-norm FP32 vector per text)."],
        [TEXT], [Tensor("EMBEDDING", "FP32"), TRUNCATED],
        [Step("embed_tokenizer", {"TEXT": "TEXT"}, {n: n for n in (*TOKEN_NAMES, "TRUNCATED")}),
         token_step("encoder", "EMBEDDING")])


def llama_cpp_generator() -> str:
    """CPU profile: the decoupled llama.cpp model (ensemble/generator.py) behind TensorRT-LLM's tensor names."""
    return render(
        header("generator", 'backend: "python"', 4,
               "LLM generator, CPU profile: a GGUF under llama.cpp (Python backend, decoupled = streaming).",
               "Tensor names and types mirror tensorrtllm_backend's `ensemble`, so the GPU profile can serve a",
               "TensorRT-LLM engine under this name. 1/model.gguf comes from the build (make generator install-models).",
               batch_comments=("Sequences decoded together in one llama_decode (continuous batching): 4 gave the best aggregate",
                               "tokens/s on 2 cores. Requests beyond that wait in Triton's queue, by priority level.")),
        "model_transaction_policy { decoupled: true }",
        tensors("input", GENERATOR_INPUTS),
        tensors("output", GENERATOR_OUTPUTS),
        parameter(*CHAT_TEMPLATE_PARAMETER),
        parameter("n_ctx", "8192", "KV cells shared by all sequences"),
        parameter("prefix_slots", "4", "prompts whose KV cache is kept for reuse"),
        parameter("prefill_chunk", "128", "prompt tokens per decode step"),
        parameter("threads", "0", "0: all cores"),
        instance_group(),
        dynamic_batching(comment="Priority 1 before 2 (the default): clients put short prompts (cheap prefill) first.",
                         priority_levels=2, max_queue_size=GENERATOR_QUEUE_SIZE, timeout_us=300_000_000),
    )


# The generator's request switches that the CPU generator always applies; an ensemble cannot hold
# constants, so the tiny `generator_options` step (ensemble/generator_options.py) emits them.
GENERATOR_OPTIONS = ("return_num_input_tokens", "return_num_output_tokens")


def generator_options() -> str:
    return render(
        header("generator_options", 'backend: "python"', GPU_GENERATOR_MAX_BATCH_SIZE,
               "Constant request switches for tensorrt_llm (true for every request): the CPU generator always",
               "returns num_input_tokens and num_output_tokens, and TensorRT-LLM only when asked."),
        tensors("input", [Tensor("max_tokens", "INT32", (1,))]),
        tensors("output", [Tensor(name.upper(), "BOOL", (1,)) for name in GENERATOR_OPTIONS]),
        instance_group(),
    )


def tensorrt_llm_generator() -> str:
    """GPU profile: `generator` as an ensemble over tensorrtllm_backend's inflight_batcher_llm models.

    Our names that differ from tensorrt_llm's: top_k/top_p -> runtime_top_k/runtime_top_p,
    random_seed -> seed, stream -> streaming (in tensorrtllm_backend's own ensemble too).
    """
    passed = {"temperature": "temperature", "runtime_top_k": "top_k", "runtime_top_p": "top_p",
              "seed": "random_seed", "repetition_penalty": "repetition_penalty",
              "presence_penalty": "presence_penalty", "frequency_penalty": "frequency_penalty",
              "streaming": "stream", "guided_decoding_guide_type": "guided_decoding_guide_type",
              "guided_decoding_guide": "guided_decoding_guide"}
    return ensemble(
        "generator",
        ["LLM generator, GPU profile: the TensorRT-LLM engine (in-flight batching, KV-cache reuse, xgrammar guidance)",
         "behind the CPU generator's tensors: preprocessing (tokenize) -> tensorrt_llm (decoupled, streams) ->",
         "postprocessing (detokenize). The three are tensorrtllm_backend's models from the pinned release."],
        GENERATOR_INPUTS, GENERATOR_OUTPUTS,
        [Step("preprocessing", {"QUERY": "text_input", "REQUEST_OUTPUT_LEN": "max_tokens", "STOP_WORDS_DICT": "stop_words"},
              {"INPUT_ID": "_INPUT_ID", "REQUEST_INPUT_LEN": "_REQUEST_INPUT_LEN",
               "REQUEST_OUTPUT_LEN": "_REQUEST_OUTPUT_LEN", "STOP_WORDS_IDS": "_STOP_WORDS_IDS",
               "OUT_END_ID": "_END_ID", "OUT_PAD_ID": "_PAD_ID"}),
         Step("generator_options", {"max_tokens": "max_tokens"}, {n.upper(): f"_{n.upper()}" for n in GENERATOR_OPTIONS}),
         Step("tensorrt_llm",
              {"input_ids": "_INPUT_ID", "input_lengths": "_REQUEST_INPUT_LEN",
               "request_output_len": "_REQUEST_OUTPUT_LEN", "stop_words_list": "_STOP_WORDS_IDS",
               "end_id": "_END_ID", "pad_id": "_PAD_ID", **passed,
               **{n: f"_{n.upper()}" for n in GENERATOR_OPTIONS}},
              {"output_ids": "_TOKENS_BATCH", "sequence_length": "_SEQUENCE_LENGTH",
               "num_input_tokens": "num_input_tokens", "num_output_tokens": "num_output_tokens"}),
         Step("postprocessing", {"TOKENS_BATCH": "_TOKENS_BATCH", "SEQUENCE_LENGTH": "_SEQUENCE_LENGTH"},
              {"OUTPUT": "text_output"})],
        max_batch_size=GPU_GENERATOR_MAX_BATCH_SIZE, response_cache=False,
        parameters=(parameter(*CHAT_TEMPLATE_PARAMETER),))


def trtllm_template_values(engine_dir: Path, tokenizer_dir: Path) -> dict[str, dict[str, str]]:
    """The values filled into tensorrtllm_backend's config templates ({model: {placeholder: value}}).

    Placeholders left unfilled keep the backend's defaults. tensorrt_llm runs the C++ `tensorrtllm`
    backend, decoupled (streaming), with in-flight batching, KV-cache block reuse for shared prompt
    prefixes (the engine is built with paged context attention for it) and chunked prefill; the
    prompt is not repeated in the output, as on the CPU; xgrammar serves guided decoding.
    """
    batching = {"triton_max_batch_size": str(GPU_GENERATOR_MAX_BATCH_SIZE), "max_queue_delay_microseconds": "0",
                "max_queue_size": str(GENERATOR_QUEUE_SIZE)}
    return {
        "preprocessing": {**batching, "tokenizer_dir": str(tokenizer_dir), "engine_dir": str(engine_dir),
                          "preprocessing_instance_count": "1",
                          # the client has already applied the chat template (ChatML), as on the CPU
                          "add_special_tokens": "false"},
        "postprocessing": {**batching, "tokenizer_dir": str(tokenizer_dir), "postprocessing_instance_count": "1",
                           "skip_special_tokens": "true"},
        "tensorrt_llm": {
            **batching, "triton_backend": "tensorrtllm", "decoupled_mode": "true", "max_beam_width": "1",
            "engine_dir": str(engine_dir), "batching_strategy": "inflight_fused_batching",
            "batch_scheduler_policy": "guaranteed_no_evict", "enable_kv_cache_reuse": "true",
            "enable_chunked_context": "true", "exclude_input_in_output": "true",
            # the TensorRT plans of the classifier and the embedder share the GPU
            "kv_cache_free_gpu_mem_fraction": "0.7",
            "guided_decoding_backend": "xgrammar",
            "xgrammar_tokenizer_info_path": str(engine_dir / XGRAMMAR_TOKENIZER_INFO),
            "tokenizer_dir": str(tokenizer_dir),
            "logits_datatype": "TYPE_FP32", "encoder_input_features_data_type": "TYPE_FP16",
            "prompt_embedding_table_data_type": "TYPE_FP16"},
    }


def repository(profile: str) -> dict[str, str]:
    """{model name: config.pbtxt text} of a profile's own configs ("cpu" or "gpu").

    The GPU profile also serves tensorrtllm_backend's preprocessing, tensorrt_llm and postprocessing,
    rendered from the release's templates by gpu_repository.py.
    """
    if profile not in PROFILES:
        raise ValueError(f"profile must be one of {PROFILES}, not {profile!r}")
    token_model = onnx_runtime_model if profile == "cpu" else tensorrt_plan
    configs = {
        "sentiment": sentiment(),
        "sentiment_tokenizer": tokenizer("sentiment_tokenizer", "sentiment", profile),
        "classifier": token_model("classifier", "Sentiment classifier", "logits"),
        "sentiment_postprocess": sentiment_postprocess(),
        "embed": embed(),
        "embed_tokenizer": tokenizer("embed_tokenizer", "embed", profile),
        "encoder": token_model("encoder", "Sentence embedder (mean pooling + L2 norm inside the graph)", "EMBEDDING"),
    }
    if profile == "cpu":
        configs["generator"] = llama_cpp_generator()
    else:
        configs["generator"] = tensorrt_llm_generator()
        configs["generator_options"] = generator_options()
    return configs


def write(profile: str, root: Path) -> list[Path]:
    """Write a profile's configs as root/<model>/config.pbtxt (only files whose text changes); return them all."""
    paths = []
    for name, text in repository(profile).items():
        path = root / name / "config.pbtxt"
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.is_file() or path.read_text() != text:
            path.write_text(text)
        paths.append(path)
    return paths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m reviewlens.build_engines.model_configs", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("profile", choices=PROFILES)
    parser.add_argument("output", nargs="?", type=Path,
                        help="model repository to write into (default for cpu: model_repository/; required for gpu)")
    args = parser.parse_args(argv)
    if args.output is None and args.profile == "gpu":
        parser.error("the gpu profile is rendered into a build directory: name it (e.g. build/model_repository_gpu)")
    for path in write(args.profile, args.output or MODEL_REPOSITORY):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
