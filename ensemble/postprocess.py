"""Postprocess step of the `sentiment` ensemble (Python backend).

logits [n_labels] -> PROBS (softmax), CONFIDENCE (the top probability) and LABEL (its name from
`labels.json` in the version directory, written by the build from the checkpoint's id2label).
"""
import json
from pathlib import Path

import numpy as np
import triton_python_backend_utils as pb_utils

from reviewlens.ensemble import interface


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


class TritonPythonModel:
    def initialize(self, args):
        version_dir = Path(args["model_repository"]) / args["model_version"]
        self.labels = np.array([name.encode() for name in json.loads((version_dir / "labels.json").read_text())], dtype=object)

    def execute(self, requests):
        responses = []
        for request in requests:
            logits = pb_utils.get_input_tensor_by_name(request, interface.LOGITS.name).as_numpy()
            probs = softmax(logits.astype(np.float32))
            best = probs.argmax(axis=1)
            responses.append(pb_utils.InferenceResponse(output_tensors=[
                pb_utils.Tensor(interface.LABEL.name, self.labels[best].reshape(-1, 1)),
                pb_utils.Tensor(interface.CONFIDENCE.name, probs.max(axis=1, keepdims=True)),
                pb_utils.Tensor(interface.PROBS.name, probs),
            ]))
        return responses
