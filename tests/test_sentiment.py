"""The `sentiment` ensemble over gRPC."""
from concurrent.futures import ThreadPoolExecutor

import pytest

from reviewlens.client.sync import SyncClient
from reviewlens.ensemble import interface as api

POSITIVE = ["A triumph: moving, funny and beautifully acted. One of the best films of the year.",
            "Smart, warm and wonderfully made; I loved every minute of it."]
NEGATIVE = ["A dull, lifeless mess with a script so bad it is painful to sit through.",
            "Boring, badly acted and far too long. A complete waste of time."]


def test_clear_reviews_get_the_right_label(models):
    results = models.sentiment(POSITIVE + NEGATIVE)
    assert [r.label for r in results] == ["positive"] * 2 + ["negative"] * 2
    assert all(r.confidence > 0.5 for r in results)


def test_probabilities_are_a_distribution_and_confidence_is_their_max(models):
    for result in models.sentiment(POSITIVE + NEGATIVE):
        assert len(result.probs) == 2
        assert sum(result.probs) == pytest.approx(1.0, abs=1e-5)
        assert result.confidence == pytest.approx(max(result.probs))


def test_a_batch_of_64_equals_64_single_requests(models, review_texts):
    texts = review_texts[:64]
    batched = models.sentiment(texts)
    single = [models.sentiment([t])[0] for t in texts]
    assert [b.label for b in batched] == [s.label for s in single]
    # INT8 scales each token by itself; what remains is float rounding in the FP32 attention over
    # a batch's padding (about 1e-7).
    for b, s in zip(batched, single):
        assert b.probs == pytest.approx(s.probs, abs=1e-5)


def test_concurrent_clients_get_their_own_answers(triton, review_texts):
    texts = review_texts[64:128]
    expected = [r.label for r in SyncClient(triton.grpc_url).sentiment(texts)]

    def classify(start):
        client = SyncClient(triton.grpc_url)
        return start, [r.label for r in client.sentiment(texts[start:start + 8])]

    with ThreadPoolExecutor(8) as pool:
        for start, labels in pool.map(classify, range(0, 64, 8)):
            assert labels == expected[start:start + 8]


@pytest.mark.parametrize("text", [
    "이 식당 음식이 정말 맛있어요! 또 올게요",
    "Loved it 😍🍿🎬 — best popcorn flick of the summer",
    "Mixed scripts: 映画 фильм película فيلم 영화 🎥",
])
def test_korean_emoji_and_mixed_script_round_trip(models, text):
    [result] = models.sentiment([text])
    assert result.label in ("positive", "negative")
    assert not result.truncated


def test_identical_requests_are_answered_from_the_response_cache(models, grpc):
    text = ["A cache-friendly review that is sent twice, word for word."]
    before = grpc.get_inference_statistics(api.SENTIMENT.name).model_stats[0].inference_stats.cache_hit.count
    first, second = models.sentiment(text), models.sentiment(text)
    after = grpc.get_inference_statistics(api.SENTIMENT.name).model_stats[0].inference_stats.cache_hit.count
    assert first == second
    assert after == before + 1
