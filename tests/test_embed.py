"""The `embed` ensemble over gRPC."""
import numpy as np


def test_embeddings_have_the_model_dimension_and_unit_norm(models):
    embeddings = models.embed(["first review", "a second, somewhat longer review of the same film"])
    assert embeddings.shape == (2, 384)
    assert embeddings.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(embeddings, axis=1), 1.0, atol=1e-4)


def test_a_paraphrase_is_closer_than_an_unrelated_text(models):
    anchor, paraphrase, unrelated = models.embed([
        "The acting was superb and the story kept me gripped.",
        "Brilliant performances and a plot that held my attention throughout.",
        "The parking lot behind the stadium is closed on Sundays.",
    ])
    assert anchor @ paraphrase > anchor @ unrelated + 0.2


def test_batched_and_single_embeddings_agree(models, review_texts):
    texts = review_texts[:16]
    batched = models.embed(texts)
    single = np.concatenate([models.embed([t]) for t in texts])
    # INT8 scales each token by itself; what remains is float rounding in the FP32 attention over
    # a batch's padding (about 1e-7).
    np.testing.assert_allclose(batched, single, atol=1e-5)


def test_a_text_embeds_the_same_beside_a_much_longer_one(models, review_texts):
    text = min(review_texts[:64], key=len)
    long_neighbour = " ".join(review_texts[:40])  # padded to the tokenizer's max_length
    alone = models.embed([text])
    beside = models.embed([text, long_neighbour])[:1]
    np.testing.assert_allclose(beside, alone, atol=1e-5)
