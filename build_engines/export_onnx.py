"""Export the classifier and the embedder to ONNX, check them against PyTorch, write their serving files.

Each model directory holds:
- model_fp32.onnx: inputs `input_ids` and `attention_mask` (INT64 [batch, sequence], both axes
  dynamic); output `logits` (FP32 [batch, n_labels], classifier) or `EMBEDDING` (FP32
  [batch, dim], embedder: mean pooling over the attention mask and L2 normalisation are inside
  the graph). These are the served tensor names (ensemble/interface.py), which a TensorRT plan
  built from the graph must carry. Models that take token_type_ids get zeros made inside the graph.
- tokenizer.json (Hugging Face fast tokenizer) and serving.json {max_length, pad_id, n_labels|dim}
  for the serving tokenizer step; the classifier also has labels.json (label names in id order).

The exporter is torch.onnx.export(dynamo=True) at opset 18, with eager attention so attention is
plain MatMul/Softmax nodes that the INT8 steps can see and choose. Every export is checked as part
of the build: onnx.checker, then ONNX Runtime against PyTorch on real reviews of mixed lengths,
padded together in the same batches, and tokenized from the written tokenizer.json by the serving
tokenizer's own code (ensemble/tokens.py). A difference past tolerance fails the build.

`TokenizedTexts` (tokenize once, run any ONNX variant of a model) is shared with the quantization
and evaluation steps.
"""
import functools
import inspect
import json
import logging
import random
import sys
import warnings
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
import transformers
from transformers import AutoModel, AutoModelForSequenceClassification, AutoTokenizer

from . import cache
from .data import Sources, build_data, read_jsonl
from reviewlens.ensemble import batching, interface, tokens
from reviewlens.local.paths import MODELS_DIR
from .train_classifier import classifier_checkpoint

log = logging.getLogger(__name__)

OPSET = 18
THREADS = 2
CHECK_TEXTS = 48
CHECK_BATCH_SIZE = 16
MAX_ABS_DIFF = 1e-3
MIN_COSINE = 0.9999
TOKEN_NAMES = [tensor.name for tensor in interface.TOKENS]  # the graph's inputs are the served token tensors
# The modules that tokenize and pad: a step that runs a model on tokenized texts depends on them.
TOKEN_PATH = (tokens, batching)


class TokenizedTexts:
    """Texts tokenized and padded as the served tokenizer does (ensemble/tokens.py), in batches
    ready for ONNX Runtime.

    Length-sorted batches waste the least padding; unsorted batches mix lengths, which is what the
    export check wants.
    """

    def __init__(self, model_dir: Path, texts: list[str], batch_size: int = 32, length_sorted: bool = True):
        tokenizer = tokens.ServingTokenizer(model_dir)
        rows = tokenizer.rows(texts)
        if length_sorted:
            chunks = batching.length_sorted_chunks([len(row) for row in rows], batch_size)
        else:
            chunks = [np.arange(start, min(start + batch_size, len(rows))) for start in range(0, len(rows), batch_size)]
        self.count = len(texts)
        self.batches = [(chunk, tokenizer.pad([rows[i] for i in chunk])) for chunk in chunks]

    def run(self, session: ort.InferenceSession) -> np.ndarray:
        """Return the session's single output for every text, in the texts' order."""
        outputs = None
        for rows, feed in self.batches:
            result = session.run(None, feed)[0]
            if outputs is None:
                outputs = np.empty((self.count, *result.shape[1:]), dtype=result.dtype)
            outputs[rows] = result
        return outputs


