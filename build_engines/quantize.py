"""Two INT8 versions of each exported model: per-token INT8 for the CPU, static Q/DQ for TensorRT.

model_int8.onnx, for the CPU (served if it passes the serving gate on held-out data, evaluate.py):
  every MatMul with a constant weight runs on INT8 codes, weights symmetric per output channel,
  activations symmetric per token: each row's scale is its own max |x| / 127, computed in the
  graph, so a text's output does not depend on what it is batched or padded with (to float
  rounding in the FP32 attention: about 1e-7). ONNX Runtime's dynamic quantization, used before,
  scales a whole batch tensor at once and flipped 1.1 % of served labels with batch neighbours.
  The product is MatMulIntegerToFloat on uint8 codes (zero point 128) and int8 weights, MLAS's
  fast u8s8 kernel (s8s8 measured 5x slower here), scaled by the weight scales only; one Mul then
  applies the row scales. Not the kernel's a_scale: given per-row scales and a bias it returned
  wrong results, and ORT fuses MatMulInteger -> Cast -> Mul(a_scale * b_scale) into it, which is
  why the graph never has that pattern. The attention score and context MatMuls multiply two
  activations and stay FP32. No weight MatMul is left in FP32: per-token INT8 of all of them is
  closer to FP32 than per-batch INT8 was with the 3 most sensitive kept in FP32 (embedder mean
  cosine on the sweep reviews 0.9968 against 0.9952).

model_qdq.onnx, the TensorRT form (checked here on the CPU; building the engine needs a GPU):
  static QuantizeLinear/DequantizeLinear pairs, INT8 symmetric activations and INT8 symmetric
  per-channel weights on every MatMul and Gemm. Activation ranges are calibrated once (MinMax over
  256 train reviews) and reused by every variant tried. MiniLM's activation outliers make some
  layers lose far too much, so the most sensitive nodes are left unquantized, one by one, until
  the serving gate holds on the sweep reviews (for the classifier also 99 % agreement with FP32:
  on 256 reviews, flips in both directions cancel out in the accuracy), or a third of the nodes is
  excluded.

Sensitivity comes from a sweep: each candidate node quantized alone, ranked by its fidelity to
FP32 on 256 train reviews disjoint from calibration. quantization.json records the INT8 scheme and
its figures on the sweep reviews, and for Q/DQ the nodes left in FP32 (with the PyTorch module
they come from), the metrics after each exclusion and the sensitivity ranking.

The serving gates are defined here, as `gate`: evaluate.py applies them to held-out data to choose
INT8 or FP32 for the CPU, and the Q/DQ search aims for them on the sweep reviews.
"""
import ast
import copy
import functools
import json
import logging
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper
from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QDQQuantizer, QuantType, create_calibrator
from tqdm import tqdm

from . import cache, data, export_onnx
from .data import Sources, build_data
from .export_onnx import TokenizedTexts, build_onnx, open_session
from reviewlens.local.paths import MODELS_DIR

log = logging.getLogger(__name__)

ACCURACY_GATE_POINTS = 1.0   # classifier: accuracy at most this many points below FP32
AGREEMENT_GATE = 0.99        # classifier whose labels are not negative/positive: agreement with FP32
COSINE_GATE = 0.99           # embedder: mean cosine to FP32
INT8_LEVELS = 127            # symmetric INT8 codes -127..127, for weights and activations
ACTIVATION_ZERO_POINT = 128  # activation codes shifted into uint8, for the u8s8 kernel
SCALE_FLOOR = 1e-12          # a row or weight column of zeros still gets a usable scale
QUANTIZE_PER_ROW_OPSET = 21  # QuantizeLinear with block_size (one scale per row: a block the row's width)
QUANTIZE_PER_ROW_IR_VERSION = 10  # what opset 21 requires
QDQ_MAX_EXCLUDED_FRACTION = 1 / 3
QDQ_OP_TYPES = ["MatMul", "Gemm"]
CALIBRATION_BATCH_SIZE = 16

Quantizer = Callable[[list[str]], bytes]  # node names to quantize -> serialized model


