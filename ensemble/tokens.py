"""Texts -> token rows -> padded token tensors, exactly as the served tokenizer steps make them.

The one token path: the tokenizer model (ensemble/tokenizer.py) serves it, and the build (export
check, quantization calibration, accuracy report), the tests and perf call it, so what they measure
is what the server computes. Triton-free: it needs only `tokenizers` and numpy.

A model's tokenizer files are `tokenizer.json` (a Hugging Face fast tokenizer) and `serving.json`
({"max_length": N, "pad_id": P, ...}), in an exported model directory (build/models/<model>/) or a
tokenizer step's version directory (model_repository/<tokenizer>/1/).
"""
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from tokenizers import Encoding, Tokenizer

from reviewlens.ensemble import interface
from reviewlens.ensemble.batching import pad_chunk


class ServingTokenizer:
    """A model's served tokenization: texts cut at max_length tokens, rows padded per request.

    Without length buckets (the CPU profile) a request is padded to its own longest row. With them
    (the GPU profile's `length_buckets` parameter) it is padded to the first bucket that holds its
    longest row, capped at max_length: a TensorRT plan takes no ragged input and Triton batches only
    requests of equal shape, so a few fixed widths let requests batch while wasting little compute.
    """

    def __init__(self, directory: Path, length_buckets: Sequence[int] = ()):
        serving = json.loads((directory / "serving.json").read_text())
        self.max_length = int(serving["max_length"])
        self.pad_id = int(serving["pad_id"])
        self.length_buckets = tuple(sorted(length_buckets))
        self._tokenizer = Tokenizer.from_file(str(directory / "tokenizer.json"))
        self._tokenizer.enable_truncation(self.max_length)
        self._tokenizer.no_padding()  # rows keep their own lengths until padded

    def encode(self, texts: list[str]) -> list[Encoding]:
        """One encoding per text in one Rust call: `.ids` cut at max_length, `.overflowing` non-empty if cut."""
        return self._tokenizer.encode_batch(texts)

    def rows(self, texts: list[str]) -> list[list[int]]:
        """The token ids of each text, unpadded."""
        return [encoding.ids for encoding in self.encode(texts)]

    def width(self, longest: int) -> int:
        """The width a request whose longest row has `longest` tokens is padded to."""
        if not self.length_buckets:
            return longest
        return min(next((b for b in self.length_buckets if b >= longest), self.max_length), self.max_length)

    def pad(self, rows: Sequence[Sequence[int]]) -> dict[str, np.ndarray]:
        """The token tensors of one request, by served name (input_ids, attention_mask: int64 [rows, width])."""
        padded = pad_chunk(rows, self.pad_id, self.width(max(len(row) for row in rows)))
        return {tensor.name: array for tensor, array in zip(interface.TOKENS, padded)}