def open_session(model: Path | bytes) -> ort.InferenceSession:
    """Open an ONNX model (a path or serialized bytes) on the CPU as the serving step does, with 2 threads."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = THREADS
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    model = str(model) if isinstance(model, Path) else model
    return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])


@functools.cache
def build_onnx(sources: Sources) -> dict[str, Path]:
    """Return the cached export directories {"classifier": ..., "embedder": ...}, exporting if needed.

    They are also exposed in build/models/<name>/.
    """
    held_out = build_data(sources) / "test.jsonl"
    checkpoint = classifier_checkpoint(sources)
    versions = {"torch": torch.__version__, "transformers": transformers.__version__,
                "onnx": onnx.__version__, "onnxruntime": ort.__version__, "opset": OPSET}
    this_module = sys.modules[__name__]
    model_dirs = {
        "classifier": cache.run_step(
            "onnx-classifier", lambda out: export_classifier(checkpoint, out, check_texts(held_out)),
            inputs=[checkpoint, held_out], sources=[this_module, *TOKEN_PATH], params=versions),
        "embedder": cache.run_step(
            "onnx-embedder", lambda out: export_embedder(sources.embedder, out, check_texts(held_out)),
            inputs=[sources.embedder, held_out], sources=[this_module, *TOKEN_PATH], params=versions),
    }
    for name, model_dir in model_dirs.items():
        cache.expose(model_dir, MODELS_DIR / name)
    return model_dirs


def check_texts(reviews_file: Path) -> list[str]:
    """Real reviews spread over the length range, plus one long text to exercise truncation, in mixed order."""
    texts = sorted((row["text"] for row in read_jsonl(reviews_file)), key=len)
    picked = [texts[round(i * (len(texts) - 1) / (CHECK_TEXTS - 1))] for i in range(CHECK_TEXTS)]
    picked.append(" ".join(texts[-40:]))
    random.Random(0).shuffle(picked)
    return picked


class ClassifierGraph(torch.nn.Module):
    """input_ids, attention_mask -> logits of a Hugging Face sequence classifier."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=input_ids, attention_mask=attention_mask,
                          **_zero_token_types(self.model, input_ids)).logits


class EmbedderGraph(torch.nn.Module):
    """input_ids, attention_mask -> L2-normalised mean of the token states under the attention mask."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        states = self.model(input_ids=input_ids, attention_mask=attention_mask,
                            **_zero_token_types(self.model, input_ids)).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(states.dtype)
        mean = (states * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
        return torch.nn.functional.normalize(mean, p=2.0, dim=1)


def export_classifier(checkpoint: Path, out_dir: Path, texts: list[str]) -> None:
    """Export a sequence-classification checkpoint with its serving files to `out_dir` and check it."""
    tokenizer = AutoTokenizer.from_pretrained(checkpoint)
    model = AutoModelForSequenceClassification.from_pretrained(checkpoint, attn_implementation="eager").eval()
    config = model.config
    max_length = min(tokenizer.model_max_length, config.max_position_embeddings)
    labels = [config.id2label[i] for i in range(config.num_labels)]
    _write_serving_files(out_dir, tokenizer, max_length, n_labels=len(labels))
    (out_dir / "labels.json").write_text(json.dumps(labels, ensure_ascii=False))
    _export(ClassifierGraph(model), tokenizer, interface.LOGITS.name, out_dir / "model_fp32.onnx")

    with torch.inference_mode():
        expected = np.concatenate([
            model(**tokenizer(texts[i:i + CHECK_BATCH_SIZE], padding=True, truncation=True,
                              max_length=max_length, return_tensors="pt")).logits.numpy()
            for i in range(0, len(texts), CHECK_BATCH_SIZE)])
    _check(out_dir, texts, expected, "classifier")
    log.info("classifier: %d labels %s, max_length %d", len(labels), labels, max_length)


def export_embedder(st_dir: Path, out_dir: Path, texts: list[str]) -> None:
    """Export a sentence-transformers model (Transformer + mean Pooling [+ Normalize]) to `out_dir` and check it."""
    transformer_dir, max_seq_length = _read_sentence_transformer(st_dir)
    tokenizer = AutoTokenizer.from_pretrained(transformer_dir)
    model = AutoModel.from_pretrained(transformer_dir, attn_implementation="eager").eval()
    max_length = min(max_seq_length, model.config.max_position_embeddings)
    _write_serving_files(out_dir, tokenizer, max_length, dim=model.config.hidden_size)
    _export(EmbedderGraph(model), tokenizer, interface.EMBEDDING.name, out_dir / "model_fp32.onnx")

    # The reference is sentence-transformers itself: this also checks the pooling and the tokenizer.
    from sentence_transformers import SentenceTransformer  # slow import, needed only here

    reference = SentenceTransformer(str(st_dir), device="cpu")
    expected = reference.encode(texts, batch_size=CHECK_BATCH_SIZE, normalize_embeddings=True, convert_to_numpy=True)
    _check(out_dir, texts, expected, "embedder")
    log.info("embedder: dim %d, max_length %d", model.config.hidden_size, max_length)


def _read_sentence_transformer(st_dir: Path) -> tuple[Path, int]:
    """Return the Transformer module's directory and max_seq_length, refusing pipelines the graph cannot express."""
    modules = json.loads((st_dir / "modules.json").read_text())
    kinds = {module["type"].rsplit(".", 1)[-1]: st_dir / module["path"] for module in modules}
    if set(kinds) - {"Transformer", "Pooling", "Normalize"} or "Pooling" not in kinds:
        raise cache.BuildError(f"{st_dir}: modules {sorted(kinds)} are not supported; the export handles Transformer + Pooling (+ Normalize)")
    pooling = json.loads((kinds["Pooling"] / "config.json").read_text())
    modes = [key for key, enabled in pooling.items() if key.startswith("pooling_mode_") and enabled]
    if modes != ["pooling_mode_mean_tokens"]:
        raise cache.BuildError(f"{st_dir}: pooling {modes} is not supported; the export does mean pooling only")
    transformer_dir = kinds["Transformer"]
    max_seq_length = json.loads((transformer_dir / "sentence_bert_config.json").read_text())["max_seq_length"]
    return transformer_dir, max_seq_length


