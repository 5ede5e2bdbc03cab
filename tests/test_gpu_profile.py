"""The GPU profile, checked on a machine without a GPU: its configs, the shapes its engines must
accept, the ONNX its engines are built from, and its GPU-only scripts' refusal to run here.

Nothing here starts a server: the configs are parsed with Triton's own model-config protobuf
(from tritonclient), the ONNX runs under ONNX Runtime on the CPU.
"""
import copy
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from reviewlens.build_engines import artifacts
from reviewlens.build_engines.gpu import model_configs
from reviewlens.build_engines.gpu.tensorrt_engines import (ENGINE_SOURCES, SERVED_PRECISION, engine_profile,
                                                           source_onnx)
from reviewlens.ensemble import interface
from reviewlens.ensemble.tokens import ServingTokenizer
from reviewlens.local.paths import BUILD_DIR, MODELS_DIR, REPO_ROOT, REPORTS_DIR


def written_gpu_configs() -> dict[str, model_config_pb2.ModelConfig]:
    """The GPU configs as model_configs.write() writes them, parsed back from their text."""
    with tempfile.TemporaryDirectory() as root:
        model_configs.write(Path(root))
        return {path.parent.name: text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())
                for path in Path(root).glob("*/config.pbtxt")}


CPU = model_configs.cpu_configs()
GPU = written_gpu_configs()
# Token models of both profiles: (tokenizer, token model, exported model directory in build/models).
TOKEN_MODELS = [(interface.SENTIMENT_TOKENIZER.name, interface.CLASSIFIER.name, "classifier"),
                (interface.EMBED_TOKENIZER.name, interface.ENCODER.name, "embedder")]
# tensorrtllm_backend's models are rendered from the installed release's templates in the image, not
# here: the generator ensemble may only use tensors they have (as in TensorRT-LLM's
# triton_backend/all_models/inflight_batcher_llm/*/config.pbtxt).
TRTLLM_TENSORS = {
    "preprocessing": {
        "inputs": {"QUERY", "DECODER_QUERY", "REQUEST_OUTPUT_LEN", "BAD_WORDS_DICT", "STOP_WORDS_DICT",
                   "EMBEDDING_BIAS_WORDS", "EMBEDDING_BIAS_WEIGHTS", "END_ID", "PAD_ID", "PROMPT_TABLE_EXTRA_ID"},
        "outputs": {"INPUT_ID", "REQUEST_INPUT_LEN", "REQUEST_OUTPUT_LEN", "STOP_WORDS_IDS", "BAD_WORDS_IDS",
                    "EMBEDDING_BIAS", "OUT_END_ID", "OUT_PAD_ID", "OUT_PROMPT_TABLE_EXTRA_IDS"},
        "required": {"QUERY", "REQUEST_OUTPUT_LEN"}},
    "tensorrt_llm": {
        "inputs": {"input_ids", "input_lengths", "request_output_len", "end_id", "pad_id", "stop_words_list",
                   "bad_words_list", "beam_width", "temperature", "runtime_top_k", "runtime_top_p", "len_penalty",
                   "repetition_penalty", "min_tokens", "presence_penalty", "frequency_penalty", "seed",
                   "return_log_probs", "return_num_input_tokens", "return_num_output_tokens",
                   "exclude_input_in_output", "streaming", "guided_decoding_guide_type", "guided_decoding_guide"},
        "outputs": {"output_ids", "sequence_length", "cum_log_probs", "output_log_probs",
                    "num_input_tokens", "num_output_tokens"},
        "required": {"input_ids", "input_lengths", "request_output_len"}},
    "postprocessing": {"inputs": {"TOKENS_BATCH", "SEQUENCE_LENGTH"}, "outputs": {"OUTPUT"},
                       "required": {"TOKENS_BATCH", "SEQUENCE_LENGTH"}},
}


def client_view(config: model_config_pb2.ModelConfig) -> tuple[list, list]:
    """What a client sees of a model: input and output names, types, dims, optional flags."""
    return ([(t.name, t.data_type, list(t.dims), t.optional) for t in config.input],
            [(t.name, t.data_type, list(t.dims)) for t in config.output])


