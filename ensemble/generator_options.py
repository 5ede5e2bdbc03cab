"""`generator_options` step of the GPU profile's `generator` ensemble (Python backend).

max_tokens (only for its batch shape) -> RETURN_NUM_INPUT_TOKENS, RETURN_NUM_OUTPUT_TOKENS, both
true. The CPU generator always returns num_input_tokens and num_output_tokens; tensorrt_llm returns
them only when a request asks, and an ensemble cannot hold constants, so this step asks for every
request. Clients see the same outputs on both profiles. The outputs are the ones its config names.
"""
import json

import numpy as np
import triton_python_backend_utils as pb_utils

from reviewlens.ensemble import interface


class TritonPythonModel:
    def initialize(self, args):
        self.outputs = [output["name"] for output in json.loads(args["model_config"])["output"]]

    def execute(self, requests):
        responses = []
        for request in requests:
            rows = pb_utils.get_input_tensor_by_name(request, interface.MAX_TOKENS.name).as_numpy().shape[0]
            responses.append(pb_utils.InferenceResponse(
                output_tensors=[pb_utils.Tensor(name, np.ones((rows, 1), dtype=bool)) for name in self.outputs]))
        return responses