def gate(kind: str, metrics: dict) -> dict:
    """Apply the serving gate to an INT8 variant's metrics against FP32; returns the rule, the value and "passed".

    classifier: accuracy_drop_points <= 1.0, or, when the accuracy is unknown, agreement >= 0.99
    (which bounds the drop by 1 point whatever the labels); embedder: cosine_mean >= 0.99.
    """
    if kind == "embedder":
        value = metrics["cosine_mean"]
        return {"rule": f"mean cosine to fp32 >= {COSINE_GATE}", "cosine_mean": value, "passed": value >= COSINE_GATE}
    if "accuracy_drop_points" in metrics:
        value = metrics["accuracy_drop_points"]
        return {"rule": f"accuracy at most {ACCURACY_GATE_POINTS} point below fp32",
                "accuracy_drop_points": round(value, 2), "passed": value <= ACCURACY_GATE_POINTS}
    value = metrics["agreement"]
    return {"rule": f"labels are not negative/positive: agreement with fp32 >= {AGREEMENT_GATE}",
            "agreement": value, "passed": value >= AGREEMENT_GATE}


@functools.cache
def build_quantized(sources: Sources) -> dict[str, Path]:
    """Return the cached directories {"classifier": ..., "embedder": ...} with both INT8 artifacts, building if needed.

    They are also exposed in build/models/<name>/.
    """
    data_dir = build_data(sources)
    quantized = {}
    for kind, fp32_dir in build_onnx(sources).items():
        step_dir = cache.run_step(
            f"quantize-{kind}", lambda out, kind=kind, fp32_dir=fp32_dir: quantize_model(kind, fp32_dir, data_dir, out),
            inputs=[fp32_dir, data_dir / "train.jsonl"],
            sources=[sys.modules[__name__], data, export_onnx, *export_onnx.TOKEN_PATH],
            params={"onnx": onnx.__version__, "onnxruntime": ort.__version__})
        cache.expose(step_dir, MODELS_DIR / kind)
        quantized[kind] = step_dir
    return quantized


def quantize_model(kind: str, fp32_dir: Path, data_dir: Path, out_dir: Path) -> None:
    """Write model_int8.onnx, model_qdq.onnx and quantization.json for an exported "classifier" or "embedder"."""
    model = onnx.load(fp32_dir / "model_fp32.onnx")
    sweep = _SweepSet(kind, fp32_dir, data.sweep_reviews(data_dir))
    record = {
        "sweep_reviews": sweep.batches.count,
        "int8": _per_token_int8(kind, model, sweep, out_dir / "model_int8.onnx"),
        "qdq": _static_qdq(kind, model, fp32_dir, data.calibration_texts(data_dir), sweep, out_dir / "model_qdq.onnx"),
    }
    (out_dir / "quantization.json").write_text(json.dumps(record, indent=1))


class _SweepSet:
    """Reviews that quantized variants are compared on, with the FP32 model's outputs as the reference."""

    def __init__(self, kind: str, fp32_dir: Path, reviews: list[dict]):
        self.kind = kind
        self.batches = TokenizedTexts(fp32_dir, [review["text"] for review in reviews])
        self.reference = self.batches.run(open_session(fp32_dir / "model_fp32.onnx"))
        if kind == "classifier":
            self.centred_reference = self.reference - self.reference.mean(1, keepdims=True)
            sentiment = data.sentiment_of_classes(json.loads((fp32_dir / "labels.json").read_text()))
            self.sentiment_of_class = None if sentiment is None else np.array(sentiment)
            self.labels = np.array([review["label"] for review in reviews])

    def measure(self, model: bytes) -> dict[str, float]:
        """Compare a variant with FP32: "fidelity" (1.0 = identical outputs) and the gate's metrics.

        Fidelity is the mean cosine per review for embeddings. For logits it is the cosine of the
        whole logit matrices, each row centred (softmax ignores a row's offset): the cosine of one
        review's two logits says little.
        """
        output = self.batches.run(open_session(model))
        if self.kind == "embedder":
            cosine = float(_row_cosines(output, self.reference).mean())
            return {"fidelity": cosine, "cosine_mean": cosine}
        centred = output - output.mean(1, keepdims=True)
        metrics = {"fidelity": float(_row_cosines(centred.reshape(1, -1), self.centred_reference.reshape(1, -1))[0]),
                   "agreement": float((output.argmax(1) == self.reference.argmax(1)).mean())}
        if self.sentiment_of_class is not None:
            def accuracy(logits: np.ndarray) -> float:
                return float((self.sentiment_of_class[logits.argmax(1)] == self.labels).mean())
            metrics["accuracy_drop_points"] = 100 * (accuracy(self.reference) - accuracy(output))
        return metrics


