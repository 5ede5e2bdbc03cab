"""Aspect mining, naming checks and computed strengths (client/aspects.py), on the functions alone.

The analysis end to end, with the served models and the generator, is in tests/test_client.py.
"""
import tracemalloc

import jsonschema
import numpy as np
import pytest

from reviewlens.client import aspects, prompts
from reviewlens.client.aspects import Aspect, Profile, Quote, Sentence

RULES = dict(min_confidence=0.75, min_share=0.05, max_aspects=4, evidence=3, mmr_lambda=0.7)


def topics(seed: int, dimensions: int = 32, count: int = 3) -> np.ndarray:
    centres = np.random.default_rng(seed).normal(size=(count, dimensions))
    return centres / np.linalg.norm(centres, axis=1, keepdims=True)


def around(centre: np.ndarray, rng, spread: float = 0.08) -> np.ndarray:
    vector = centre + rng.normal(scale=spread, size=centre.shape)
    return vector / np.linalg.norm(vector)


def entity(per_topic: list[int], polarity: str = "positive", seed: int = 0):
    """Sentences about len(per_topic) topics, one review per sentence, with their embeddings."""
    rng, centres = np.random.default_rng(seed), topics(seed, count=len(per_topic))
    sentences, rows = [], []
    for topic, count in enumerate(per_topic):
        for i in range(count):
            text = f"topic{'abcdefgh'[topic]} remark number {i}."
            sentences.append(Sentence(len(sentences), 0, len(text), text, polarity, 0.9))
            rows.append(around(centres[topic], rng))
    return sentences, np.stack(rows).astype(np.float32)


def test_each_cluster_counts_its_sentences_and_reviews_and_quotes_its_own_members():
    sentences, embeddings = entity([12, 8, 5])
    clusters = aspects.clusters_of(sentences, embeddings, len(sentences), **RULES)
    assert sorted(len(c.members) for c in clusters) == [5, 8, 12]
    for cluster in clusters:
        assert len({sentences[i].text.split()[0] for i in cluster.members}) == 1   # one topic each
        assert cluster.review_ids == sorted({sentences[i].review for i in cluster.members})
        assert 1 <= len(cluster.evidence) <= 3 and set(cluster.evidence) <= set(cluster.members)
        assert abs(np.linalg.norm(cluster.centre) - 1) < 1e-5
    assert [len(c.review_ids) for c in clusters] == sorted((len(c.review_ids) for c in clusters), reverse=True)
    assert len({c.key_phrase for c in clusters}) == len(clusters)


def test_tiny_clusters_are_dropped_and_at_most_max_aspects_are_kept_per_polarity():
    sentences, embeddings = entity([30, 25, 20, 18, 16, 14, 12, 1])
    clusters = aspects.clusters_of(sentences, embeddings, len(sentences), **{**RULES, "max_aspects": 4})
    assert len(clusters) == 4 and min(len(c.review_ids) for c in clusters) >= 14
    # A one-review entity keeps its one-review aspect: the rule asks for 2 reviews only when there are 2.
    (one,) = aspects.clusters_of(sentences[:1], embeddings[:1], 1, **RULES)
    assert one.members == [0]


def test_unsure_sentences_are_not_opinions_and_polarities_are_clustered_apart():
    positive, embeddings = entity([10, 10], "positive")
    negative = [Sentence(s.review + 20, s.start, s.end, s.text, "negative", s.confidence) for s in positive]
    unsure = [Sentence(s.review + 40, s.start, s.end, s.text, "positive", 0.6) for s in positive]
    both = np.concatenate([embeddings, embeddings, embeddings])
    clusters = aspects.clusters_of([*positive, *negative, *unsure], both, 60, **RULES)
    everything = [*positive, *negative, *unsure]
    assert {c.polarity for c in clusters} == {"positive", "negative"}
    for cluster in clusters:
        assert all(everything[i].label == cluster.polarity and everything[i].confidence >= 0.75 for i in cluster.members)


def test_clustering_is_deterministic():
    sentences, embeddings = entity([9, 7, 6], seed=3)
    first = aspects.clusters_of(sentences, embeddings, len(sentences), **RULES)
    second = aspects.clusters_of(sentences, embeddings, len(sentences), **RULES)
    assert [(c.members, c.evidence, c.key_phrase) for c in first] == [(c.members, c.evidence, c.key_phrase) for c in second]


