"""Aspects: what an entity's reviewers praise and criticise, mined from their sentences.

Per entity and polarity, the opinion sentences (served label confident enough) are clustered on
their unit-norm embeddings with Ward linkage (squared Euclidean distance between unit vectors is
2 - 2 cos, so this is cosine clustering; deterministic, no random start) into about sqrt(n/2)
clusters, and clusters whose centroids are within MERGE_SIMILARITY are merged. Ward runs on at most
CLUSTER_SAMPLE sentences, evenly spaced in input order; with more, every sentence then joins the
nearest of those clusters' centroids, so a 20,000-review entity costs O(n k), not O(n^2).

Each cluster is an aspect: `mentions` (its sentences), `reviews` (distinct reviews), `share`
(reviews / the entity's reviews) and up to `evidence` verbatim sentences near its centroid,
diverse (MMR), with their review index and offsets. The rule for tiny clusters: an aspect needs
at least `min_aspect_share` of the entity's reviews and at least 2 reviews (1 for a one-review
entity); smaller clusters are dropped, and at most `max_aspects` per polarity are kept, most
reviews first.

Names come from the generator (one call per entity, client/prompts.py) and are checked here: at
most 4 words, not a verbatim 4-word span of a review, not the name of another aspect of the
entity. A refused or missing name falls back to the cluster's key phrase (its most distinctive
word, class-based TF-IDF against the entity's other aspects, that no other aspect took).

Strengths and weaknesses are computed: an aspect of one entity matches the same-polarity aspects
of another whose centroid is within `match_similarity` cosine; its rival share is the share of
the other entities' reviews inside a matching aspect. It is a strength (positive) or weakness
(negative) when its own share is clearly above: at least `strength_gap` higher and a one-sided
two-proportion z-test below `strength_p`.
"""
import math
import re
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
from sklearn.cluster import AgglomerativeClustering
from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

from reviewlens.client.selection import centroid, mmr

# Ward's memory and time are quadratic in its input: it sees at most this many sentences.
CLUSTER_SAMPLE = 2000
# Two clusters of one polarity whose centroids are this alike (cosine) are one topic.
MERGE_SIMILARITY = 0.8
MAX_NAME_WORDS = 4
# Distinctive words kept per cluster: shown to the generator as a hint for its name.
KEYWORDS = 3
# Words that say nothing about what is praised: review boilerplate on top of English stop words.
_BORING = frozenset(ENGLISH_STOP_WORDS | {"film", "movie", "films", "movies", "just", "really", "like", "good",
                                           "great", "bad", "best", "better", "way", "does", "make", "makes"})
# Where one polarity's word is "praised" and the other's "criticised", in texts shown to readers.
VERBS = {"positive": "praised", "negative": "criticised"}


@dataclass(frozen=True)
class Quote:
    review: int
    start: int
    end: int
    text: str


@dataclass
class Sentence:
    """One sentence of one review with its label: the served classifier's, or the generator's for a
    sentence the classifier cannot read (by_generator; confidence stays the classifier's)."""
    review: int
    start: int
    end: int
    text: str
    label: str
    confidence: float
    by_generator: bool = False

    def quote(self) -> Quote:
        return Quote(self.review, self.start, self.end, self.text)


@dataclass
class Aspect:
    name: str
    named_by: str  # "generator" or "key phrase"
    polarity: str
    mentions: int
    reviews: int
    share: float
    evidence: list[Quote]


@dataclass
class Cluster:
    """An aspect before it is named: its sentences, reviews and centre."""
    polarity: str
    members: list[int]             # indices into the entity's sentences
    review_ids: list[int]          # distinct reviews, ascending
    centre: np.ndarray             # unit-norm centroid of the members' embeddings
    evidence: list[int] = field(default_factory=list)  # sentence indices, most central first
    keywords: list[str] = field(default_factory=list)  # its most distinctive words, best first
    key_phrase: str = ""                               # the best keyword no other cluster took


def is_opinion(sentence: Sentence, min_confidence: float) -> bool:
    """A sentence labelled by the generator, or one the classifier is sure enough about, that
    counts as praise or criticism."""
    return (sentence.by_generator or sentence.confidence >= min_confidence) and bool(re.search(r"\w", sentence.text))