def _per_token_int8(kind: str, model: onnx.ModelProto, sweep: _SweepSet, path: Path) -> dict:
    variant = per_token_int8(model).SerializeToString()
    path.write_bytes(variant)
    onnx.checker.check_model(str(path))
    metrics = sweep.measure(variant)
    weights = {i.name for i in model.graph.initializer}
    matmuls = [n for n in model.graph.node if n.op_type == "MatMul"]
    quantized = [n.name for n in matmuls if n.input[1] in weights]
    log.info("%s int8: %d of %d MatMuls quantized (every weight MatMul); on the sweep reviews %s", kind,
             len(quantized), len(matmuls), _shown(metrics))
    return {
        "scheme": "per-token INT8: weights symmetric per output channel, activations symmetric per token "
                  "(scale from each row's max |x|), every weight MatMul",
        "quantized_nodes": len(quantized),
        "fp32_attention_matmuls": [n.name for n in matmuls if n.name not in quantized],
        "sweep": metrics,
    }


def per_token_int8(model: onnx.ModelProto) -> onnx.ModelProto:
    """Return a copy of `model` with every MatMul whose weight is an initializer computed on INT8 codes.

    X @ W becomes MatMulIntegerToFloat(codes(X), int8(W), 1, w_scale, 128) * x_scale, where per
    row of X, x_scale = max |x| / 127 and codes(X) = round(X / x_scale) + 128 (uint8: a blocked
    QuantizeLinear whose block is the whole row, hence opset 21), and per column of W,
    w_scale = max |w| / 127. An activation feeding several MatMuls (Q, K and V) is quantized once.
    Node outputs keep their names, so the rest of the graph is untouched.
    """
    model = copy.deepcopy(model)
    graph = model.graph
    weights = {i.name: i for i in graph.initializer}
    uses = {}
    for node in graph.node:
        for name in node.input:
            uses[name] = uses.get(name, 0) + 1
    shared = [numpy_helper.from_array(np.array([-1], np.int64), "per_token_last_axis"),
              numpy_helper.from_array(np.array(SCALE_FLOOR, np.float32), "per_token_scale_floor"),
              numpy_helper.from_array(np.array(1 / INT8_LEVELS, np.float32), "per_token_inverse_levels"),
              numpy_helper.from_array(np.array(ACTIVATION_ZERO_POINT, np.uint8), "per_token_zero_point"),
              numpy_helper.from_array(np.array(1.0, np.float32), "per_token_unit_scale")]
    quantized_activations: dict[str, tuple[str, str]] = {}  # activation -> (uint8 codes, row scales)
    nodes = []
    for node in graph.node:
        if node.op_type != "MatMul" or node.input[1] not in weights:
            nodes.append(node)
            continue
        activation, weight_name = node.input
        weight = numpy_helper.to_array(weights[weight_name])  # [K, N]
        if activation not in quantized_activations:
            quantize_nodes, quantized_activations[activation] = _quantize_per_token(activation, weight.shape[0])
            nodes.extend(quantize_nodes)
        codes, row_scales = quantized_activations[activation]
        weight_scale = np.maximum(np.abs(weight).max(axis=0), SCALE_FLOOR) / INT8_LEVELS
        weight_codes = np.clip(np.round(weight / weight_scale), -INT8_LEVELS, INT8_LEVELS).astype(np.int8)
        graph.initializer.extend([numpy_helper.from_array(weight_codes, f"{weight_name}_int8"),
                                  numpy_helper.from_array(weight_scale.astype(np.float32), f"{weight_name}_scale")])
        uses[weight_name] -= 1
        product = f"{node.output[0]}_before_row_scales"
        nodes.append(helper.make_node(
            "MatMulIntegerToFloat",
            [codes, f"{weight_name}_int8", "per_token_unit_scale", f"{weight_name}_scale", "per_token_zero_point"],
            [product], name=f"{node.name}_int8", domain="com.microsoft"))
        nodes.append(helper.make_node("Mul", [product, row_scales], [node.output[0]], name=f"{node.name}_row_scales"))

    unused = [i for i in graph.initializer if uses.get(i.name, 1) == 0]
    for initializer in unused:
        graph.initializer.remove(initializer)
    graph.initializer.extend(shared)
    del graph.node[:]
    graph.node.extend(nodes)
    model.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    for opset in model.opset_import:
        if opset.domain in ("", "ai.onnx"):
            opset.version = max(opset.version, QUANTIZE_PER_ROW_OPSET)
    model.ir_version = max(model.ir_version, QUANTIZE_PER_ROW_IR_VERSION)
    return model


