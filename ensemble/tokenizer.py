"""Tokenizer step of the `sentiment` and `embed` ensembles (Python backend).

TEXT (UTF-8 bytes, one review per batch row) -> input_ids, attention_mask (int64, padded to the
request's longest text; with the config parameter `length_buckets`, as on the GPU profile, to the
next of those lengths, capped at max_length) and TRUNCATED (bool: the text had more tokens than
the model's maximum and was cut; the rest of the text is ignored). Bad texts fail their own
request with a message naming the row; other requests in the same batch are unaffected.

Reads `tokenizer.json` (a Hugging Face fast tokenizer) and `serving.json` ({"max_length": N,
"pad_id": P}) from its version directory.
"""
import json
from pathlib import Path

import numpy as np
import triton_python_backend_utils as pb_utils
from tokenizers import Tokenizer

from reviewlens.ensemble.batching import bucket_width

MAX_TEXT_BYTES = 1_000_000


def decode_texts(raw: np.ndarray, name: str = "TEXT") -> list[str]:
    """Decode a BYTES tensor into strings, raising ValueError naming the tensor and its first bad row."""
    texts = []
    for row, value in enumerate(raw.reshape(-1)):
        if len(value) > MAX_TEXT_BYTES:
            raise ValueError(f"{name}[{row}] is {len(value):,} bytes; the limit is {MAX_TEXT_BYTES:,}")
        try:
            text = value.decode("utf-8")
        except UnicodeDecodeError as err:
            raise ValueError(f"{name}[{row}] is not valid UTF-8: byte 0x{value[err.start]:02x} at offset {err.start}") from None
        if not text.strip():
            raise ValueError(f"{name}[{row}] is empty")
        texts.append(text)
    return texts


class TritonPythonModel:
    def initialize(self, args):
        version_dir = Path(args["model_repository"]) / args["model_version"]
        parameters = json.loads(args["model_config"]).get("parameters", {})
        buckets = parameters.get("length_buckets", {}).get("string_value", "")
        self.length_buckets = tuple(int(b) for b in buckets.split(",") if b.strip())
        settings = json.loads((version_dir / "serving.json").read_text())
        self.max_length = int(settings["max_length"])
        self.pad_id = int(settings.get("pad_id", 0))
        self.tokenizer = Tokenizer.from_file(str(version_dir / "tokenizer.json"))
        self.tokenizer.enable_truncation(self.max_length)
        self.tokenizer.no_padding()
        self.truncated_total = 0
        padding = f"length buckets {self.length_buckets}" if self.length_buckets else "padded per request"
        pb_utils.Logger.log_info(f"{args['model_name']}: max_length {self.max_length}, pad id {self.pad_id}, {padding}")

    def execute(self, requests):
        # Validate each request on its own, then tokenize every valid text in one Rust call.
        texts_per_request, errors = [], {}
        for i, request in enumerate(requests):
            try:
                texts_per_request.append(decode_texts(pb_utils.get_input_tensor_by_name(request, "TEXT").as_numpy()))
            except ValueError as err:
                errors[i] = str(err)
                texts_per_request.append([])
        encodings = iter(self.tokenizer.encode_batch([t for texts in texts_per_request for t in texts]))

        responses = []
        for i, texts in enumerate(texts_per_request):
            if i in errors:
                responses.append(pb_utils.InferenceResponse(error=pb_utils.TritonError(errors[i], pb_utils.TritonError.INVALID_ARG)))
                continue
            batch = [next(encodings) for _ in texts]
            responses.append(self._response(batch))
        return responses

    def _response(self, batch):
        width = max(len(e.ids) for e in batch)
        if self.length_buckets:
            width = bucket_width(width, self.length_buckets, self.max_length)
        input_ids = np.full((len(batch), width), self.pad_id, dtype=np.int64)
        attention_mask = np.zeros((len(batch), width), dtype=np.int64)
        for row, encoding in enumerate(batch):
            input_ids[row, :len(encoding.ids)] = encoding.ids
            attention_mask[row, :len(encoding.ids)] = 1
        truncated = np.array([[bool(e.overflowing)] for e in batch])
        if truncated.any():
            self.truncated_total += int(truncated.sum())
            pb_utils.Logger.log_warn(
                f"{int(truncated.sum())} text(s) cut to {self.max_length} tokens "
                f"({self.truncated_total} since start)")
        return pb_utils.InferenceResponse(output_tensors=[
            pb_utils.Tensor("input_ids", input_ids),
            pb_utils.Tensor("attention_mask", attention_mask),
            pb_utils.Tensor("TRUNCATED", truncated),
        ])
