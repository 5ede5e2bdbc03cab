"""The prompts of the generator benchmarks: ChatML, a fixed ~210-token instruction block, then ~80
tokens of real reviews, different per prompt (bench_generator.py, bench_perf_analyzer.py).

Prefix caching decides the time to first token, so every prompt is either
  cold:   a unique tag at the very start of the system message, so that it shares fewer tokens with
          any other prompt than the engine's MIN_PREFIX_REUSE (checked), or
  cached: the "shared" tag and instruction block of the request before it, other reviews: the
          instruction block comes from the prefix cache.
"""
from dataclasses import dataclass

from harness.baselines import sample_reviews
from reviewlens.client.wire import chatml
from reviewlens.ensemble.llm_engine import MIN_PREFIX_REUSE

INSTRUCTION = (
    "You are a senior film critic and data analyst working for a movie review aggregation service. "
    "You receive a batch of short reviews written by professional critics about one or more films. "
    "Analyse them carefully and write a detailed report for the editorial team. The report must "
    "cover: (1) the overall sentiment of the batch and how strongly the critics agree with each "
    "other; (2) the aspects of the films that are praised, such as acting, direction, screenplay, "
    "pacing, cinematography, music or humour, quoting short phrases from the reviews as evidence; "
    "(3) the aspects that are criticised, again with short quotes; (4) any sarcasm, irony or mixed "
    "feelings that a simple positive/negative classifier would misread, explaining why; (5) the "
    "kind of audience the films seem to suit. Write in full sentences and plain English, be "
    "specific rather than generic, do not invent facts that are not in the reviews, and give a "
    "long, thorough answer: the editors want every point discussed in depth."
)
SHARED = "shared"


@dataclass(frozen=True)
class Prompt:
    name: str    # e.g. "cold-a-03", "prime", "cached-02"
    kind: str    # cold | prime | cached | warmup
    text: str
    tokens: int


def messages(tag: str, reviews: list[str]) -> list[dict[str, str]]:
    # The tag comes first: prompts with different tags share only `<|im_start|>system\n#`.
    listed = "\n".join(f"{i}. {text}" for i, text in enumerate(reviews, 1))
    return [{"role": "system", "content": f"#{tag}. {INSTRUCTION}"},
            {"role": "user", "content": f"Reviews:\n{listed}\n\nWrite the detailed report now."}]


class PromptSet:
    """Prompts over `blocks` disjoint groups of consecutive real reviews of ~`review_tokens` tokens each."""

    def __init__(self, tokenize, blocks: int, review_tokens: int):
        self.tokenize = tokenize
        self.blocks: list[list[str]] = []
        block, used = [], 0
        for text in sample_reviews(2000).texts:
            n = len(tokenize(text)) + 3  # with its list number and newline
            if block and used + n > review_tokens * 1.15:
                continue  # too long for this block: try the next review
            block.append(text)
            used += n
            if used >= review_tokens * 0.9:
                self.blocks.append(block)
                block, used = [], 0
                if len(self.blocks) == blocks:
                    return
        raise RuntimeError(f"not enough reviews for {blocks} blocks of ~{review_tokens} tokens")

    def make(self, name: str, kind: str, tag: str, block: int) -> Prompt:
        text = chatml(messages(tag, self.blocks[block]))
        return Prompt(name, kind, text, len(self.tokenize(text)))

    def cold(self, level: str, n: int) -> list[Prompt]:
        return [self.make(f"cold-{level}-{i:02d}", "cold", f"{level}{i:02d}", i) for i in range(n)]

    def cached(self, n: int) -> list[Prompt]:
        """A priming request (on the last block), then `n` with the same instruction block and other reviews."""
        return ([self.make("prime", "prime", SHARED, len(self.blocks) - 1)]
                + [self.make(f"cached-{i:02d}", "cached", SHARED, i) for i in range(n)])

    def common(self, a: Prompt, b: Prompt) -> int:
        """Tokens at the start of both prompts."""
        ta, tb = self.tokenize(a.text), self.tokenize(b.text)
        return next((i for i, (x, y) in enumerate(zip(ta, tb)) if x != y), min(len(ta), len(tb)))

    def check(self, cold: list[Prompt], cached: list[Prompt]) -> dict:
        """Cold prompts must share too little with any other prompt for the prefix cache to use it;
        cached ones must share the instruction block with the prompt before them."""
        everything = cold + cached
        cold_max = max((self.common(a, b) for a in cold for b in everything if a is not b), default=0)
        if cold_max >= MIN_PREFIX_REUSE:
            raise RuntimeError(f"cold prompts share {cold_max} tokens with another prompt (>= {MIN_PREFIX_REUSE})")
        instruction = len(self.tokenize(chatml(messages(SHARED, [])[:1]))) - 3
        return {"cold_max_common_tokens": cold_max, "instruction_tokens": instruction,
                "cached_common_tokens": [self.common(a, b) for a, b in zip(cached, cached[1:])]}
