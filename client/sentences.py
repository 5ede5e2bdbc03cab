"""Split one review into sentences and contrast clauses, as exact character offsets.

Aspects are mined per sentence, and one aspect sentence should carry one polarity, so a sentence
that turns around ("The acting is superb, but the plot drags.", "맛있지만 너무 비싸요") is cut
into its clauses. Every span indexes the review as given (Python str indices, code points): no
normalisation happens, so `text[span.start:span.end]` is always the quoted sentence.

Rules, in order (the choice of rules over a library is measured in perf/results/segmenters.md):
- A line break ends a sentence.
- English: `.`, `!`, `?`, `…` (and runs such as `...`, `?!`), with closing quotes or brackets,
  end a sentence when whitespace and then no lowercase letter (nor a dash, comma...) follows, and the word before a `.`
  is not an abbreviation ("Mr.", "Dr.", "vs.", "e.g.") or a run of initials ("U.S.", "J.").
  An ellipsis glued to a capital ends one too ("the film…It was").
- Korean: the same punctuation ends a sentence even without a space before the next Hangul
  ("맛있어요.가격도"); a word ending in a final verb ending ("~요", "~다" after a verb stem,
  "~죠", "~니다", "~네" after a stem) ends a sentence before the next Hangul word; emoticons
  ("ㅎㅎ", "ㅋㅋ", "ㅠㅠ", "^^", "~", emoji) stay with the sentence before them and end it.
- Clauses: a sentence is cut at ", but", ", yet", ", though", ", although", ", whereas" (not
  ", but also" / ", but rather") and "; ", and in Korean after a word ending in "지만" or before
  "하지만", "그렇지만", "그러나", "그런데", "근데" -- only when both sides keep at least MIN_CLAUSE_WORDS words or
  MIN_CLAUSE_SYLLABLES Hangul syllables, so "Good, but long." stays whole. The separator
  punctuation (the comma, the semicolon) belongs to neither clause.
"""
import re
from dataclasses import dataclass

# A clause cut must leave each side at least this long (either measure suffices): shorter
# fragments ("Funny, but" / "맛있지만") carry no aspect of their own.
MIN_CLAUSE_WORDS = 3
MIN_CLAUSE_SYLLABLES = 4


@dataclass(frozen=True)
class Span:
    """One sentence or clause of a review: `text[start:end]`, no surrounding whitespace."""

    start: int
    end: int


_HANGUL = "\uac00-\ud7a3"
_JAMO = "\u3131-\u318e"
# Emoticons that close a Korean (or English) sentence: jamo laughter/tears, ^^, ~, ♡, emoji.
_EMOTICON = rf"[{_JAMO}~^♡♥❤☆★\u2600-\u27bf\U0001f000-\U0001faff\ufe0f\u200d]"
_CLOSERS = "\"'”’»)\\]」』"
# After a full stop, these continue the sentence: "lots of talking heads, etc. -- to do".
_CONTINUATIONS = "-–—,;:)"
_OPENERS = "\"'“‘«(\\[「『"

_ENGLISH_ABBREVIATIONS = frozenset(
    "mr mrs ms dr prof sr jr st vs mt ft gen col lt sgt capt rev gov sen rep inc ltd co corp "
    "jan feb mar apr jun jul aug sep sept oct nov dec e.g i.e cf approx dept est".split()
)

# Terminal punctuation (with closing quotes), then the whitespace after it, or a Hangul letter
# right after it when the punctuation follows Hangul.
_PUNCT_END = re.compile(
    rf"(?P<mark>[.!?…。！？]+)[{_CLOSERS}]*(?:(?P<space>\s+)|(?=[{_HANGUL}])|(?<=[….])(?=[A-Z]))"
)
_NEWLINE = re.compile(r"[ \t]*[\r\n\u2028\u2029\x0b\x0c\x85][\s]*")
# A Korean word that ends in a sentence-final ending, then whitespace, then a word (not an emoticon).
# "다" only after a verb/adjective stem or past/formal marker, so nouns like "바다" do not end one.
_KOREAN_FINAL_STEMS = "었았였했있없니좋같싶는겠된한간온운진많넓작높낮쁘네이"
_KOREAN_END = re.compile(
    rf"(?:[{_HANGUL}](?:요|죠|[{_KOREAN_FINAL_STEMS}]다)|(?:있|없|좋|았|었|였|했|겠|찮|같)네|(?:있|없|좋|았|었|였|했)음)"
    rf"(?P<space>\s+)(?=[{_HANGUL}0-9A-Za-z])"
)
# A whole run of emoticons (inner spaces allowed: "~ ㅎㅎ") after a sentence, then more text.
_EMOTICON_END = re.compile(
    rf"(?<=[{_HANGUL}.!?\s])(?<!{_EMOTICON})(?:{_EMOTICON}|[.!?;:]|\s+(?={_EMOTICON}))*{_EMOTICON}(?P<space>\s+)(?=\S)"
)

