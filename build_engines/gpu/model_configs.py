"""The GPU profile's own model configs, derived from the CPU profile's committed ones.

    python -m reviewlens.build_engines.gpu.model_configs [DIR]   # write DIR/<model>/config.pbtxt (default build/model_repository_gpu)

model_repository/*/config.pbtxt, written by hand and commented, are the source of truth
(tests/test_model_configs.py checks their tensors against ensemble/interface.py). The GPU profile
serves the same models with the same tensors and computes some steps differently, so its configs
are the CPU ones parsed with Triton's model-config protobuf and changed where the GPU differs
(GPU_CHANGES); sentiment_postprocess and the two ensembles stay as they are. They are only ever
generated: gpu/repository.py writes them into the GPU repository at container start.

tensorrtllm_backend's own models (preprocessing, tensorrt_llm, postprocessing) are not re-authored:
gpu/repository.py fills the pinned release's templates with trtllm_template_values(), and the
`generator` ensemble below maps our interface onto their tensors.
"""
import argparse
import sys
from pathlib import Path

from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as pb

from .trtllm_engine import MAX_BATCH_SIZE as GENERATOR_MAX_BATCH_SIZE, XGRAMMAR_TOKENIZER_INFO
from reviewlens.ensemble import interface
from reviewlens.local.paths import BUILD_DIR, MODEL_REPOSITORY

GPU_REPOSITORY = BUILD_DIR / "model_repository_gpu"
# GPU tokenizers pad each request to the next of these lengths, capped at the model's max_length.
LENGTH_BUCKETS = (16, 32, 64, 128, 256, 512)
GENERATOR_QUEUE_SIZE = 64  # requests each of tensorrtllm_backend's models queues before rejecting


def cpu_configs(repository: Path = MODEL_REPOSITORY) -> dict[str, pb.ModelConfig]:
    """The committed CPU configs, parsed: {model name: config}."""
    return {path.parent.name: text_format.Parse(path.read_text(), pb.ModelConfig())
            for path in sorted(repository.glob("*/config.pbtxt"))}


def bucketed_tokenizer(cpu: pb.ModelConfig) -> pb.ModelConfig:
    """A tokenizer config with the GPU's `length_buckets` parameter (read by ensemble/tokenizer.py)."""
    tokenizer = pb.ModelConfig()
    tokenizer.CopyFrom(cpu)
    tokenizer.parameters["length_buckets"].string_value = ",".join(map(str, LENGTH_BUCKETS))
    return tokenizer


def tensorrt_plan(cpu: pb.ModelConfig) -> pb.ModelConfig:
    """An ONNX Runtime step's config for the TensorRT plan of the same graph: same tensors and batching."""
    plan = pb.ModelConfig()
    plan.CopyFrom(cpu)
    plan.ClearField("backend")
    plan.ClearField("parameters")  # ONNX Runtime's, read by ensemble/onnx_model.py
    plan.platform = "tensorrt_plan"
    for tensor in plan.input:
        tensor.allow_ragged_batch = False
    del plan.instance_group[:]
    plan.instance_group.add(count=1, kind=pb.ModelInstanceGroup.KIND_GPU, profile=["0"])
    return plan


def _step(model: str, inputs: dict[str, str], outputs: dict[str, str]) -> pb.ModelEnsembling.Step:
    """An ensemble step: {the model's tensor: the ensemble's tensor} both ways."""
    return pb.ModelEnsembling.Step(model_name=model, model_version=-1, input_map=inputs, output_map=outputs)


def tensorrt_llm_generator(cpu: pb.ModelConfig) -> pb.ModelConfig:
    """`generator` as an ensemble over tensorrtllm_backend's inflight_batcher_llm models, with the CPU tensors.

    tensorrt_llm's names for ours (as in tensorrtllm_backend's own ensemble): top_k/top_p ->
    runtime_top_k/runtime_top_p, random_seed -> seed, stream -> streaming.
    """
    passed = {"temperature": interface.TEMPERATURE, "runtime_top_k": interface.TOP_K, "runtime_top_p": interface.TOP_P,
              "seed": interface.RANDOM_SEED, "repetition_penalty": interface.REPETITION_PENALTY,
              "presence_penalty": interface.PRESENCE_PENALTY, "frequency_penalty": interface.FREQUENCY_PENALTY,
              "streaming": interface.STREAM, "guided_decoding_guide_type": interface.GUIDE_TYPE,
              "guided_decoding_guide": interface.GUIDE}
    options = {tensor.name: f"_{tensor.name}" for tensor in interface.GENERATOR_OPTIONS.outputs}
    generator = pb.ModelConfig(name=cpu.name, platform="ensemble", max_batch_size=GENERATOR_MAX_BATCH_SIZE)
    generator.input.extend(cpu.input)
    generator.output.extend(cpu.output)
    generator.parameters[interface.CHAT_TEMPLATE_PARAMETER].CopyFrom(cpu.parameters[interface.CHAT_TEMPLATE_PARAMETER])
    generator.ensemble_scheduling.step.extend([
        _step("preprocessing",
              {"QUERY": interface.TEXT_INPUT.name, "REQUEST_OUTPUT_LEN": interface.MAX_TOKENS.name, "STOP_WORDS_DICT": interface.STOP_WORDS.name},
              {"INPUT_ID": "_INPUT_ID", "REQUEST_INPUT_LEN": "_REQUEST_INPUT_LEN", "REQUEST_OUTPUT_LEN": "_REQUEST_OUTPUT_LEN",
               "STOP_WORDS_IDS": "_STOP_WORDS_IDS", "OUT_END_ID": "_END_ID", "OUT_PAD_ID": "_PAD_ID"}),
        _step(interface.GENERATOR_OPTIONS.name, {interface.MAX_TOKENS.name: interface.MAX_TOKENS.name}, options),
        _step("tensorrt_llm",
              {"input_ids": "_INPUT_ID", "input_lengths": "_REQUEST_INPUT_LEN", "request_output_len": "_REQUEST_OUTPUT_LEN",
               "stop_words_list": "_STOP_WORDS_IDS", "end_id": "_END_ID", "pad_id": "_PAD_ID",
               **{name: tensor.name for name, tensor in passed.items()},
               **{name.lower(): value for name, value in options.items()}},
              {"output_ids": "_TOKENS_BATCH", "sequence_length": "_SEQUENCE_LENGTH",
               **{tensor.name: tensor.name for tensor in (interface.NUM_INPUT_TOKENS, interface.NUM_OUTPUT_TOKENS)}}),
        _step("postprocessing", {"TOKENS_BATCH": "_TOKENS_BATCH", "SEQUENCE_LENGTH": "_SEQUENCE_LENGTH"},
              {"OUTPUT": interface.TEXT_OUTPUT.name}),
    ])
    return generator


