"""`generator_options` step of the GPU profile's `generator` ensemble (Python backend).

max_tokens (only for its batch shape) -> RETURN_NUM_INPUT_TOKENS, RETURN_NUM_OUTPUT_TOKENS, both
true. The CPU generator always returns num_input_tokens and num_output_tokens; tensorrt_llm returns
them only when a request asks, and an ensemble cannot hold constants, so this step asks for every
request. Clients see the same outputs on both profiles.
"""
import numpy as np
import triton_python_backend_utils as pb_utils

OUTPUTS = ("RETURN_NUM_INPUT_TOKENS", "RETURN_NUM_OUTPUT_TOKENS")


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            rows = pb_utils.get_input_tensor_by_name(request, "max_tokens").as_numpy().shape[0]
            responses.append(pb_utils.InferenceResponse(
                output_tensors=[pb_utils.Tensor(name, np.ones((rows, 1), dtype=bool)) for name in OUTPUTS]))
        return responses
