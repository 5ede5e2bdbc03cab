"""The served generator as a teacher: sentiment labels for unlabelled review texts, for adaptation.

Each text is labelled twice, by two prompt variants that differ in wording and in the order the
reviews stand in the call ("a" is the re-check prompt itself, "b" asks about satisfaction and lists
the reviews backwards); build_engines/adapt.py keeps a label for training only where both agree
(perf/bench_adapt.py measures what that rule buys). Calls are JSON-constrained and carry several reviews each, as the
re-checks do, packed up to a prompt-token budget so a call of long reviews still fits the
generator's context.

Labels are appended to a JSON-lines store as each call answers, keyed by the variant's prompt and
the text: an interrupted run resumes where it stopped, and a second run over the same texts sends
nothing.
"""
import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from reviewlens.client import prompts, wire
from reviewlens.client.analysis import BATCH
from reviewlens.client.cache import content_hash
from reviewlens.client.settings import Settings
from reviewlens.client.transport import TritonPool
from reviewlens.ensemble import interface as api

SATISFACTION_SYSTEM = ("You read customer reviews for a review analytics service. " + prompts.DATA_RULE +
                       ' For each review, in order, say whether its author is satisfied overall with what '
                       'they review: answer {"labels": [...]} with "positive" for satisfied, "negative" for '
                       'dissatisfied.')


@dataclass(frozen=True)
class Variant:
    """One way of asking the teacher: a system prompt, and whether the call lists its reviews backwards."""
    name: str
    system: str
    backwards: bool

    def messages(self, texts: list[str]) -> list[dict[str, str]]:
        shown = texts[::-1] if self.backwards else texts
        return [{"role": "system", "content": self.system}, {"role": "user", "content": prompts.as_data(shown)}]

    def labels_of(self, answer: dict) -> list[str]:
        """The answer's labels in the order of the texts given to messages()."""
        labels = answer["labels"]
        return labels[::-1] if self.backwards else labels


VARIANTS = (Variant("a", prompts.RECHECK_SYSTEM, backwards=False),
            Variant("b", SATISFACTION_SYSTEM, backwards=True))
# Prompt tokens of reviews per call (estimated, prompts.estimate_tokens), and at most REVIEWS_PER_CALL
# reviews: the generator's 8,192 KV cells are shared by its 4 sequences.
PROMPT_TOKEN_BUDGET = 1200
REVIEWS_PER_CALL = 8
# A longer review is cut to its opening for the teacher, so one call stays in budget.
TEACHER_CHARACTERS = 3000


class LabelStore:
    """Teacher labels on disk, one JSON line per (variant, text): {"key", "variant", "label"}."""

    def __init__(self, path: Path):
        self.path = path
        self.labels: dict[str, str] = {}
        if path.exists():
            for line in path.read_text(encoding="utf-8").splitlines():
                if line.strip():
                    record = json.loads(line)
                    self.labels[record["key"]] = record["label"]

    @staticmethod
    def key(variant: Variant, text: str) -> str:
        return content_hash(variant.system, str(variant.backwards), text)

    def get(self, variant: Variant, text: str) -> str | None:
        return self.labels.get(self.key(variant, text))

    def add(self, variant: Variant, texts: list[str], labels: list[str]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as f:
            for text, label in zip(texts, labels):
                key = self.key(variant, text)
                self.labels[key] = label
                f.write(json.dumps({"key": key, "variant": variant.name, "label": label}) + "\n")


def calls_of(texts: list[str]) -> list[list[str]]:
    """The texts packed into calls: in order, each call at most REVIEWS_PER_CALL reviews and
    PROMPT_TOKEN_BUDGET estimated tokens (a single longer review is a call of its own)."""
    calls, current, tokens = [], [], 0
    for text in texts:
        cost = prompts.estimate_tokens(text[:TEACHER_CHARACTERS])
        if current and (len(current) == REVIEWS_PER_CALL or tokens + cost > PROMPT_TOKEN_BUDGET):
            calls.append(current)
            current, tokens = [], 0
        current.append(text)
        tokens += cost
    return calls + [current] if current else calls


async def _label(settings: Settings, texts: list[str], store: LabelStore, on_progress: Callable[[int], None]) -> None:
    pool = TritonPool(settings)
    try:
        chat_template = await pool.chat_template()
        config = await pool.model_config(api.GENERATOR)
        slots = asyncio.Semaphore(2 * int(config["max_batch_size"]) * len(settings.urls))
        greedy = wire.GenerationParams(temperature=0.0)

        async def one_call(variant: Variant, batch: list[str]) -> None:
            schema = prompts.recheck_schema(len(batch))
            prompt = chat_template(variant.messages([text[:TEACHER_CHARACTERS] for text in batch]))
            async with slots:
                generated = await pool.generate(prompt, prompts.max_tokens_for(schema),
                                                replace(greedy, json_schema=schema),
                                                priority=BATCH)
            store.add(variant, batch, variant.labels_of(generated.json()))
            on_progress(len(batch))

        # Call by call, both variants of a batch together: a run stopped half-way leaves labels that
        # can be kept (both variants there) for a prefix of the texts, not one variant of them all.
        todo = {variant.name: calls_of([t for t in texts if store.get(variant, t) is None]) for variant in VARIANTS}
        await asyncio.gather(*(one_call(variant, batch) for index in range(max(map(len, todo.values())))
                               for variant in VARIANTS if index < len(todo[variant.name])
                               for batch in [todo[variant.name][index]]))
    finally:
        await pool.close()


def teacher_labels(settings: Settings, texts: list[str], store_path: Path,
                   on_progress: Callable[[int], None] = lambda done: None) -> dict[str, list[str]]:
    """Each variant's label for every text ({"a": [...], "b": [...]}), asking the served generator for
    those the store does not hold yet; on_progress(n) after each call with the labels it added."""
    store = LabelStore(store_path)
    asyncio.run(_label(settings, texts, store, on_progress))
    return {variant.name: [store.get(variant, text) for text in texts] for variant in VARIANTS}


def missing_labels(texts: list[str], store_path: Path) -> int:
    """How many (variant, text) labels the store lacks: what a run still has to ask for."""
    store = LabelStore(store_path)
    return sum(store.get(variant, text) is None for variant in VARIANTS for text in texts)
