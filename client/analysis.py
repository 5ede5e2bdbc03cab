"""Review analysis of entities over Triton: the library backend services call.

    async with Analyzer(Settings.from_env()) as analyzer:
        results = await analyzer.analyze_many([Entity("m1", ["Great cast.", ...]), ...])

Per entity: the cached whole result if nothing changed; else sentiment of every review (cached per
review), a generator re-check of the doubtful ones, embeddings (cached per review), per polarity
the centroid and a diverse top-K of representative reviews (MMR), then two JSON-constrained
generator calls built from the top-K only: the summary, and the strengths against the other
entities of the same call (the reviews most typical of this entity and least like the others').
`SyncAnalyzer` (client/sync.py) runs the same calls for code without an event loop.
"""
import asyncio
import json
import logging
import re
import time
from collections.abc import Awaitable
from dataclasses import asdict, dataclass, field, replace

import numpy as np

from reviewlens.client import prompts, wire
from reviewlens.client.cache import Cache, content_hash, decode_sentiment, encode_sentiment
from reviewlens.client.metrics import ClientMetrics, LLMCall
from reviewlens.client.selection import centroid, distinctive, mmr
from reviewlens.client.settings import Settings
from reviewlens.client.transport import TritonPool
from reviewlens.client.wire import GenerationParams
from reviewlens.ensemble import interface as api

log = logging.getLogger("reviewlens.client")

# The version of EntityAnalysis's JSON, part of every whole-entity cache key: a result cached
# before its schema changed is never served after the change. Bump it with any field change.
RESULT_SCHEMA_VERSION = 2
# Rounding each review's label confidence and similarity keeps results readable.
DIGITS = 4


def is_doubtful(text: str, confidence: float, settings: Settings) -> bool:
    """Re-check rule: low classifier confidence, or a word that turns the sentence around (matched
    as a whole word in English; as a substring for Korean endings such as "지만")."""
    words = set(re.findall(r"\w+", text.lower()))
    contrast = any(w in words if w.isascii() else w in text for w in settings.contrast_words)
    return confidence < settings.recheck_below or contrast


@dataclass(frozen=True)
class Entity:
    entity_id: str
    reviews: list[str]
    name: str | None = None

    def validate(self) -> "Entity":
        if not self.entity_id:
            raise ValueError("entity_id is empty")
        if not self.reviews:
            raise ValueError(f"entity {self.entity_id!r} has no reviews")
        for index, text in enumerate(self.reviews):
            if not isinstance(text, str) or api.is_blank(text):
                raise ValueError(f"entity {self.entity_id!r}: review {index} is empty")
            # The server refuses it too; checked here so the entity is named before any request.
            if len(text.encode("utf-8")) > api.MAX_TEXT_BYTES:
                raise ValueError(f"entity {self.entity_id!r}: review {index} is over {api.MAX_TEXT_BYTES:,} bytes")
        return self


@dataclass
class ReviewSentiment:
    text: str
    label: str
    confidence: float
    rechecked: bool  # the generator decided the label (doubtful classifier result)


@dataclass
class EntityAnalysis:
    entity_id: str
    entity_name: str | None
    reviews: list[ReviewSentiment]
    sentiment_ratio: dict[str, float]        # share of reviews per label
    representative: dict[str, list[str]]     # per label, top-K reviews quoted verbatim
    summary: dict[str, list[str]]            # "positive" / "negative" aspects
    strengths: list[str]
    metrics: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> "EntityAnalysis":
        return cls(**{**data, "reviews": [ReviewSentiment(**r) for r in data["reviews"]]})


@dataclass
class _Prepared:
    entity: Entity
    sentiments: list[ReviewSentiment]
    embeddings: np.ndarray
    centroids: dict[str, np.ndarray]
    counts: dict = field(default_factory=dict)


