"""Re-padding of ragged token batches (ensemble/batching.py)."""
import numpy as np

from reviewlens.ensemble.batching import length_sorted_chunks, pad_chunk, run_length_sorted, unpad_rows


def test_unpad_rows_drops_padding_and_keeps_one_token_of_an_empty_mask():
    ids = np.array([[5, 6, 0], [7, 0, 0], [0, 0, 0]])
    mask = np.array([[1, 1, 0], [1, 0, 0], [0, 0, 0]])
    assert [r.tolist() for r in unpad_rows(ids, mask)] == [[5, 6], [7], [0]]


def test_chunks_group_rows_of_similar_length():
    chunks = length_sorted_chunks([5, 1, 9, 2, 8], rows_per_chunk=2)
    assert [c.tolist() for c in chunks] == [[1, 3], [0, 4], [2]]


def test_pad_chunk_pads_to_the_longest_row():
    ids, mask = pad_chunk([np.array([1, 2, 3]), np.array([4])], pad_id=9)
    assert ids.tolist() == [[1, 2, 3], [4, 9, 9]]
    assert mask.tolist() == [[1, 1, 1], [1, 0, 0]]


def test_outputs_come_back_in_the_original_order():
    rows = [np.arange(n) for n in (4, 1, 3, 2, 5)]
    widths = []

    def run(ids, mask):
        widths.append(ids.shape[1])
        return mask.sum(axis=1, keepdims=True)

    assert run_length_sorted(rows, run, rows_per_chunk=2).ravel().tolist() == [4, 1, 3, 2, 5]
    assert widths == [2, 4, 5]