def clusters_of(sentences: list[Sentence], embeddings: np.ndarray, n_reviews: int, *, min_confidence: float,
                min_share: float, max_aspects: int, evidence: int, mmr_lambda: float) -> list[Cluster]:
    """The entity's aspects before naming: per polarity, clusters of its opinion sentences that pass
    the tiny-cluster rule, most reviews first; each with its evidence and key phrase."""
    min_reviews = min(max(2, math.ceil(min_share * n_reviews)), n_reviews)
    kept: list[Cluster] = []
    for polarity in VERBS:
        rows = [i for i, s in enumerate(sentences) if s.label == polarity and is_opinion(s, min_confidence)]
        if not rows:
            continue
        groups = _partition(embeddings[rows], max_aspects)
        found = []
        for group in groups:
            members = [rows[i] for i in group]
            review_ids = sorted({sentences[i].review for i in members})
            if len(review_ids) >= min_reviews:
                found.append(Cluster(polarity, members, review_ids, centroid(embeddings[members])))
        found.sort(key=lambda c: (-len(c.review_ids), -len(c.members), c.members[0]))
        kept.extend(found[:max_aspects])
    for cluster in kept:
        chosen = mmr(embeddings[cluster.members], cluster.centre, evidence, mmr_lambda)
        seen = set()
        for i in chosen:  # the same sentence written twice is shown once
            text = sentences[cluster.members[i]].text.casefold()
            if text not in seen:
                seen.add(text)
                cluster.evidence.append(cluster.members[i])
    ranked = distinctive_words([[sentences[i].text for i in c.members] for c in kept])
    taken = set()
    for number, (cluster, keywords) in enumerate(zip(kept, ranked), 1):
        cluster.keywords = keywords[:KEYWORDS]
        cluster.key_phrase = next((w for w in keywords if w not in taken), f"aspect {number}")
        taken.add(cluster.key_phrase)
    return kept


def _partition(vectors: np.ndarray, max_aspects: int) -> list[list[int]]:
    """Row groups of unit vectors: Ward on (a deterministic sample of) them, about sqrt(n/2)
    clusters and at most 3 x max_aspects (the tiny-cluster rule then keeps the largest)."""
    n = len(vectors)
    k = int(min(n, max(1, round(math.sqrt(n / 2))), 3 * max_aspects))
    if k == 1:
        return [list(range(n))]
    sample = np.unique(np.linspace(0, n - 1, min(n, CLUSTER_SAMPLE)).round().astype(int))
    labels = AgglomerativeClustering(n_clusters=k, linkage="ward").fit_predict(vectors[sample])
    if len(sample) < n:
        centres = np.stack([centroid(vectors[sample[labels == c]]) for c in range(k)])
        labels = np.argmax(vectors @ centres.T, axis=1)
    groups = [list(np.flatnonzero(labels == c)) for c in range(k) if np.any(labels == c)]
    return _merge_alike(vectors, groups)


def _merge_alike(vectors: np.ndarray, groups: list[list[int]]) -> list[list[int]]:
    """Merge the two groups whose centroids are most alike while that is MERGE_SIMILARITY or more:
    the fixed number of clusters may cut one topic in two."""
    while len(groups) > 1:
        centres = np.stack([centroid(vectors[g]) for g in groups])
        similarity = np.triu(centres @ centres.T, k=1)
        a, b = np.unravel_index(int(np.argmax(similarity)), similarity.shape)
        if similarity[a, b] < MERGE_SIMILARITY:
            break
        groups[a] = sorted(groups[a] + groups[b])
        del groups[b]
    return groups


def words(text: str) -> list[str]:
    """Lower-cased words (letters only), as names and key phrases are compared."""
    return re.findall(r"[^\W\d_]+", text.casefold())


def distinctive_words(cluster_texts: list[list[str]]) -> list[list[str]]:
    """Per cluster, its words ranked by class-based TF-IDF: frequent in the cluster, rare in the
    others (stop words and review boilerplate left out)."""
    counts = [Counter(w for text in texts for w in words(text) if w not in _BORING and len(w) > 1)
              for texts in cluster_texts]
    everywhere = sum(counts, Counter())
    mean_size = sum(sum(c.values()) for c in counts) / max(len(counts), 1)
    ranked = []
    for count in counts:
        size = sum(count.values()) or 1
        ranked.append(sorted(count, key=lambda w: (-count[w] / size * math.log(1 + mean_size / everywhere[w]), w)))
    return ranked