class Analyzer:
    """One client session: a pool of Triton servers, a Redis cache and metrics."""

    def __init__(self, settings: Settings, metrics: ClientMetrics | None = None):
        self.settings = settings.validate()
        self.metrics = metrics or ClientMetrics()
        self.pool: TritonPool | None = None
        self.cache: Cache | None = None
        self.versions: dict[str, str] = {}
        self.chat_template = None
        self._semaphore = asyncio.Semaphore(settings.concurrency)
        self._generator_slots: asyncio.Semaphore | None = None
        self._sampling = GenerationParams(temperature=settings.temperature, top_p=settings.top_p, seed=settings.seed)

    async def __aenter__(self) -> "Analyzer":
        # gRPC aio channels belong to the event loop they are made in: this one.
        s = self.settings
        self.pool = TritonPool(s)
        self.cache = Cache(s.redis_url, s.redis_retry_s, on_lookup=self.metrics.cache_counts)
        for model in api.SERVED:
            self.versions[model.name] = await self.pool.model_version(model)
        generator = await self.pool.model_config(api.GENERATOR)
        self.chat_template = wire.chat_template_of(generator)
        # Generator calls in flight: twice the sequences each server decodes together (its
        # max_batch_size), so they stay busy with a queue behind them without flooding the
        # generator's bounded queue when many entities run.
        self._generator_slots = asyncio.Semaphore(2 * int(generator["max_batch_size"]) * len(s.urls))
        return self

    async def __aexit__(self, *exc) -> None:
        await self.pool.close()
        await self.cache.close()

    def _key(self, kind: str, model: str, digest: str) -> str:
        return f"rl:{kind}:{model}@{self.versions[model]}:{digest}"

    async def analyze(self, entity: Entity) -> EntityAnalysis:
        """One entity on its own (its strengths are then its most typical praise)."""
        return (await self.analyze_many([entity]))[0]

    async def analyze_many(self, entities: list[Entity], on_done=None) -> list[EntityAnalysis]:
        """Entities concurrently (at most `settings.concurrency` at a time); strengths are measured
        against the other entities of the call. on_done(result) is called as each one finishes."""
        for entity in entities:
            entity.validate()
        ids = [e.entity_id for e in entities]
        if len(set(ids)) != len(ids):
            raise ValueError("entity ids repeat; give each entity once with all its reviews")
        # Strengths depend on the other entities, so every key carries the reviews of all of them.
        all_reviews = content_hash(*sorted(f"{e.entity_id}\0{content_hash(*sorted(e.reviews))}" for e in entities))
        keys = {e.entity_id: self._entity_key(e, all_reviews) for e in entities}
        cached = await self.cache.get_many(list(keys.values()))
        results: dict[str, EntityAnalysis] = {}
        for entity, raw in zip(entities, cached):
            if raw is not None:
                results[entity.entity_id] = EntityAnalysis.from_json(json.loads(raw))
                results[entity.entity_id].metrics = {"from_cache": True}
                self.metrics.entity_done(from_cache=True)
                if on_done:
                    on_done(results[entity.entity_id])
        todo = [e for e in entities if e.entity_id not in results]
        if todo:
            # Strengths are measured against every entity's positive centroid, so all entities are
            # prepared (cheap when their reviews are cached); each summary starts as soon as its
            # own entity is prepared.
            preparing = {e.entity_id: asyncio.ensure_future(self._bounded(self._prepare(e))) for e in entities}
            everyone = asyncio.ensure_future(asyncio.gather(*preparing.values()))

            async def rivals_of(entity_id: str) -> list[np.ndarray]:
                return [p.centroids["positive"] for p in await everyone
                        if p.entity.entity_id != entity_id and "positive" in p.centroids]

            async def finish(entity):
                result = await self._finish(await preparing[entity.entity_id], rivals_of(entity.entity_id))
                await self.cache.set_json(keys[entity.entity_id], result.to_json(), self.settings.entity_ttl_s)
                results[entity.entity_id] = result
                self.metrics.entity_done(from_cache=False)
                if on_done:
                    on_done(result)
            finishing = [asyncio.ensure_future(finish(e)) for e in todo]
            try:
                await asyncio.gather(*finishing)
            finally:
                # After a failure (the caller gets the first one), stop the work still in flight for
                # the other entities, and take the failures that came with it so that none is
                # reported as never retrieved. Entities finished before it stay cached.
                for future in [*finishing, *preparing.values(), everyone]:
                    if not future.done():
                        future.cancel()
                    elif not future.cancelled():
                        future.exception()
        return [results[i] for i in ids]

    def _entity_key(self, entity: Entity, all_reviews: str) -> str:
        s = self.settings
        inputs = json.dumps([RESULT_SCHEMA_VERSION, entity.entity_id, entity.name, all_reviews, s.recheck_below,
                             s.contrast_words, s.top_k, s.mmr_lambda, s.prompt_token_budget, s.entity_kind,
                             s.temperature, s.top_p, s.seed, s.recheck_batch, prompts.FINGERPRINT])
        return self._key("entity", api.GENERATOR.name, content_hash(inputs, *self.versions.values()))

    async def _bounded(self, coroutine):
        async with self._semaphore:
            return await coroutine

    async def _prepare(self, entity: Entity) -> _Prepared:
        started = time.perf_counter()
        texts = entity.reviews
        digests = [content_hash(t) for t in texts]
        classified, new_sentiments = await self._cached_per_review(
            api.SENTIMENT.name, digests, texts, self.pool.sentiment, encode_sentiment, decode_sentiment)
        embeddings, new_embeddings = await self._cached_per_review(
            api.EMBED.name, digests, texts, self.pool.embed, lambda v: np.asarray(v, "<f4").tobytes(),
            lambda raw: np.frombuffer(raw, "<f4"))
        doubtful = [i for i, s in enumerate(classified) if is_doubtful(texts[i], s.confidence, self.settings)]
        batches = [doubtful[start:start + self.settings.recheck_batch]
                   for start in range(0, len(doubtful), self.settings.recheck_batch)]
        rechecked = await asyncio.gather(*(self._recheck([texts[i] for i in batch]) for batch in batches))
        labels = [s.label for s in classified]
        for batch, batch_labels in zip(batches, rechecked):
            for i, label in zip(batch, batch_labels):
                labels[i] = label
        sentiments = [ReviewSentiment(t, label, round(s.confidence, DIGITS), i in doubtful)
                      for i, (t, s, label) in enumerate(zip(texts, classified, labels))]
        matrix = np.stack(embeddings).astype(np.float32)
        centroids = {label: centroid(matrix[[i for i, l in enumerate(labels) if l == label]])
                     for label in prompts.LABELS if label in labels}
        counts = {"reviews": len(texts), "classified": new_sentiments, "embedded": new_embeddings,
                  "rechecked": len(doubtful), "prepare_s": round(time.perf_counter() - started, 3)}
        return _Prepared(entity, sentiments, matrix, centroids, counts)

    async def _cached_per_review(self, model, digests, texts, infer, encode, decode):
        """Values for every text: from Redis where present, else from Triton (then stored)."""
        keys = [self._key("review", model, d) for d in digests]
        raws = await self.cache.get_many(keys)
        values = [None if raw is None else decode(raw) for raw in raws]
        missing = [i for i, v in enumerate(values) if v is None]
        if missing:
            fresh = await infer([texts[i] for i in missing])
            for i, value in zip(missing, fresh):
                values[i] = value
            await self.cache.set_many({keys[i]: encode(values[i]) for i in missing}, self.settings.review_ttl_s)
        return values, len(missing)

    async def _recheck(self, texts: list[str]) -> list[str]:
        answer, _ = await self._generate("recheck", prompts.recheck_messages(texts), prompts.recheck_schema(len(texts)))
        return answer["labels"]

    async def _generate(self, kind: str, messages: list[dict[str, str]], schema: dict) -> tuple[dict, LLMCall]:
        """A JSON-constrained generator call, served from the cache when the same prompt ran before."""
        prompt = self.chat_template(messages)
        params = replace(self._sampling, json_schema=schema)
        key = self._key("llm", api.GENERATOR.name, content_hash(prompt, json.dumps(schema), repr(params)))
        cached = await self.cache.get_json(key)
        if cached is not None:
            call = LLMCall(kind, cached=True)
            self.metrics.llm_call(call)
            return cached, call
        estimate = prompts.estimate_tokens(prompt)
        async with self._generator_slots:
            generated = await self.pool.generate(prompt, prompts.max_tokens_for(schema), params,
                                                 priority=1 if estimate <= self.settings.short_prompt_tokens else 2)
        answer = generated.json()
        call = LLMCall(kind, False, generated.prompt_tokens, generated.output_tokens,
                       round(generated.time_to_first_token_s, 3), round(generated.total_s, 3))
        self.metrics.llm_call(call, sla_ttft_s=self.settings.sla_ttft_s)
        await self.cache.set_json(key, answer, self.settings.llm_ttl_s)
        return answer, call

    async def _finish(self, prepared: _Prepared, rivals: Awaitable[list[np.ndarray]]) -> EntityAnalysis:
        started = time.perf_counter()
        s, entity, matrix = self.settings, prepared.entity, prepared.embeddings
        rows = {label: [i for i, r in enumerate(prepared.sentiments) if r.label == label] for label in prompts.LABELS}
        representative = {}
        for label, members in rows.items():
            chosen = mmr(matrix[members], prepared.centroids[label], s.top_k, s.mmr_lambda) if members else []
            representative[label] = [entity.reviews[members[i]] for i in chosen]
        present = [label for label in prompts.LABELS if representative[label]]
        summary_texts = [text for label in reversed(present)
                         for text in prompts.within_budget(representative[label], s.prompt_token_budget // len(present))]
        praise = rows["positive"] or rows["negative"]
        own = prepared.centroids.get("positive", prepared.centroids.get("negative"))

        async def strengths_answer():
            ranked = distinctive(matrix[praise], own, await rivals, s.top_k)
            texts = prompts.within_budget([entity.reviews[praise[i]] for i in ranked], s.prompt_token_budget // 2)
            return await self._generate("strengths", prompts.strengths_messages(s.entity_kind, texts),
                                        prompts.STRENGTHS_SCHEMA)
        (summary, summary_call), (strengths, strengths_call) = await asyncio.gather(
            self._generate("summary", prompts.summary_messages(s.entity_kind, summary_texts),
                           prompts.summary_schema(present)),
            strengths_answer())
        total = len(entity.reviews)
        return EntityAnalysis(
            entity.entity_id, entity.name, prepared.sentiments,
            {label: round(len(rows[label]) / total, DIGITS) for label in prompts.LABELS},
            representative, summary, strengths["strengths"],
            {**prepared.counts, "from_cache": False, "finish_s": round(time.perf_counter() - started, 3),
             "llm": [asdict(summary_call), asdict(strengths_call)]})

