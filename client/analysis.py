"""Review analysis of entities over Triton: the library backend services call.

    async with Analyzer(Settings.from_env()) as analyzer:
        results = await analyzer.analyze_many([Entity("m1", ["Great cast.", ...]), ...])

Per entity: its cached result if nothing of it changed; else the sentiment and embedding of every
review and of every sentence (client/sentences.py), cached per text; a generator re-check of the
doubtful reviews; per label the representative reviews (MMR around the centroid); the aspects,
clusters of opinion sentences with counts and quotes (client/aspects.py), named in one
JSON-constrained generator call that also writes the summary. Then, across the entities of the
call, strengths and weaknesses are computed from the aspects (no generator): they are not cached,
so an entity's cached result serves any set of rivals.
`SyncAnalyzer` (client/sync.py) runs the same calls for code without an event loop.
The result's JSON is documented by client/result.schema.json (RESULT_SCHEMA_VERSION).
"""
import asyncio
import base64
import json
import logging
import re
import time
import unicodedata
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from reviewlens.client import aspects, prompts, sentences, wire
from reviewlens.client.aspects import Aspect, Contrast, Profile, Quote, Sentence
from reviewlens.client.cache import Cache, content_hash, decode_sentiment, encode_sentiment
from reviewlens.client.metrics import ClientMetrics, LLMCall
from reviewlens.client.selection import centroid, mmr
from reviewlens.client.settings import Settings
from reviewlens.client.transport import TritonPool
from reviewlens.client.wire import GenerationParams
from reviewlens.ensemble import interface as api

log = logging.getLogger("reviewlens.client")

# The version of EntityAnalysis's JSON (client/result.schema.json), part of every whole-entity
# cache key: a result cached before its schema changed is never served after the change. Bump it
# (and the schema's "schema_version" const) with any field change.
RESULT_SCHEMA_VERSION = 4
RESULT_SCHEMA = Path(__file__).with_name("result.schema.json")
# Rounding each review's label confidence keeps results readable.
DIGITS = 4
# The generator's queue levels (its config's priority_levels: 2): online requests go before batch work.
ONLINE, BATCH = 1, 2
# The code that turns reviews into aspects: a change to it invalidates cached results.
ASPECT_CODE = content_hash(*(Path(m.__file__).read_text() for m in (sentences, aspects)))


def is_doubtful(text: str, confidence: float, settings: Settings) -> bool:
    """Re-check rule, when re-checks are on (recheck_below > 0): low classifier confidence, or a
    word that turns the sentence around (matched as a whole word in English; as a substring for
    Korean endings such as "지만")."""
    if settings.recheck_below == 0:
        return False
    words = set(re.findall(r"\w+", text.lower()))
    contrast = any(w in words if w.isascii() else w in text for w in settings.contrast_words)
    return confidence < settings.recheck_below or contrast


def foreign_letter_share(text: str, scripts: tuple[str, ...]) -> float:
    """Share of the text's letters outside the given Unicode scripts ("LATIN", "HANGUL", ...: the
    first word of a letter's Unicode name); 0 for a text without letters."""
    letters = [c for c in text if c.isalpha()]
    if not letters:
        return 0.0
    return sum(unicodedata.name(c, "?").split(" ", 1)[0] not in scripts for c in letters) / len(letters)


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
    rechecked: bool  # the generator decided the label (a doubtful classifier result, or not readable)
    readable: bool   # its letters are mostly in scripts the classifier was trained on (Settings.classifier_scripts)


@dataclass
class EntityAnalysis:
    entity_id: str
    entity_name: str | None
    reviews: list[ReviewSentiment]
    sentiment_ratio: dict[str, float]        # share of reviews per label
    representative: dict[str, list[str]]     # per label, top-K reviews quoted verbatim
    aspects: list[Aspect]                    # praised and criticised, with counts and quotes
    summary: str
    strengths: list[Contrast] = field(default_factory=list)   # against the other entities of the call
    weaknesses: list[Contrast] = field(default_factory=list)
    comparison: dict = field(default_factory=dict)            # rivals, rival_reviews, note
    metrics: dict = field(default_factory=dict)
    schema_version: int = RESULT_SCHEMA_VERSION

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> "EntityAnalysis":
        def contrast(c: dict) -> Contrast:
            return Contrast(**{**c, "evidence": [Quote(**q) for q in c["evidence"]]})
        return cls(**{**data, "reviews": [ReviewSentiment(**r) for r in data["reviews"]],
                      "aspects": [Aspect(**{**a, "evidence": [Quote(**q) for q in a["evidence"]]})
                                  for a in data["aspects"]],
                      "strengths": [contrast(c) for c in data["strengths"]],
                      "weaknesses": [contrast(c) for c in data["weaknesses"]]})


