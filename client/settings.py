"""The client's configuration in one place: defaults, REVIEWLENS_* environment variables, CLI flags.

Every field can be set by an environment variable named REVIEWLENS_<FIELD> (upper case; lists are
comma-separated, an empty REVIEWLENS_REDIS_URL turns caching off); the CLI's flags override them.
"""
import os
from dataclasses import dataclass, fields, replace

from reviewlens.ensemble import interface as api

# One Redis (redis://, rediss:// with TLS, unix://) or a Redis Cluster (client/cache.py).
REDIS_CLUSTER_SCHEME = "redis+cluster://"  # then host:port[,host:port...], nodes of the cluster
REDIS_SCHEMES = ("redis://", "rediss://", "unix://", REDIS_CLUSTER_SCHEME)

# Words that turn a sentence around: a review containing one is re-checked by the generator even
# when the classifier is confident (seed 004 used "하지만" / "지만" for Korean reviews).
CONTRAST_WORDS = ("but", "however", "although", "though", "yet", "except", "하지만", "지만", "그러나")


@dataclass(frozen=True)
class Settings:
    urls: tuple[str, ...] = ("127.0.0.1:8001",)
    redis_url: str | None = "redis://127.0.0.1:6379/0"
    # Cache lifetimes: per-review sentiment/embeddings, whole entity results, generator outputs.
    review_ttl_s: int = 30 * 24 * 3600
    entity_ttl_s: int = 24 * 3600
    llm_ttl_s: int = 7 * 24 * 3600
    # Re-check by the generator below this classifier confidence, or when contrast words appear;
    # 0 turns re-checks off, the default: on the 20-movie benchmark they lift agreement with the
    # critics from 84.9 % to 86.5 % for 1.57x the cold run time (perf/results/analysis.md). 0.8 is
    # the measured setting for turning them on.
    recheck_below: float = 0.0
    contrast_words: tuple[str, ...] = CONTRAST_WORDS
    # The scripts the served classifier was trained on (Unicode names' first word): a review or
    # sentence with at least unreadable_share of its letters in other scripts is labelled by the
    # generator, re-checks on or off. The default classifier learned English only, and its uncased
    # WordPiece vocabulary has no Hangul syllable; with a multilingual checkpoint, add its scripts
    # (REVIEWLENS_CLASSIFIER_SCRIPTS=LATIN,HANGUL). On the test's Korean reviews the share is 1.0,
    # on English snippets 0.0 (perf/results/unreadable.md); 0.5 is the midpoint, for mixed texts.
    classifier_scripts: tuple[str, ...] = ("LATIN",)
    unreadable_share: float = 0.5
    # Representative reviews: top-K per polarity around the centroid, MMR trade-off (1 = relevance only).
    top_k: int = 20
    mmr_lambda: float = 0.7
    # Aspects (client/aspects.py): a sentence is an opinion when its label's confidence reaches
    # opinion_confidence; per polarity at most max_aspects aspects, each with at least
    # min_aspect_share of the entity's reviews (and 2 reviews), each quoted by evidence_quotes sentences.
    opinion_confidence: float = 0.75
    max_aspects: int = 4
    min_aspect_share: float = 0.05
    evidence_quotes: int = 3
    # Strengths and weaknesses: a rival's aspect matches when its centroid is within match_similarity
    # cosine; an aspect is clearly above the rivals when its share is at least strength_gap higher
    # and a one-sided two-proportion z-test gives p below strength_p.
    match_similarity: float = 0.6
    strength_gap: float = 0.10
    strength_p: float = 0.05
    # Names the entities in prompts ("movie", "restaurant", "product").
    entity_kind: str = "movie"
    # Entities analysed at the same time by analyze_many.
    concurrency: int = 4
    # Per gRPC call (deadline_s). A call that finds no server (UNAVAILABLE) is tried again on the
    # next URL, with jittered exponential backoff from backoff_s, for retry_window_s after its
    # first failure: long enough for a server to restart. A server found down is skipped for
    # rest_s seconds.
    deadline_s: float = 300.0  # seconds
    retry_window_s: float = 30.0
    backoff_s: float = 0.25
    rest_s: float = 5.0
    # Texts per sentiment/embed request, at most the models' max_batch_size (the server's dynamic
    # batcher merges concurrent requests), and doubtful reviews re-checked per generator call.
    batch_size: int = 64  # texts
    recheck_batch: int = 8
    # Sampling of the generator calls: greedy by default. Its answers are JSON with bounded strings
    # (labels, names of at most 4 words, a one-sentence summary), so greedy decoding's habit of
    # repeating itself has no room; sampled names changed between two runs of the same input for
    # 11 of 20 movies (perf/results/aspects.md). seed only matters when temperature > 0.
    temperature: float = 0.0
    top_p: float = 0.9
    seed: int = 7  # any integer; the same seed gives the same answers
    # Goodput: a generator call is "good" when its time to first token is below this.
    sla_ttft_s: float = 2.0  # seconds
    # Seconds between attempts to reach Redis again after it went away.
    redis_retry_s: float = 5.0
    # Where --metrics-port serves Prometheus metrics: loopback, like everything else, unless told.
    metrics_host: str = "127.0.0.1"

    @classmethod
    def from_env(cls, environ=os.environ, **overrides) -> "Settings":
        """Defaults, then REVIEWLENS_* variables, then keyword overrides (None = not given)."""
        values = {}
        for spec in fields(cls):
            raw = environ.get(f"REVIEWLENS_{spec.name.upper()}")
            if raw is not None:
                values[spec.name] = _parse(spec.name, raw, getattr(cls, spec.name))
        values.update({k: v for k, v in overrides.items() if v is not None})
        return replace(cls(), **values)

    def validate(self) -> "Settings":
        """Raise ValueError naming the first out-of-range setting."""
        checks = [
            (bool(self.urls), "urls: give at least one server URL"),
            (self.redis_url is None or self.redis_url.startswith(REDIS_SCHEMES),
             f"redis_url must start with one of {', '.join(REDIS_SCHEMES)} (or be empty: no cache), got {self.redis_url!r}"),
            (not (self.redis_url or "").startswith(REDIS_CLUSTER_SCHEME) or cluster_nodes(self.redis_url),
             f"redis_url {self.redis_url!r}: give the cluster's nodes as {REDIS_CLUSTER_SCHEME}host:port[,host:port...]"),
            (0.0 <= self.recheck_below <= 1.0, "recheck_below must be within [0, 1]"),
            (0.0 < self.unreadable_share <= 1.0, "unreadable_share must be within (0, 1]"),
            (1 <= self.top_k <= 200, "top_k must be within [1, 200]"),
            (0.0 <= self.mmr_lambda <= 1.0, "mmr_lambda must be within [0, 1]"),
            (0.5 <= self.opinion_confidence <= 1.0, "opinion_confidence must be within [0.5, 1]"),
            (1 <= self.max_aspects <= 10, "max_aspects must be within [1, 10]"),
            (0.0 <= self.min_aspect_share <= 1.0, "min_aspect_share must be within [0, 1]"),
            (1 <= self.evidence_quotes <= 3, "evidence_quotes must be within [1, 3]"),
            (-1.0 <= self.match_similarity <= 1.0, "match_similarity must be within [-1, 1]"),
            (0.0 <= self.strength_gap <= 1.0 and 0.0 < self.strength_p <= 1.0,
             "strength_gap must be within [0, 1] and strength_p within (0, 1]"),
            (self.concurrency >= 1, "concurrency must be at least 1"),
            (self.deadline_s > 0 and self.sla_ttft_s > 0, "deadline_s and sla_ttft_s must be positive"),
            (self.retry_window_s >= 0 and self.backoff_s > 0 and self.rest_s >= 0,
             "retry_window_s and rest_s must not be negative, backoff_s must be positive"),
            (1 <= self.batch_size <= api.MAX_BATCH_SIZE, f"batch_size must be within [1, {api.MAX_BATCH_SIZE}]"),
            (self.redis_retry_s > 0, "redis_retry_s must be positive"),
            (self.temperature >= 0 and 0 < self.top_p <= 1, "temperature must be >= 0 and top_p within (0, 1]"),
            (1 <= self.recheck_batch <= 32, "recheck_batch must be within [1, 32]"),
            (min(self.review_ttl_s, self.entity_ttl_s, self.llm_ttl_s) > 0, "TTLs must be positive"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)
        return self


def cluster_nodes(url: str) -> list[tuple[str, int]]:
    """(host, port) of each node in a redis+cluster:// URL; [] when one is not host:port."""
    nodes = []
    for node in url[len(REDIS_CLUSTER_SCHEME):].strip("/").split(","):
        host, _, port = node.strip().rpartition(":")
        if not host or not port.isdigit():
            return []
        nodes.append((host, int(port)))
    return nodes


def _parse(name: str, raw: str, default):
    if isinstance(default, tuple):
        return tuple(part.strip() for part in raw.split(",") if part.strip())
    if name == "redis_url":
        return raw or None
    try:
        return type(default)(raw)
    except ValueError:
        raise ValueError(f"REVIEWLENS_{name.upper()}={raw!r} is not a valid {type(default).__name__}") from None