@pytest.mark.parametrize("name", sorted(GPU))
def test_every_gpu_config_parses_with_tritons_protobuf_and_names_its_model(name):
    assert GPU[name].name == name


@pytest.mark.parametrize("model", [model.name for model in interface.SERVED])
def test_the_gpu_profile_exposes_the_cpu_interface(model):
    assert client_view(GPU[model]) == client_view(CPU[model])


def test_the_gpu_generator_tells_clients_its_chat_template_as_the_cpu_one_does():
    template = interface.CHAT_TEMPLATE_PARAMETER
    assert GPU[interface.GENERATOR.name].parameters[template] == CPU[interface.GENERATOR.name].parameters[template]


@pytest.mark.parametrize("name", [m.name for m in (interface.SENTIMENT_TOKENIZER, interface.EMBED_TOKENIZER,
                                                   interface.SENTIMENT_POSTPROCESS)])
def test_pre_and_postprocessing_are_the_cpu_models_except_the_padding_buckets(name):
    gpu = copy.deepcopy(GPU[name])
    if "tokenizer" in name:
        assert gpu.parameters.pop("length_buckets").string_value
    assert gpu == CPU[name]


@pytest.mark.parametrize("tokenizer,model,exported", TOKEN_MODELS)
def test_token_models_are_tensorrt_plans_on_gpu_instances_with_the_cpu_tensors(tokenizer, model, exported):
    plan = GPU[model]
    assert plan.platform == "tensorrt_plan"
    assert [g.kind for g in plan.instance_group] == [model_config_pb2.ModelInstanceGroup.KIND_GPU]
    assert list(plan.instance_group[0].profile) == ["0"]
    assert not any(i.allow_ragged_batch for i in plan.input)  # a plan takes padded rows only
    cpu = CPU[model]
    assert [(i.name, i.data_type, list(i.dims)) for i in plan.input] == [(i.name, i.data_type, list(i.dims)) for i in cpu.input]
    assert client_view(plan)[1] == client_view(cpu)[1]


def test_gpu_ensembles_only_wire_tensors_their_steps_have():
    for ensemble in (m for m in GPU.values() if m.platform == "ensemble"):
        available = {i.name for i in ensemble.input}
        for step in ensemble.ensemble_scheduling.step:
            if step.model_name in GPU:
                composing = GPU[step.model_name]
                inputs, outputs = {i.name for i in composing.input}, {o.name for o in composing.output}
                required = {i.name for i in composing.input if not i.optional}
                assert composing.max_batch_size >= ensemble.max_batch_size, step.model_name
            else:
                known = TRTLLM_TENSORS[step.model_name]
                inputs, outputs, required = known["inputs"], known["outputs"], known["required"]
            assert set(step.input_map) <= inputs, step.model_name
            assert required <= set(step.input_map), step.model_name
            assert set(step.output_map) <= outputs, step.model_name
            assert set(step.input_map.values()) <= available, f"{step.model_name} reads a tensor no earlier step makes"
            available |= set(step.output_map.values())
        assert {o.name for o in ensemble.output} <= available, ensemble.name


def test_trtllm_template_values_fill_every_placeholder_a_config_field_needs():
    values = model_configs.trtllm_template_values(Path("/engines/generator"), Path("/models/generator"))
    assert set(values) == set(TRTLLM_TENSORS)
    tensorrt_llm = values["tensorrt_llm"]
    assert tensorrt_llm["batching_strategy"] == "inflight_fused_batching"
    assert tensorrt_llm["enable_kv_cache_reuse"] == "true" and tensorrt_llm["decoupled_mode"] == "true"
    assert tensorrt_llm["guided_decoding_backend"] == "xgrammar"
    assert tensorrt_llm["exclude_input_in_output"] == "true"  # the CPU generator never repeats the prompt
    for model_values in values.values():  # placeholders in max_batch_size and the queue policy must be filled
        assert int(model_values["triton_max_batch_size"]) == GPU[interface.GENERATOR.name].max_batch_size