def _quantize_per_token(activation: str, width: int) -> tuple[list[onnx.NodeProto], tuple[str, str]]:
    """Nodes turning a float activation [..., width] into uint8 codes and one scale per row ([..., 1])."""
    name = f"{activation}_per_token"
    codes, row_scales = f"{name}_codes", f"{name}_scales"
    steps = [
        ("Abs", [activation], f"{name}_abs", {}),
        ("ReduceMax", [f"{name}_abs", "per_token_last_axis"], f"{name}_max", {"keepdims": 1}),
        ("Max", [f"{name}_max", "per_token_scale_floor"], f"{name}_max_floored", {}),
        ("Mul", [f"{name}_max_floored", "per_token_inverse_levels"], row_scales, {}),
        # Blocked QuantizeLinear wants a zero point per block, in the scales' shape.
        ("Shape", [row_scales], f"{name}_scales_shape", {}),
        ("Expand", ["per_token_zero_point", f"{name}_scales_shape"], f"{name}_zero_points", {}),
        ("QuantizeLinear", [activation, row_scales, f"{name}_zero_points"], codes, {"axis": -1, "block_size": width}),
    ]
    nodes = [helper.make_node(op, inputs, [output], name=output, **attributes) for op, inputs, output, attributes in steps]
    return nodes, (codes, row_scales)


def _static_qdq(kind: str, model: onnx.ModelProto, fp32_dir: Path, calibration_texts: list[str],
                sweep: _SweepSet, path: Path) -> dict:
    ranges = _calibrate(fp32_dir, calibration_texts)
    shaped = onnx.shape_inference.infer_shapes(model)  # the quantizer needs every activation's type

    def quantize(nodes: list[str]) -> bytes:
        quantizer = QDQQuantizer(
            copy.deepcopy(shaped), per_channel=True, reduce_range=False,
            weight_qType=QuantType.QInt8, activation_qType=QuantType.QInt8, tensors_range=ranges,
            nodes_to_quantize=nodes, nodes_to_exclude=[], op_types_to_quantize=QDQ_OP_TYPES,
            extra_options={"ActivationSymmetric": True, "WeightSymmetric": True})
        quantizer.quantize_model()
        quantizer.model.topological_sort()  # Q/DQ nodes are appended; ONNX wants producers first
        return quantizer.model.model.SerializeToString()

    def good_enough(metrics: dict) -> bool:
        # On 256 reviews, flips in both directions cancel out in the accuracy: ask for agreement too.
        return gate(kind, metrics)["passed"] and (kind == "embedder" or metrics["agreement"] >= AGREEMENT_GATE)

    candidates = [n.name for n in model.graph.node if n.op_type in QDQ_OP_TYPES]

    variant, excluded, progress, ranked = _leave_out_sensitive(
        f"{kind} qdq", candidates, quantize, sweep, int(len(candidates) * QDQ_MAX_EXCLUDED_FRACTION), good_enough)
    path.write_bytes(variant)
    onnx.checker.check_model(str(path))
    return {
        "scheme": "static Q/DQ, INT8 symmetric activations (MinMax) and per-channel weights, for TensorRT",
        "calibration_reviews": len(calibration_texts),
        "quantized_nodes": len(candidates) - len(excluded),
        "excluded_nodes": _describe(model, [(n, s) for n, s in ranked if n in excluded]),
        "target": f"on the sweep reviews: {gate(kind, progress[-1])['rule']}"
                  + ("" if kind == "embedder" else f", agreement with fp32 >= {AGREEMENT_GATE}"),
        "progress": progress,
        "sensitivity": _describe(model, ranked),
    }