# ", but also" / ", but rather" continue a sentence's direction ("not only ..., but also ...").
# ", however" is left out: in the critic snippets it is nearly always parenthetical ("It is,
# however, a completely honest film") or concessive ("Safe Conduct, however ambitious, fails");
# "; however," is still cut by the semicolon.
_ENGLISH_CLAUSE = re.compile(
    r",\s+(?=(?:but|yet|though|although|whereas)\b(?!\s+(?:also|rather)\b))|\s*;\s+", re.IGNORECASE
)
_KOREAN_CLAUSE = re.compile(
    rf"(?<=[{_HANGUL}]지만)(?P<after>[,]?\s+)(?=[{_HANGUL}])"
    rf"|(?<=[{_HANGUL}{_JAMO}.,!?~^\s])(?P<before>[,]?\s+)(?=(?:하지만|그렇지만|그러나|그런데|근데)(?:[\s,]|$))"
)
_KOREAN_LETTER = re.compile(rf"[{_HANGUL}{_JAMO}]")
_WORD = re.compile(r"\S+")
_SYLLABLE = re.compile(rf"[{_HANGUL}]")
_LETTER = re.compile(r"\w", re.UNICODE)


def split(text: str) -> list[Span]:
    """Sentences (or clauses) of one review, in order, non-overlapping, each non-empty after
    stripping, covering every non-space character of the text at most once."""
    spans: list[Span] = []
    for start, end in _sentences(text):
        for c_start, c_end in _clauses(text, start, end):
            span = _stripped(text, c_start, c_end)
            if span is not None:
                spans.append(span)
    return spans


def _stripped(text: str, start: int, end: int) -> Span | None:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return Span(start, end) if start < end else None


def _sentences(text: str) -> list[tuple[int, int]]:
    """Sentence ranges (not yet stripped) from the cut points of every sentence rule."""
    cuts: set[tuple[int, int]] = set()
    for match in _NEWLINE.finditer(text):
        cuts.add((match.start(), match.end()))
    for match in _PUNCT_END.finditer(text):
        if _ends_sentence(text, match):
            gap_start = match.start("space") if match.group("space") else match.end()
            cuts.add((gap_start, match.end()))
    for match in _KOREAN_END.finditer(text):
        cuts.add((match.start("space"), match.end("space")))
    for match in _EMOTICON_END.finditer(text):
        cuts.add((match.start("space"), match.end("space")))
    return _ranges(0, len(text), cuts)


def _ranges(start: int, end: int, cuts: set[tuple[int, int]]) -> list[tuple[int, int]]:
    ranges, position = [], start
    for cut_start, cut_end in sorted(cuts):
        if cut_start < position:  # overlapping rules (a newline after a full stop)
            position = max(position, cut_end)
            continue
        ranges.append((position, cut_start))
        position = cut_end
    ranges.append((position, end))
    return ranges


def _ends_sentence(text: str, match: re.Match) -> bool:
    """Whether terminal punctuation followed by whitespace really ends a sentence (English rules)."""
    if not match.group("space"):
        if text[match.end()].isascii():  # an ellipsis glued to a capital: "the film…It was"
            return match.group("mark").endswith(("…", "..."))
        # glued to the next Hangul word: a sentence end only after Hangul
        return match.start() > 0 and _KOREAN_LETTER.match(text, match.start() - 1) is not None
    following = match.end()
    while following < len(text) and text[following] in _OPENERS:
        following += 1
    if following < len(text) and (text[following].islower() or text[following] in _CONTINUATIONS):
        return False
    if match.group("mark") == ".":
        word_start = match.start()
        while word_start > 0 and not text[word_start - 1].isspace():
            word_start -= 1
        word = text[word_start:match.start()].lstrip(_OPENERS)
        if word.lower() in _ENGLISH_ABBREVIATIONS or re.fullmatch(r"(?:[A-Za-z]\.)*[A-Za-z]", word):
            return False
    return True


def _clauses(text: str, start: int, end: int) -> list[tuple[int, int]]:
    """Cut one sentence at its contrast clauses, keeping each side at least the minimum long."""
    candidates = []
    for pattern in (_ENGLISH_CLAUSE, _KOREAN_CLAUSE):
        for match in pattern.finditer(text, start, end):
            candidates.append((match.start(), match.end()))
    if not candidates:
        return [(start, end)]
    ranges, position = [], start
    for cut_start, cut_end in sorted(candidates):
        if cut_start < position:
            continue
        if _long_enough(text[position:cut_start]) and _long_enough(text[cut_end:end]):
            ranges.append((position, cut_start))
            position = cut_end
    ranges.append((position, end))
    return ranges


def _long_enough(clause: str) -> bool:
    words = sum(1 for word in _WORD.finditer(clause) if _LETTER.search(word.group()))
    return words >= MIN_CLAUSE_WORDS or len(_SYLLABLE.findall(clause)) >= MIN_CLAUSE_SYLLABLES