@pytest.mark.parametrize("tokenizer,model,exported", TOKEN_MODELS)
def test_the_engine_profile_covers_every_shape_the_tokenizer_emits(tokenizer, model, exported):
    gpu_tokenizer = bucketed_tokenizer(tokenizer, exported)
    max_length, buckets = gpu_tokenizer.max_length, gpu_tokenizer.length_buckets
    profile = engine_profile(max_length)
    plan = GPU[model]
    assert plan.max_batch_size <= profile.max[0] and GPU[tokenizer].max_batch_size <= profile.max[0]
    widths = set()
    for longest in range(1, max_length + 1):  # the tokenizer truncates at max_length
        width = gpu_tokenizer.width(longest)
        assert longest <= width <= max_length
        widths.add(width)
    for width in widths:
        for rows in (1, plan.max_batch_size):
            assert profile.covers(rows, width), (rows, width)
    assert len(widths) <= len(buckets) + 1  # a few shapes, so requests of one bucket batch together
    for warmup in plan.model_warmup:
        assert all(profile.covers(warmup.batch_size, i.dims[0]) for i in warmup.inputs.values())


@pytest.mark.parametrize("kind", ["classifier", "embedder"])
def test_the_qdq_onnx_tensorrt_builds_from_meets_the_serving_gate(kind):
    from reviewlens.build_engines.quantize import gate

    report = json.loads((REPORTS_DIR / "accuracy.json").read_text())[kind]
    assert report["qdq"]["file"] == source_onnx(kind, "int8").name
    if kind == "classifier":
        metrics = {"agreement": report["qdq"]["agreement"],
                   "accuracy_drop_points": 100 * (report["fp32"]["accuracy"] - report["qdq"]["accuracy"])}
    else:
        metrics = report["qdq"]
    # The GPU profile serves the INT8 plan by default; if this fails, serve fp16 (GPU_PRECISION) or fix the Q/DQ.
    assert SERVED_PRECISION == "int8" and gate(kind, metrics)["passed"], (metrics, gate(kind, metrics))


def bucketed_tokenizer(tokenizer: str, exported: str) -> ServingTokenizer:
    """The served tokenizer code with the GPU config's length buckets."""
    buckets = GPU[tokenizer].parameters["length_buckets"].string_value.split(",")
    return ServingTokenizer(MODELS_DIR / exported, tuple(map(int, buckets)))


def review_tokens(exported: str, count: int) -> list[list[int]]:
    """Token rows of real held-out reviews, short to long, as the serving tokenizer makes them."""
    with open(BUILD_DIR / "data" / "test.jsonl") as lines:
        texts = [json.loads(line)["text"] for line in lines]
    return ServingTokenizer(MODELS_DIR / exported).rows(sorted(texts[:count * 4], key=len)[::4][:count])