def name_problem(name: str, reviews: list[str], taken: set[str]) -> str | None:
    """Why a generated aspect name is refused, or None when it is fine."""
    tokens = words(name)
    if not tokens:
        return "no words"
    if len(name.split()) > MAX_NAME_WORDS:
        return f"over {MAX_NAME_WORDS} words"
    if " ".join(tokens) in taken:
        return "the name of another aspect"
    if len(tokens) >= 4 and copies_review_span(tokens, reviews):
        return "a verbatim 4-word span of a review"
    return None


def copies_review_span(tokens: list[str], reviews: list[str]) -> bool:
    """Whether 4 consecutive words of `tokens` appear consecutively in one of the reviews."""
    grams = {" ".join(tokens[i:i + 4]) for i in range(len(tokens) - 3)}
    for review in reviews:
        line = f" {' '.join(words(review))} "
        if any(f" {gram} " in line for gram in grams):
            return True
    return False


def named(clusters: list[Cluster], proposed: list[str], sentences: list[Sentence], reviews: list[str],
          n_reviews: int) -> list[Aspect]:
    """Aspects with the generator's names where they pass name_problem, else the key phrase."""
    taken: set[str] = set()
    aspects = []
    for cluster, name in zip(clusters, [*proposed, *[""] * (len(clusters) - len(proposed))]):
        name = " ".join(name.split())
        named_by = "generator"
        if name_problem(name, reviews, taken):
            name, named_by = cluster.key_phrase, "key phrase"
            if " ".join(words(name)) in taken:  # the generator took this cluster's key phrase for another
                name = f"{name} ({VERBS[cluster.polarity]})"
        taken.add(" ".join(words(name)))
        aspects.append(Aspect(name, named_by, cluster.polarity, len(cluster.members), len(cluster.review_ids),
                              round(len(cluster.review_ids) / n_reviews, 4),
                              [sentences[i].quote() for i in cluster.evidence]))
    return aspects


@dataclass
class Profile:
    """What comparing an entity with others needs: its review count and, per aspect, its centre
    and its reviews (cached with the entity's result)."""
    n_reviews: int
    polarities: list[str]
    centres: np.ndarray            # one unit-norm row per aspect
    review_ids: list[list[int]]


@dataclass(frozen=True)
class Contrast:
    """A strength or weakness: an aspect whose share is clearly above the other entities'."""
    aspect: str
    polarity: str
    share: float
    rival_share: float
    rivals: int
    text: str
    evidence: list[Quote]


def contrasts(aspects: list[Aspect], own: Profile, rivals: list[Profile], *, match_similarity: float,
              gap: float, p_value: float) -> list[Contrast]:
    """The aspects clearly more frequent for this entity than for its rivals, largest gap first."""
    rival_reviews = sum(r.n_reviews for r in rivals)
    if not rivals or not rival_reviews:
        return []
    found = []
    for index, aspect in enumerate(aspects):
        hits = 0
        for rival in rivals:
            matching = [j for j, polarity in enumerate(rival.polarities) if polarity == aspect.polarity
                        and float(own.centres[index] @ rival.centres[j]) >= match_similarity]
            hits += len(set().union(*(rival.review_ids[j] for j in matching)))
        rival_share = hits / rival_reviews
        if aspect.share - rival_share >= gap and _one_sided_p(aspect.reviews, own.n_reviews, hits, rival_reviews) < p_value:
            others = f"the other {len(rivals)}" if len(rivals) > 1 else "the other one"
            text = f"{aspect.name}: {VERBS[aspect.polarity]} in {aspect.share:.0%} of its reviews vs {rival_share:.0%} for {others}"
            found.append(Contrast(aspect.name, aspect.polarity, aspect.share, round(rival_share, 4), len(rivals),
                                  text.replace("%", " %"), aspect.evidence))
    return sorted(found, key=lambda c: c.rival_share - c.share)


def _one_sided_p(hits_a: int, n_a: int, hits_b: int, n_b: int) -> float:
    """P-value of "share a > share b" under a two-proportion z-test (pooled variance)."""
    pooled = (hits_a + hits_b) / (n_a + n_b)
    spread = math.sqrt(pooled * (1 - pooled) * (1 / n_a + 1 / n_b))
    if spread == 0:
        return 1.0
    z = (hits_a / n_a - hits_b / n_b) / spread
    return 0.5 * math.erfc(z / math.sqrt(2))