def _zero_token_types(model: torch.nn.Module, input_ids: torch.Tensor) -> dict:
    if "token_type_ids" in inspect.signature(model.forward).parameters:
        return {"token_type_ids": torch.zeros_like(input_ids)}
    return {}


def _write_serving_files(out_dir: Path, tokenizer, max_length: int, **sizes: int) -> None:
    tokenizer.backend_tokenizer.save(str(out_dir / "tokenizer.json"))
    serving = {"max_length": max_length, "pad_id": tokenizer.pad_token_id or 0, **sizes}
    (out_dir / "serving.json").write_text(json.dumps(serving))


def _export(graph: torch.nn.Module, tokenizer, output_name: str, path: Path) -> None:
    # A padded two-row sample, so the traced graph goes through the attention-mask path.
    sample = tokenizer(["a short review", "a somewhat longer review that the first one is padded to"],
                       padding=True, return_tensors="pt")
    # Known, harmless exporter chatter: torchvision is absent (its operators are not used), and
    # both inputs share their axis names on purpose.
    logging.getLogger("torch.onnx._internal.exporter._registration").setLevel(logging.ERROR)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="# The axis name")
        warnings.filterwarnings("ignore", category=FutureWarning)
        program = torch.onnx.export(
            graph.eval(), tuple(sample[name] for name in TOKEN_NAMES), input_names=TOKEN_NAMES,
            dynamic_shapes={name: {0: "batch", 1: "sequence"} for name in TOKEN_NAMES},
            opset_version=OPSET, dynamo=True, verbose=False)
    # The exporter names values after the operators that made them, so an inner value may
    # already carry the output's name (the token lookup's "embedding"): rename clashes before naming the output.
    output = program.model.graph.outputs[0]
    for node in program.model.graph:
        for value in node.outputs:
            if value.name == output_name and value is not output:
                value.name = f"{output_name}_inner"
    output.name = output_name
    program.save(str(path), external_data=False)
    onnx.checker.check_model(str(path), full_check=True)


def _check(model_dir: Path, texts: list[str], expected: np.ndarray, name: str) -> None:
    """Fail the build if ONNX Runtime's outputs differ from PyTorch's past tolerance."""
    batches = TokenizedTexts(model_dir, texts, batch_size=CHECK_BATCH_SIZE, length_sorted=False)
    actual = batches.run(open_session(model_dir / "model_fp32.onnx"))
    max_abs_diff = float(np.abs(actual - expected).max())
    cosine = (actual * expected).sum(1) / (np.linalg.norm(actual, axis=1) * np.linalg.norm(expected, axis=1))
    log.info("%s: ONNX Runtime vs PyTorch on %d reviews: max abs diff %.2e, min cosine %.6f",
             name, len(texts), max_abs_diff, cosine.min())
    if max_abs_diff > MAX_ABS_DIFF or cosine.min() < MIN_COSINE:
        raise cache.BuildError(
            f"{name}: the ONNX export disagrees with PyTorch (max abs diff {max_abs_diff:.2e} > {MAX_ABS_DIFF:.0e} "
            f"or min cosine {cosine.min():.6f} < {MIN_COSINE}); see {model_dir}")