def session(path: Path) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("tokenizer,model,exported", TOKEN_MODELS)
def test_bucket_padding_leaves_the_qdq_onnx_outputs_unchanged(tokenizer, model, exported):
    rows = review_tokens(exported, 12)
    assert len({len(r) for r in rows}) > 3  # the rows really are padded by different amounts
    per_request, bucketed = ServingTokenizer(MODELS_DIR / exported), bucketed_tokenizer(tokenizer, exported)
    qdq = session(source_onnx(exported, "int8"))
    alone = np.concatenate([qdq.run(None, per_request.pad([row]))[0] for row in rows])
    np.testing.assert_allclose(qdq.run(None, bucketed.pad(rows))[0], alone, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("exported", ["classifier", "embedder"])
def test_the_fp16_onnx_keeps_the_interface_and_the_fp32_outputs(exported):
    from reviewlens.build_engines.gpu.fp16 import build_fp16

    path = build_fp16(exported)  # the cached build step `make onnx-fp16` runs
    assert path == source_onnx(exported, "fp16")  # the file the FP16 engine is built from
    fp16 = session(path)
    fp32 = session(MODELS_DIR / exported / "model_fp32.onnx")

    def signature(model):
        return [(t.name, t.type) for t in model.get_inputs()], [(t.name, t.type) for t in model.get_outputs()]

    assert signature(fp16) == signature(fp32)  # one Triton config serves the FP16 and the INT8 plan
    tokens = ServingTokenizer(MODELS_DIR / exported).pad(review_tokens(exported, 32))
    half, full = (m.run(None, tokens)[0] for m in (fp16, fp32))
    assert not np.array_equal(half, full)  # it really computes in FP16
    if exported == "embedder":
        cosine = (half * full).sum(1) / (np.linalg.norm(half, axis=1) * np.linalg.norm(full, axis=1))
        assert cosine.min() >= 0.999
    else:
        assert (half.argmax(1) == full.argmax(1)).all() and np.abs(half - full).max() < 0.05


@pytest.mark.parametrize("module", ["gpu.tensorrt_engines", "gpu.trtllm_engine", "gpu.repository"])
def test_gpu_only_scripts_stop_here_with_a_one_line_explanation(module):
    if shutil.which("nvidia-smi"):
        pytest.skip("this machine has an NVIDIA driver")
    result = subprocess.run([sys.executable, "-m", f"reviewlens.build_engines.{module}"],
                            capture_output=True, text=True, timeout=120, cwd=REPO_ROOT)
    assert result.returncode != 0
    assert result.stdout == "" and "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "needs an NVIDIA GPU" in lines[0], result.stderr


def test_the_image_entrypoint_stops_before_tritonserver_without_a_gpu():
    if shutil.which("nvidia-smi"):
        pytest.skip("this machine has an NVIDIA driver")
    env = {**os.environ, "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])}
    result = subprocess.run(["bash", str(REPO_ROOT / "build_engines" / "gpu" / "entrypoint.sh")],
                            capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode != 0
    assert result.stderr.strip().count("\n") == 0 and result.stderr.startswith("error: "), result.stderr


def test_fill_template_fills_named_placeholders_and_leaves_the_others_to_the_backend():
    from reviewlens.build_engines.gpu.repository import fill_template

    template = 'max_batch_size: ${triton_max_batch_size}\nparameters: { key: "x" value: { string_value: "${x}" } }'
    assert fill_template(template, {"triton_max_batch_size": "64"}) == \
        'max_batch_size: 64\nparameters: { key: "x" value: { string_value: "${x}" } }'


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of Dockerfile.triton, continuation lines joined, comments dropped."""
    text = (REPO_ROOT / "Dockerfile.triton").read_text()
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    joined = "\n".join(lines).replace("\\\n", " ")
    return [tuple(line.split(None, 1)) for line in joined.splitlines() if line.strip()]


def test_the_image_copies_files_that_exist_and_are_not_docker_ignored():
    import fnmatch

    ignored = [p.strip() for p in (REPO_ROOT / ".dockerignore").read_text().splitlines()
               if p.strip() and not p.startswith("#")]

    def is_ignored(path: str) -> bool:
        return any(fnmatch.fnmatch(path, pattern) or path.startswith(pattern.rstrip("/") + "/") for pattern in ignored)

    copies = [args.split()[:-1] for instruction, args in dockerfile_instructions() if instruction == "COPY"]
    for source in (s for sources in copies for s in sources):
        assert (REPO_ROOT / source).exists(), f"Dockerfile.triton copies {source}, which is missing"
    needed = [str(artifact.source_path(variant).relative_to(REPO_ROOT))  # the engine inputs and copied files
              for artifact in artifacts.served("gpu") for variant in ENGINE_SOURCES.values()]
    needed += ["build/reports/accuracy.json", "model_repository/sentiment_tokenizer/1/model.py",
               "build_engines/gpu/entrypoint.sh"]
    assert not [path for path in needed if is_ignored(path)]
    assert all(is_ignored(path) for path in ("build/models/generator/model.gguf", "build/models/embedder/model_fp32.onnx",
                                             "model_repository/encoder/1/model.onnx", ".venv", ".venv-serve"))


def test_the_image_entrypoint_is_the_executable_script_copied_into_its_workdir():
    instructions = dict(dockerfile_instructions())
    entrypoint = json.loads(instructions["ENTRYPOINT"])[0]
    workdir = instructions["WORKDIR"]
    script = REPO_ROOT / Path(entrypoint).relative_to(workdir)
    assert script.is_file() and os.access(script, os.X_OK)
    assert instructions["USER"] != "root" and "HEALTHCHECK" in instructions
