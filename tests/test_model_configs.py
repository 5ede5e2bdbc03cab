"""The model repository parses with Triton's own model-config protobuf, serves the interface of
ensemble/interface.py and is wired consistently.

The configs are written by hand: these tests are what keeps them and interface.py together."""
import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from reviewlens.ensemble import interface
from reviewlens.local.paths import MODEL_REPOSITORY

CONFIG_PATHS = sorted(MODEL_REPOSITORY.glob("*/config.pbtxt"))


def load(path) -> model_config_pb2.ModelConfig:
    return text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())


def configs() -> dict[str, model_config_pb2.ModelConfig]:
    return {path.parent.name: load(path) for path in CONFIG_PATHS}


@pytest.mark.parametrize("path", CONFIG_PATHS, ids=lambda p: p.parent.name)
def test_config_parses_and_names_its_folder(path):
    assert load(path).name == path.parent.name


def served_tensors(tensors) -> list[interface.Tensor]:
    """A config's inputs or outputs as interface.py writes them (BYTES for TYPE_STRING, dims without the batch)."""
    return [interface.Tensor(t.name, model_config_pb2.DataType.Name(t.data_type).removeprefix("TYPE_")
                             .replace("STRING", "BYTES"), tuple(t.dims), getattr(t, "optional", False))
            for t in tensors]


def test_the_repository_holds_the_models_of_interface_py():
    assert set(configs()) == {model.name for model in interface.CPU_MODELS}


@pytest.mark.parametrize("model", interface.CPU_MODELS, ids=lambda model: model.name)
def test_each_config_has_the_tensors_interface_py_defines(model):
    config = configs()[model.name]
    assert served_tensors(config.input) == list(model.inputs)
    assert served_tensors(config.output) == list(model.outputs)


def test_text_models_take_up_to_max_batch_size_texts_per_request():
    text_models = [m for m in configs().values() if m.name != interface.GENERATOR.name]
    assert {m.max_batch_size for m in text_models} == {interface.MAX_BATCH_SIZE}


def test_ensemble_steps_read_tensors_that_exist_and_make_every_output():
    for ensemble in (m for m in configs().values() if m.platform == "ensemble"):
        available = {i.name for i in ensemble.input}
        for step in ensemble.ensemble_scheduling.step:
            assert set(step.input_map.values()) <= available, f"{step.model_name} reads a tensor no earlier step makes"
            available |= set(step.output_map.values())
        assert {o.name for o in ensemble.output} <= available, ensemble.name


def test_ensemble_steps_match_the_composing_models_tensors():
    models = configs()
    for ensemble in (m for m in models.values() if m.platform == "ensemble"):
        for step in ensemble.ensemble_scheduling.step:
            composing = models[step.model_name]
            assert set(step.input_map) == {i.name for i in composing.input}, step.model_name
            assert set(step.output_map) <= {o.name for o in composing.output}, step.model_name
            assert composing.max_batch_size >= ensemble.max_batch_size, step.model_name


def test_every_batching_python_model_has_a_rejecting_queue_policy():
    for model in configs().values():
        if model.HasField("dynamic_batching"):
            policy = model.dynamic_batching.default_queue_policy
            assert policy.max_queue_size > 0 and policy.timeout_action == model_config_pb2.ModelQueuePolicy.REJECT


def test_ensembles_use_the_response_cache():
    assert all(m.response_cache.enable for m in configs().values() if m.platform == "ensemble")


def test_ensemble_interfaces():
    models = configs()
    assert [i.name for i in models["sentiment"].input] == ["TEXT"]
    assert [o.name for o in models["sentiment"].output] == ["LABEL", "CONFIDENCE", "PROBS", "TRUNCATED"]
    assert [o.name for o in models["embed"].output] == ["EMBEDDING", "TRUNCATED"]


# The generator's tensors carry tensorrtllm_backend's ensemble names and types, so a TensorRT-LLM
# ensemble can replace it without touching clients.
GENERATOR_INPUTS = {
    "text_input": model_config_pb2.TYPE_STRING, "max_tokens": model_config_pb2.TYPE_INT32,
    "temperature": model_config_pb2.TYPE_FP32, "top_k": model_config_pb2.TYPE_INT32,
    "top_p": model_config_pb2.TYPE_FP32, "random_seed": model_config_pb2.TYPE_UINT64,
    "repetition_penalty": model_config_pb2.TYPE_FP32, "presence_penalty": model_config_pb2.TYPE_FP32,
    "frequency_penalty": model_config_pb2.TYPE_FP32,
    "stop_words": model_config_pb2.TYPE_STRING, "stream": model_config_pb2.TYPE_BOOL,
    "guided_decoding_guide_type": model_config_pb2.TYPE_STRING,
    "guided_decoding_guide": model_config_pb2.TYPE_STRING,
}


def test_generator_exposes_the_tensorrt_llm_interface():
    generator = configs()["generator"]
    assert {i.name: i.data_type for i in generator.input} == GENERATOR_INPUTS
    assert [i.name for i in generator.input if not i.optional] == ["text_input", "max_tokens"]
    assert {o.name for o in generator.output} >= {"text_output"}
    assert generator.model_transaction_policy.decoupled
    assert generator.dynamic_batching.priority_levels >= 2
