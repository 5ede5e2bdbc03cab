"""Which built file goes where: the one table of the files the served models read.

Each row is a file a served model reads from its version directory, `<model>/1/<file>`: where the
build leaves it (build/models/<exported>/<source>) and the profiles that serve it. The CPU profile
links every "cpu" row into model_repository/ (install.py); the GPU profile links its "gpu" rows into
its repository, except TensorRT plans, which it builds on the GPU from the row's source ONNX
(gpu/repository.py, gpu/tensorrt_engines.py). The server launcher's and the tests' "built models
missing" checks read the table too.

`{variant}` in a source name is chosen by the build: for a CPU ONNX the variant the accuracy report
serves (int8, or fp32 if INT8 missed its gate); for a GPU plan the ONNX of the served precision.
"""
from dataclasses import dataclass
from pathlib import Path

from reviewlens.ensemble import interface
from reviewlens.local.paths import MODEL_REPOSITORY, MODELS_DIR

PROFILES = ("cpu", "gpu")
PLAN = "model.plan"  # a TensorRT engine: built on the GPU from its row's source, never copied


@dataclass(frozen=True)
class Artifact:
    """One built file of a served model."""
    model: str                 # the served model whose version directory holds it
    file: str                  # its name there
    exported: str              # build/models/<exported>/ holds its source
    source: str                # the source's name there; "{variant}" is filled by the build
    profiles: tuple[str, ...] = PROFILES

    @property
    def served_path(self) -> str:
        """Its path inside a model repository: "<model>/1/<file>"."""
        return f"{self.model}/1/{self.file}"

    def source_path(self, variant: str = "", models_dir: Path = MODELS_DIR) -> Path:
        """The built file it comes from (for a plan, the ONNX TensorRT builds it from)."""
        return models_dir / self.exported / self.source.format(variant=variant)


_TOKENIZERS = ((interface.SENTIMENT_TOKENIZER, "classifier"), (interface.EMBED_TOKENIZER, "embedder"))
ARTIFACTS = (
    Artifact(interface.CLASSIFIER.name, "model.onnx", "classifier", "model_{variant}.onnx", ("cpu",)),
    Artifact(interface.CLASSIFIER.name, PLAN, "classifier", "model_{variant}.onnx", ("gpu",)),
    Artifact(interface.ENCODER.name, "model.onnx", "embedder", "model_{variant}.onnx", ("cpu",)),
    Artifact(interface.ENCODER.name, PLAN, "embedder", "model_{variant}.onnx", ("gpu",)),
    *(Artifact(tokenizer.name, file, exported, file)
      for tokenizer, exported in _TOKENIZERS for file in ("tokenizer.json", "serving.json")),
    Artifact(interface.SENTIMENT_POSTPROCESS.name, "labels.json", "classifier", "labels.json"),
    # The GPU generator is TensorRT-LLM's engine, built from a Hugging Face checkpoint (gpu/trtllm_engine.py).
    Artifact(interface.GENERATOR.name, "model.gguf", "generator", "model.gguf", ("cpu",)),
)


def served(profile: str) -> tuple[Artifact, ...]:
    """The rows a profile ("cpu" or "gpu") serves."""
    if profile not in PROFILES:
        raise ValueError(f"profile must be one of {PROFILES}, not {profile!r}")
    return tuple(artifact for artifact in ARTIFACTS if profile in artifact.profiles)


def plan(exported: str) -> Artifact:
    """The TensorRT plan row of an exported model ("classifier" or "embedder")."""
    return next(a for a in served("gpu") if a.file == PLAN and a.exported == exported)


def missing_served_files(repository: Path = MODEL_REPOSITORY) -> list[str]:
    """The CPU profile's built files absent from `repository`, as "<model>/1/<file>" (empty when all are there)."""
    return [artifact.served_path for artifact in served("cpu") if not (repository / artifact.served_path).exists()]