def _leave_out_sensitive(label: str, candidates: list[str], quantize: Quantizer, sweep: _SweepSet,
                         max_excluded: int, good_enough: Callable[[dict], bool],
                         ) -> tuple[bytes, list[str], list[dict], list[tuple[str, float]]]:
    """Quantize the candidates, leaving the most sensitive out one by one until `good_enough` holds.

    The sensitivity sweep runs only if quantizing every candidate is not good enough. Returns the
    chosen model, the excluded nodes, the metrics after each exclusion and the ranking.
    """
    excluded: list[str] = []
    ranked: list[tuple[str, float]] = []
    progress = []
    while True:
        variant = quantize([n for n in candidates if n not in excluded])
        progress.append({"excluded": len(excluded), **sweep.measure(variant)})
        met = good_enough(progress[-1])
        if met or len(excluded) >= max_excluded:
            break
        if not ranked:
            ranked = _rank_by_sensitivity(label, candidates, quantize, sweep)
        excluded.append(ranked[len(excluded)][0])
    (log.info if met else log.warning)(
        "%s: %d of %d nodes quantized; on the sweep reviews %s%s", label, len(candidates) - len(excluded),
        len(candidates), _shown(progress[-1]), "" if met else "; WARNING: target still missed at the cap of excluded nodes")
    return variant, excluded, progress, ranked


def _rank_by_sensitivity(label: str, nodes: list[str], quantize: Quantizer, sweep: _SweepSet) -> list[tuple[str, float]]:
    """Quantize each node alone; return (node, fidelity) pairs from the most to the least sensitive."""
    scores = [(node, sweep.measure(quantize([node]))["fidelity"])
              for node in tqdm(nodes, desc=f"{label} sensitivity sweep", unit="node")]
    return sorted(scores, key=lambda pair: pair[1])


class _Batches(CalibrationDataReader):
    def __init__(self, batches: TokenizedTexts):
        self._feeds = iter([feed for _, feed in batches.batches])

    def get_next(self) -> dict | None:
        return next(self._feeds, None)


def _calibrate(fp32_dir: Path, texts: list[str]):
    """Symmetric activation ranges of the MatMul/Gemm inputs over `texts`, shared by every Q/DQ variant."""
    with tempfile.TemporaryDirectory() as tmp:
        calibrator = create_calibrator(
            fp32_dir / "model_fp32.onnx", QDQ_OP_TYPES, augmented_model_path=str(Path(tmp) / "augmented.onnx"),
            calibrate_method=CalibrationMethod.MinMax, extra_options={"symmetric": True})
        calibrator.collect_data(_Batches(TokenizedTexts(fp32_dir, texts, batch_size=CALIBRATION_BATCH_SIZE)))
        return calibrator.compute_data()


def _describe(model: onnx.ModelProto, nodes: list[tuple[str, float]]) -> list[dict]:
    """Name each node with the PyTorch module it was exported from (exporter metadata) and its fidelity alone."""
    by_name = {n.name: n for n in model.graph.node}
    described = []
    for name, fidelity in nodes:
        scopes = {p.key: p.value for p in by_name[name].metadata_props}.get("pkg.torch.onnx.name_scopes")
        module = ast.literal_eval(scopes)[-2].removeprefix("model.") if scopes else ""
        described.append({"node": name, "module": module, "fidelity_alone": round(fidelity, 6)})
    return described


def _shown(metrics: dict) -> str:
    return ", ".join(f"{key} {value:.4f}" for key, value in metrics.items() if key != "excluded")


def _row_cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
