"""ONNX Runtime step of the ensembles (Python backend): `classifier` and `encoder`.

input_ids, attention_mask (int64, ragged across requests) -> the ONNX graph's single output
(`logits` for the classifier, `EMBEDDING` for the encoder: pooling and L2 normalisation are inside
the graph). The graph is `model.onnx` in the version directory, FP32 or INT8 as the build chose.
Rows from all requests of a batch are re-padded in length-sorted chunks (ensemble/batching.py).
The config's parameters rows_per_chunk and intra_op_threads (0: all cores) have no default here:
a missing one fails the load, naming it.
"""
import json
import os
from pathlib import Path

import numpy as np
import onnxruntime as ort
import triton_python_backend_utils as pb_utils

from reviewlens.ensemble import interface
from reviewlens.ensemble.batching import run_length_sorted, unpad_rows


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        version_dir = Path(args["model_repository"]) / args["model_version"]
        parameters = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        try:
            self.rows_per_chunk = int(parameters["rows_per_chunk"])
            intra_op_threads = int(parameters["intra_op_threads"])
        except KeyError as missing:
            raise pb_utils.TritonModelException(
                f"{args['model_name']}'s config.pbtxt lacks the parameter {missing.args[0]}") from None
        self.output_name = config["output"][0]["name"]

        options = ort.SessionOptions()
        # One instance per model on a small CPU: give it the cores; inter-op parallelism only
        # adds contention for a sequential transformer graph.
        # 0: every core this process may run on (its CPU affinity: taskset, a container's cpuset).
        options.intra_op_num_threads = intra_op_threads or len(os.sched_getaffinity(0))
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(str(version_dir / "model.onnx"), options, providers=["CPUExecutionProvider"])
        self.graph_output = self.session.get_outputs()[0].name
        pb_utils.Logger.log_info(
            f"{args['model_name']}: {version_dir / 'model.onnx'} with {options.intra_op_num_threads} threads")

    def _run(self, input_ids, attention_mask):
        # The exported graph's inputs carry the served tensors' names.
        return self.session.run([self.graph_output], {interface.INPUT_IDS.name: input_ids,
                                                      interface.ATTENTION_MASK.name: attention_mask})[0]

    def execute(self, requests):
        rows, sizes = [], []
        for request in requests:
            input_ids, attention_mask = (pb_utils.get_input_tensor_by_name(request, tensor.name).as_numpy()
                                         for tensor in interface.TOKENS)
            request_rows = unpad_rows(input_ids, attention_mask)
            rows.extend(request_rows)
            sizes.append(len(request_rows))
        outputs = run_length_sorted(rows, self._run, self.rows_per_chunk)

        responses, start = [], 0
        for size in sizes:
            tensor = pb_utils.Tensor(self.output_name, np.ascontiguousarray(outputs[start:start + size]))
            responses.append(pb_utils.InferenceResponse(output_tensors=[tensor]))
            start += size
        return responses
