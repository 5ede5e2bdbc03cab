"""Padding of token rows: pad_chunk for the tokenizer (ensemble/tokens.py), re-padding of ragged
batches for the ONNX-running models.

Triton's dynamic batcher hands a Python-backend model a list of requests, each padded only to
its own longest text (the inputs allow ragged batching). Padding every row to the longest row of
the whole batch wastes compute on short reviews, so the rows are sorted by real length and run in
chunks that are each padded to their own longest row (see perf/padding_strategies.py for the
measurement that chose this).
"""
from collections.abc import Sequence

import numpy as np


def unpad_rows(input_ids: np.ndarray, attention_mask: np.ndarray) -> list[np.ndarray]:
    """Split a padded [rows, length] batch into one token array per row, padding dropped.

    A row whose mask is all zeros (Triton's zero-data warm-up) keeps one token so it still runs.
    """
    lengths = np.maximum(attention_mask.sum(axis=1), 1)
    return [ids[:n] for ids, n in zip(input_ids, lengths)]


def length_sorted_chunks(lengths: list[int], rows_per_chunk: int) -> list[np.ndarray]:
    """Row indices grouped into chunks of similar length, shortest first."""
    order = np.argsort(lengths, kind="stable")
    return [order[i:i + rows_per_chunk] for i in range(0, len(order), rows_per_chunk)]


def pad_chunk(rows: Sequence[Sequence[int]], pad_id: int = 0, width: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Pad token rows to `width`, by default the chunk's longest row: (input_ids, attention_mask), int64."""
    width = width or max(len(r) for r in rows)
    input_ids = np.full((len(rows), width), pad_id, dtype=np.int64)
    attention_mask = np.zeros((len(rows), width), dtype=np.int64)
    for i, row in enumerate(rows):
        input_ids[i, :len(row)] = row
        attention_mask[i, :len(row)] = 1
    return input_ids, attention_mask


def run_length_sorted(rows: list[np.ndarray], run, rows_per_chunk: int) -> np.ndarray:
    """Run `run(input_ids, attention_mask) -> [n, ...]` over rows in length-sorted chunks and
    return the outputs in the rows' original order."""
    chunks = length_sorted_chunks([len(r) for r in rows], rows_per_chunk)
    outputs = None
    for chunk in chunks:
        result = run(*pad_chunk([rows[i] for i in chunk]))
        if outputs is None:
            outputs = np.empty((len(rows),) + result.shape[1:], dtype=result.dtype)
        outputs[chunk] = result
    return outputs