def generator_options(cpu_generator: pb.ModelConfig) -> pb.ModelConfig:
    """The generator_options step: max_tokens (for its batch shape only) -> the switches, all true."""
    options = pb.ModelConfig(name=interface.GENERATOR_OPTIONS.name, backend="python", max_batch_size=GENERATOR_MAX_BATCH_SIZE)
    options.input.extend(t for t in cpu_generator.input if t.name in {i.name for i in interface.GENERATOR_OPTIONS.inputs})
    options.output.extend(pb.ModelOutput(name=t.name, data_type=pb.DataType.Value(t.config_type), dims=t.dims)
                          for t in interface.GENERATOR_OPTIONS.outputs)
    options.instance_group.add(count=1, kind=pb.ModelInstanceGroup.KIND_CPU)
    return options


# What the GPU changes, per model: the derivation and the reason, which heads the written config.
GPU_CHANGES = {
    **{model.name: (bucketed_tokenizer, "each request is padded to the next length bucket (capped at serving.json's "
                                        "max_length), so requests of one bucket batch together in the TensorRT plan")
       for model in (interface.SENTIMENT_TOKENIZER, interface.EMBED_TOKENIZER)},
    **{model.name: (tensorrt_plan, "a TensorRT plan (FP16, or INT8 from the Q/DQ ONNX) built for this GPU by the image's "
                                   "entrypoint; rows arrive padded to a length bucket, which profile 0 covers")
       for model in (interface.CLASSIFIER, interface.ENCODER)},
    interface.GENERATOR.name: (tensorrt_llm_generator, "the TensorRT-LLM engine (in-flight batching, KV-cache reuse, xgrammar "
                                                 "guidance) behind the CPU generator's tensors: preprocessing -> "
                                                 "tensorrt_llm (decoupled, streams) -> postprocessing"),
}


def gpu_configs(cpu: dict[str, pb.ModelConfig]) -> dict[str, pb.ModelConfig]:
    """{model name: config} of the GPU profile's own models, from the CPU configs."""
    configs = {name: GPU_CHANGES[name][0](config) if name in GPU_CHANGES else config for name, config in cpu.items()}
    configs[interface.GENERATOR_OPTIONS.name] = generator_options(cpu[interface.GENERATOR.name])
    return configs


def write(root: Path, cpu_repository: Path = MODEL_REPOSITORY) -> dict[str, pb.ModelConfig]:
    """Write the GPU configs as root/<model>/config.pbtxt; return them by model name."""
    configs = gpu_configs(cpu_configs(cpu_repository))
    for name, config in configs.items():
        origin = f"from model_repository/{name}/config.pbtxt (edit that one)" if name != interface.GENERATOR_OPTIONS.name \
            else "for the GPU generator ensemble (the CPU generator needs no such step)"
        header = [f"# GPU profile: generated by build_engines/gpu/model_configs.py {origin}."]
        if name in GPU_CHANGES:
            header.append(f"# GPU: {GPU_CHANGES[name][1]}.")
        (root / name).mkdir(parents=True, exist_ok=True)
        (root / name / "config.pbtxt").write_text("\n".join(header) + "\n" + text_format.MessageToString(config))
    return configs


def trtllm_template_values(engine_dir: Path, tokenizer_dir: Path) -> dict[str, dict[str, str]]:
    """The values filled into tensorrtllm_backend's config templates ({model: {placeholder: value}}).

    Placeholders left unfilled keep the backend's defaults. tensorrt_llm runs the C++ `tensorrtllm`
    backend, decoupled (streaming), with in-flight batching, KV-cache block reuse for shared prompt
    prefixes (the engine is built with paged context attention for it) and chunked prefill; the
    prompt is not repeated in the output, as on the CPU; xgrammar serves guided decoding.
    """
    batching = {"triton_max_batch_size": str(GENERATOR_MAX_BATCH_SIZE), "max_queue_delay_microseconds": "0",
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


def main(argv: list[str] | None = None) -> int:
    """Write the GPU configs from the command line; return the exit code."""
    parser = argparse.ArgumentParser(prog="python -m reviewlens.build_engines.gpu.model_configs", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("output", nargs="?", type=Path, default=GPU_REPOSITORY, help="model repository to write into")
    output = parser.parse_args(argv).output
    for name in write(output):
        print(output / name / "config.pbtxt")
    return 0


if __name__ == "__main__":
    sys.exit(main())