@dataclass
class _Prepared:
    entity: Entity
    sentiments: list[ReviewSentiment]
    embeddings: np.ndarray                   # one row per review
    sentences: list[Sentence]
    sentence_embeddings: np.ndarray          # one row per sentence
    counts: dict = field(default_factory=dict)
    calls: list[dict] = field(default_factory=list)  # its re-check calls (LLMCall as dicts)


def _profile_to_json(profile: Profile) -> dict:
    return {"n_reviews": profile.n_reviews, "polarities": profile.polarities, "review_ids": profile.review_ids,
            "centres": base64.b64encode(np.asarray(profile.centres, "<f4").tobytes()).decode("ascii"),
            "dimensions": int(profile.centres.shape[1])}


def _profile_from_json(data: dict) -> Profile:
    centres = np.frombuffer(base64.b64decode(data["centres"]), "<f4").reshape(-1, data["dimensions"])
    return Profile(data["n_reviews"], data["polarities"], centres, data["review_ids"])


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

    def _key(self, kind: str, model: str, digest: str, entity: Entity) -> str:
        """`rl:{<entity tag>}:<kind>:<model>@<version>:<content hash>`. The tag in braces is a Redis
        Cluster hash tag: every key of one entity (its result, its texts' sentiment and embeddings,
        its generator answers) lands in one slot, so each lookup is one round trip to one node."""
        return f"rl:{{{content_hash(entity.entity_id)[:16]}}}:{kind}:{model}@{self.versions[model]}:{digest}"

    async def analyze(self, entity: Entity) -> EntityAnalysis:
        """One entity on its own, as an online request: its generator calls go ahead of batch work
        waiting in the generator's queue (priority ONLINE). It has no strengths or weaknesses: there
        is nothing to compare it with."""
        return (await self.analyze_many([entity], priority=ONLINE))[0]

    async def analyze_many(self, entities: list[Entity], on_done=None, priority: int = BATCH) -> list[EntityAnalysis]:
        """Entities concurrently (at most `settings.concurrency` at a time); strengths and
        weaknesses are measured against the other entities of the call. on_done(result) is called
        as each entity's own analysis is ready; its strengths and weaknesses are filled in (on the
        same object) once every entity is. priority: the generator queue's level for its calls."""
        for entity in entities:
            entity.validate()
        ids = [e.entity_id for e in entities]
        if len(set(ids)) != len(ids):
            raise ValueError("entity ids repeat; give each entity once with all its reviews")
        keys = {e.entity_id: self._entity_key(e) for e in entities}
        cached = await self.cache.get_many(list(keys.values()))
        results: dict[str, EntityAnalysis] = {}
        profiles: dict[str, Profile] = {}
        for entity, raw in zip(entities, cached):
            if raw is not None:
                stored = json.loads(raw)
                results[entity.entity_id] = EntityAnalysis.from_json(stored["analysis"])
                results[entity.entity_id].metrics = {"from_cache": True}
                profiles[entity.entity_id] = _profile_from_json(stored["profile"])
                self.metrics.entity_done(from_cache=True)
                if on_done:
                    on_done(results[entity.entity_id])

        async def analyse(entity: Entity) -> None:
            result, profile = await self._bounded(self._analyse_one(entity, priority))
            stored = {"analysis": result.to_json(), "profile": _profile_to_json(profile)}
            await self.cache.set_json(keys[entity.entity_id], stored, self.settings.entity_ttl_s)
            results[entity.entity_id], profiles[entity.entity_id] = result, profile
            self.metrics.entity_done(from_cache=False)
            if on_done:
                on_done(result)
        running = [asyncio.ensure_future(analyse(e)) for e in entities if e.entity_id not in results]
        try:
            await asyncio.gather(*running)
        finally:
            # After a failure (the caller gets the first one), stop the work still in flight for
            # the other entities, and take the failures that came with it so that none is
            # reported as never retrieved. Entities finished before it stay cached.
            for future in running:
                if not future.done():
                    future.cancel()
                elif not future.cancelled():
                    future.exception()
        self._compare(results, profiles)
        return [results[i] for i in ids]

    def _compare(self, results: dict[str, EntityAnalysis], profiles: dict[str, Profile]) -> None:
        """Fill in every result's strengths and weaknesses against the other entities."""
        s = self.settings
        for entity_id, result in results.items():
            rivals = [p for other, p in profiles.items() if other != entity_id]
            found = aspects.contrasts(result.aspects, profiles[entity_id], rivals, match_similarity=s.match_similarity,
                                      gap=s.strength_gap, p_value=s.strength_p)
            result.strengths = [c for c in found if c.polarity == "positive"]
            result.weaknesses = [c for c in found if c.polarity == "negative"]
            result.comparison = {
                "rivals": len(rivals), "rival_reviews": sum(p.n_reviews for p in rivals),
                "note": None if rivals else "strengths and weaknesses need at least two entities in the call"}

    def _entity_key(self, entity: Entity) -> str:
        s = self.settings
        inputs = json.dumps([RESULT_SCHEMA_VERSION, entity.entity_id, entity.name, s.recheck_below,
                             s.contrast_words, s.top_k, s.mmr_lambda, s.entity_kind, s.temperature, s.top_p, s.seed,
                             s.recheck_batch, s.opinion_confidence, s.max_aspects, s.min_aspect_share,
                             s.evidence_quotes, s.classifier_scripts, s.unreadable_share, prompts.FINGERPRINT,
                             ASPECT_CODE])
        return self._key("entity", api.GENERATOR.name, content_hash(inputs, *entity.reviews, *self.versions.values()),
                         entity)

    async def _bounded(self, coroutine):
        async with self._semaphore:
            return await coroutine

    async def _analyse_one(self, entity: Entity, priority: int) -> tuple[EntityAnalysis, Profile]:
        return await self._finish(await self._prepare(entity, priority), priority)

    async def _prepare(self, entity: Entity, priority: int) -> _Prepared:
        started = time.perf_counter()
        texts = entity.reviews
        found = [(i, span) for i, text in enumerate(texts) for span in sentences.split(text)]
        sentence_texts = [texts[i][span.start:span.end] for i, span in found]
        # Reviews and sentences go to the encoders together; a one-sentence review is sent once.
        unique = list(dict.fromkeys([*texts, *sentence_texts]))
        digests = [content_hash(t) for t in unique]
        classified, new_sentiments = await self._cached_per_text(
            entity, api.SENTIMENT.name, digests, unique, self.pool.sentiment, encode_sentiment, decode_sentiment)
        embedded, new_embeddings = await self._cached_per_text(
            entity, api.EMBED.name, digests, unique, self.pool.embed, lambda v: np.asarray(v, "<f4").tobytes(),
            lambda raw: np.frombuffer(raw, "<f4"))
        row = {text: i for i, text in enumerate(unique)}
        review_rows = [row[t] for t in texts]
        sentence_rows = [row[t] for t in sentence_texts]
        review_classes = [classified[r] for r in review_rows]
        s = self.settings
        # The generator labels the doubtful reviews (re-checks, when on) and every review or
        # sentence written mostly in scripts the classifier never learned (it reads them as noise).
        unreadable = {t for t in unique if foreign_letter_share(t, s.classifier_scripts) >= s.unreadable_share}
        doubtful = [texts[i] for i, c in enumerate(review_classes) if is_doubtful(texts[i], c.confidence, s)]
        to_label = list(dict.fromkeys([*doubtful, *(t for t in unique if t in unreadable)]))
        batches = [to_label[start:start + s.recheck_batch] for start in range(0, len(to_label), s.recheck_batch)]
        rechecked = await asyncio.gather(*(self._recheck(entity, batch, priority) for batch in batches))
        by_generator = {text: label for batch, (labels, _) in zip(batches, rechecked) for text, label in zip(batch, labels)}
        reviews = [ReviewSentiment(t, by_generator.get(t, c.label), round(c.confidence, DIGITS), t in by_generator,
                                   t not in unreadable) for t, c in zip(texts, review_classes)]
        sentence_list = [Sentence(i, span.start, span.end, text, by_generator.get(text, classified[r].label),
                                  classified[r].confidence, text in by_generator)
                         for (i, span), text, r in zip(found, sentence_texts, sentence_rows)]
        matrix = np.stack(embedded).astype(np.float32)
        counts = {"reviews": len(texts), "sentences": len(sentence_list), "classified": new_sentiments,
                  "embedded": new_embeddings, "rechecked": sum(r.rechecked for r in reviews),
                  "unreadable": sum(not r.readable for r in reviews), "generator_labelled": len(to_label),
                  "prepare_s": round(time.perf_counter() - started, 3)}
        return _Prepared(entity, reviews, matrix[review_rows], sentence_list, matrix[sentence_rows], counts,
                         [asdict(call) for _, call in rechecked])

    async def _cached_per_text(self, entity, model, digests, texts, infer, encode, decode):
        """Values for every text of the entity: from Redis where present, else from Triton (then stored)."""
        keys = [self._key("text", model, d, entity) for d in digests]
        raws = await self.cache.get_many(keys)
        values = [None if raw is None else decode(raw) for raw in raws]
        missing = [i for i, v in enumerate(values) if v is None]
        if missing:
            fresh = await infer([texts[i] for i in missing])
            for i, value in zip(missing, fresh):
                values[i] = value
            await self.cache.set_many({keys[i]: encode(values[i]) for i in missing}, self.settings.review_ttl_s)
        return values, len(missing)

    async def _recheck(self, entity: Entity, texts: list[str], priority: int) -> tuple[list[str], LLMCall]:
        answer, call = await self._generate(entity, "recheck", prompts.recheck_messages(texts),
                                            prompts.recheck_schema(len(texts)), priority)
        return answer["labels"], call

    async def _generate(self, entity: Entity, kind: str, messages: list[dict[str, str]], schema: dict,
                        priority: int) -> tuple[dict, LLMCall]:
        """A JSON-constrained generator call, served from the cache when the same prompt ran before."""
        prompt = self.chat_template(messages)
        params = replace(self._sampling, json_schema=schema)
        key = self._key("llm", api.GENERATOR.name, content_hash(prompt, json.dumps(schema), repr(params)), entity)
        cached = await self.cache.get_json(key)
        if cached is not None:
            call = LLMCall(kind, cached=True)
            self.metrics.llm_call(call)
            return cached, call
        async with self._generator_slots:
            generated = await self.pool.generate(prompt, prompts.max_tokens_for(schema), params, priority=priority)
        answer = generated.json()
        call = LLMCall(kind, False, generated.prompt_tokens, generated.output_tokens,
                       round(generated.time_to_first_token_s, 3), round(generated.total_s, 3))
        self.metrics.llm_call(call, sla_ttft_s=self.settings.sla_ttft_s)
        await self.cache.set_json(key, answer, self.settings.llm_ttl_s)
        return answer, call

    async def _finish(self, prepared: _Prepared, priority: int) -> tuple[EntityAnalysis, Profile]:
        started = time.perf_counter()
        s, entity, matrix = self.settings, prepared.entity, prepared.embeddings
        rows = {label: [i for i, r in enumerate(prepared.sentiments) if r.label == label] for label in prompts.LABELS}
        representative = {}
        for label, members in rows.items():
            chosen = mmr(matrix[members], centroid(matrix[members]), s.top_k, s.mmr_lambda) if members else []
            representative[label] = [entity.reviews[members[i]] for i in chosen]
        total = len(entity.reviews)
        clusters = aspects.clusters_of(
            prepared.sentences, prepared.sentence_embeddings, total, min_confidence=s.opinion_confidence,
            min_share=s.min_aspect_share, max_aspects=s.max_aspects, evidence=s.evidence_quotes, mmr_lambda=s.mmr_lambda)
        names, summary, calls = [], "", prepared.calls
        if clusters:
            language = prompts.language_of(entity.reviews)
            evidence = [(c.polarity, c.keywords, [prepared.sentences[i].text for i in c.evidence]) for c in clusters]
            answer, call = await self._generate(entity, "naming", prompts.naming_messages(s.entity_kind, language, evidence),
                                                prompts.naming_schema(len(clusters), language), priority)
            names, summary, calls = answer["names"], prompts.whole_sentences(answer["summary"]), [*calls, asdict(call)]
        named = aspects.named(clusters, names, prepared.sentences, entity.reviews, total)
        dimensions = prepared.sentence_embeddings.shape[1]
        profile = Profile(total, [c.polarity for c in clusters],
                          np.stack([c.centre for c in clusters]) if clusters else np.zeros((0, dimensions), np.float32),
                          [c.review_ids for c in clusters])
        opinions = sum(aspects.is_opinion(x, s.opinion_confidence) for x in prepared.sentences)
        in_aspects = sum(len(c.members) for c in clusters)
        result = EntityAnalysis(
            entity.entity_id, entity.name, prepared.sentiments,
            {label: round(len(rows[label]) / total, DIGITS) for label in prompts.LABELS},
            representative, named, summary,
            metrics={**prepared.counts, "opinion_sentences": opinions, "in_aspects": in_aspects, "from_cache": False,
                     "finish_s": round(time.perf_counter() - started, 3), "llm": calls})
        return result, profile
