"""Tokenizer step of the `sentiment` and `embed` ensembles (Python backend).

TEXT (UTF-8 bytes, one review per batch row) -> input_ids, attention_mask (int64, padded to the
request's longest text; with the config parameter `length_buckets`, as on the GPU profile, to the
next of those lengths, capped at max_length) and TRUNCATED (bool: the text had more tokens than
the model's maximum and was cut; the rest of the text is ignored). Bad texts fail their own
request with a message naming the row; other requests in the same batch are unaffected.

Tokenizing and padding are ensemble/tokens.py's (the build, the tests and perf call the same
code); it reads `tokenizer.json` and `serving.json` from this model's version directory.
"""
import json
from pathlib import Path

import numpy as np
import triton_python_backend_utils as pb_utils

from reviewlens.ensemble import interface
from reviewlens.ensemble.tokens import ServingTokenizer


def decode_texts(raw: np.ndarray, name: str = interface.TEXT.name) -> list[str]:
    """Decode a BYTES tensor into strings, raising ValueError naming the tensor and its first bad row."""
    texts = []
    for row, value in enumerate(raw.reshape(-1)):
        if len(value) > interface.MAX_TEXT_BYTES:
            raise ValueError(f"{name}[{row}] is {len(value):,} bytes; the limit is {interface.MAX_TEXT_BYTES:,}")
        try:
            text = value.decode("utf-8")
        except UnicodeDecodeError as err:
            raise ValueError(f"{name}[{row}] is not valid UTF-8: byte 0x{value[err.start]:02x} at offset {err.start}") from None
        if interface.is_blank(text):
            raise ValueError(f"{name}[{row}] is empty" + (" (only control or format characters)" if text.strip() else ""))
        texts.append(text)
    return texts


class TritonPythonModel:
    def initialize(self, args):
        parameters = json.loads(args["model_config"]).get("parameters", {})
        # Only the GPU profile's config has length buckets (a TensorRT plan takes no ragged input).
        buckets = parameters.get("length_buckets")
        self.tokenizer = ServingTokenizer(
            Path(args["model_repository"]) / args["model_version"],
            tuple(int(b) for b in buckets["string_value"].split(",")) if buckets else ())
        self.truncated_total = 0
        padding = f"length buckets {self.tokenizer.length_buckets}" if buckets else "padded per request"
        pb_utils.Logger.log_info(f"{args['model_name']}: max_length {self.tokenizer.max_length}, "
                                 f"pad id {self.tokenizer.pad_id}, {padding}")

    def execute(self, requests):
        # Validate each request on its own, then tokenize every valid text in one Rust call.
        texts_per_request, errors = [], {}
        for i, request in enumerate(requests):
            try:
                texts_per_request.append(decode_texts(
                    pb_utils.get_input_tensor_by_name(request, interface.TEXT.name).as_numpy()))
            except ValueError as err:
                errors[i] = str(err)
                texts_per_request.append([])
        encodings = iter(self.tokenizer.encode([t for texts in texts_per_request for t in texts]))

        responses = []
        for i, texts in enumerate(texts_per_request):
            if i in errors:
                responses.append(pb_utils.InferenceResponse(error=pb_utils.TritonError(errors[i], pb_utils.TritonError.INVALID_ARG)))
                continue
            batch = [next(encodings) for _ in texts]
            responses.append(self._response(batch))
        return responses

    def _response(self, batch):
        tokens = self.tokenizer.pad([e.ids for e in batch])
        truncated = np.array([[bool(e.overflowing)] for e in batch])
        if truncated.any():
            self.truncated_total += int(truncated.sum())
            pb_utils.Logger.log_warn(
                f"{int(truncated.sum())} text(s) cut to {self.tokenizer.max_length} tokens "
                f"({self.truncated_total} since start)")
        return pb_utils.InferenceResponse(output_tensors=[
            *(pb_utils.Tensor(name, array) for name, array in tokens.items()),
            pb_utils.Tensor(interface.TRUNCATED.name, truncated),
        ])