def test_an_entity_with_20000_reviews_is_clustered_in_linear_memory():
    rng, centres = np.random.default_rng(5), topics(5, dimensions=384, count=8)
    n = 60_000  # three sentences per review
    embeddings = np.stack([around(centres[i % 8], rng, 0.05) for i in range(n)]).astype(np.float32)
    sentences = [Sentence(i // 3, 0, 5, f"w{i % 8} x", "positive", 0.9) for i in range(n)]
    tracemalloc.start()
    clusters = aspects.clusters_of(sentences, embeddings, 20_000, **RULES)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert len(clusters) == 4 and sum(len(c.members) for c in clusters) <= n
    assert peak < 200 * 2 ** 20   # an n x n distance matrix alone would take 14 GB


@pytest.mark.parametrize("name, problem", [
    ("plot", None), ("Nicholson's quiet performance", None), ("", "no words"), ("  !!  ", "no words"),
    ("a very long aspect name here", "over 4 words"), ("ACTING", "the name of another aspect"),
    ("the plot drags badly", "a verbatim 4-word span of a review"), ("the plot drags a", None)])
def test_names_are_refused_when_long_copied_or_taken(name, problem):
    reviews = ["Sadly, the plot drags badly in the middle.", "Great acting."]
    assert aspects.name_problem(name, reviews, taken={"acting"}) == problem


def test_a_refused_name_falls_back_to_the_key_phrase_and_names_stay_distinct():
    sentences, embeddings = entity([10, 8])
    clusters = aspects.clusters_of(sentences, embeddings, len(sentences), **RULES)
    reviews = [s.text for s in sentences]
    named = aspects.named(clusters, ["Great", "great"], sentences, reviews, len(reviews))
    assert [a.named_by for a in named] == ["generator", "key phrase"]
    assert named[1].name == clusters[1].key_phrase and named[0].name == "Great"
    missing = aspects.named(clusters, [], sentences, reviews, len(reviews))
    assert [a.named_by for a in missing] == ["key phrase", "key phrase"]
    for aspect, cluster in zip(named, clusters):
        assert (aspect.mentions, aspect.reviews) == (len(cluster.members), len(cluster.review_ids))
        assert aspect.share == round(len(cluster.review_ids) / len(reviews), 4)
        assert all(q.text == sentences[q.review].text[q.start:q.end] for q in aspect.evidence)


def profile_and_aspect(share_reviews: int, n_reviews: int, centre: np.ndarray, polarity="positive"):
    aspect = Aspect("acting", "generator", polarity, share_reviews, share_reviews, round(share_reviews / n_reviews, 4),
                    [Quote(0, 0, 5, "Great")])
    return aspect, Profile(n_reviews, [polarity], centre[None, :], [list(range(share_reviews))])


def test_a_strength_needs_a_clear_gap_over_the_rivals_matched_by_centroid():
    centre, elsewhere = topics(1, count=2)
    aspect, own = profile_and_aspect(20, 40, centre)
    _, similar_rival = profile_and_aspect(10, 100, centre)
    _, unrelated_rival = profile_and_aspect(90, 100, elsewhere)
    rules = dict(match_similarity=0.6, gap=0.10, p_value=0.05)
    (strength,) = aspects.contrasts([aspect], own, [similar_rival, unrelated_rival], **rules)
    assert (strength.share, strength.rival_share, strength.rivals) == (0.5, 0.05, 2)
    assert strength.text == "acting: praised in 50 % of its reviews vs 5 % for the other 2"
    _, as_frequent = profile_and_aspect(45, 100, centre)
    assert aspects.contrasts([aspect], own, [as_frequent], **rules) == []          # 50 % vs 45 %: no gap
    few, few_own = profile_and_aspect(1, 2, centre)
    _, few_rival = profile_and_aspect(0, 2, centre)
    assert aspects.contrasts([few], few_own, [few_rival], **rules) == []           # 1 of 2 vs 0 of 2: not clear
    assert aspects.contrasts([aspect], own, [], **rules) == []                     # nobody to compare with


def test_names_and_summaries_are_constrained_to_the_reviews_script():
    assert prompts.language_of(["맛있어요. 가격도 괜찮아요", "Good"]) == "ko"
    assert prompts.language_of(["Great acting.", "Dull."]) == "en"
    korean = prompts.naming_schema(2, "ko")
    jsonschema.validate({"names": ["맛", "친절한 서비스"], "summary": "음식이 맛있고 직원이 친절하다."}, korean)
    for chinese in ({"names": ["菜单多样化", "맛"], "summary": "좋다."}, {"names": ["맛", "맛"], "summary": "高性价比"}):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(chinese, korean)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"names": ["acting"], "summary": "Fine."}, korean)   # exactly as many names as aspects
