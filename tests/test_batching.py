"""Tokenizing and padding as the tokenizer step does (ensemble/tokens.py), and re-padding of ragged
token batches in the ONNX models (ensemble/batching.py)."""
import json

import numpy as np
import pytest
from tokenizers import Tokenizer, models, pre_tokenizers

from reviewlens.ensemble import interface
from reviewlens.ensemble.batching import length_sorted_chunks, pad_chunk, run_length_sorted, unpad_rows
from reviewlens.ensemble.tokens import ServingTokenizer


@pytest.fixture
def model_dir(tmp_path):
    """A served model's tokenizer files: one token per word, max_length 6, pad id 9."""
    vocab = {word: i for i, word in enumerate("a b c d e f g h [UNK] [PAD]".split())}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.save(str(tmp_path / "tokenizer.json"))
    (tmp_path / "serving.json").write_text(json.dumps({"max_length": 6, "pad_id": 9}))
    return tmp_path


def test_a_request_is_padded_to_its_longest_text(model_dir):
    tokenizer = ServingTokenizer(model_dir)
    padded = tokenizer.pad(tokenizer.rows(["a b c", "d"]))
    assert padded[interface.INPUT_IDS.name].tolist() == [[0, 1, 2], [3, 9, 9]]
    assert padded[interface.ATTENTION_MASK.name].tolist() == [[1, 1, 1], [1, 0, 0]]


def test_a_text_is_cut_at_max_length_and_says_so(model_dir):
    short, long = ServingTokenizer(model_dir).encode(["a b", "a b c d e f g h"])
    assert long.ids == [0, 1, 2, 3, 4, 5] and long.overflowing
    assert not short.overflowing


def test_with_length_buckets_a_request_is_padded_to_the_next_bucket_capped_at_max_length(model_dir):
    tokenizer = ServingTokenizer(model_dir, length_buckets=(4, 2))
    assert [tokenizer.width(longest) for longest in range(1, 7)] == [2, 2, 4, 4, 6, 6]
    assert tokenizer.pad(tokenizer.rows(["a b c"]))[interface.INPUT_IDS.name].tolist() == [[0, 1, 2, 9]]


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
