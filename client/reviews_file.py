"""Reading reviews.jsonl: one JSON object per line, {"entity_id", "text", optional "entity_name"}.

Every problem is reported as `<file>:<line>: <what is wrong>` and stops the run before any request
is sent, so a bad file never produces a half-analysed result.
"""
import json
from collections import defaultdict
from collections.abc import Iterable, Iterator
from pathlib import Path

from reviewlens.client.analysis import Entity
from reviewlens.ensemble.interface import MAX_TEXT_BYTES, is_blank


class InputError(ValueError):
    """The reviews file cannot be used; the message names the file and line."""


def _field(record: dict, name: str, where: str, required: bool = True) -> str | None:
    if name not in record:
        if required:
            raise InputError(f"{where}: missing field {name!r}")
        return None
    value = record[name]
    if not isinstance(value, str):
        raise InputError(f"{where}: {name!r} must be a string, not {type(value).__name__}")
    if is_blank(value):
        raise InputError(f"{where}: {name!r} is empty")
    return value


def _records(path: Path) -> Iterator[tuple[str, dict]]:
    """(file:line, object) for each non-blank line."""
    try:
        raw_lines = Path(path).read_bytes().splitlines()
    except OSError as error:
        raise InputError(f"{path}: cannot read ({error.strerror})") from None
    for number, raw in enumerate(raw_lines, start=1):
        where = f"{path}:{number}"
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as error:
            raise InputError(f"{where}: not valid UTF-8 (byte 0x{raw[error.start]:02x} at column {error.start + 1})") from None
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise InputError(f"{where}: not valid JSON ({error.msg} at column {error.colno})") from None
        if not isinstance(record, dict):
            raise InputError(f"{where}: expected a JSON object with entity_id and text")
        yield where, record


def read_entities(path: Path) -> list[Entity]:
    """Entities in order of first appearance, each with all its reviews."""
    return entities_of(_records(path), f"{path}: no reviews (expected JSON lines with entity_id and text)")


def entities_of(records: Iterable[tuple[str, dict]], no_reviews: str) -> list[Entity]:
    """Entities in order of first appearance from (where, record) pairs, each record checked: a
    string entity_id and text, an optional entity_name; no_reviews is the error when there are none."""
    reviews: dict[str, list[str]] = defaultdict(list)
    names: dict[str, str | None] = {}
    for where, record in records:
        entity_id = _field(record, "entity_id", where)
        text = _field(record, "text", where)
        if len(text.encode("utf-8")) > MAX_TEXT_BYTES:
            raise InputError(f"{where}: 'text' is over {MAX_TEXT_BYTES:,} bytes")
        reviews[entity_id].append(text)
        names.setdefault(entity_id, _field(record, "entity_name", where, required=False))
    if not reviews:
        raise InputError(no_reviews)
    return [Entity(entity_id, texts, names[entity_id]) for entity_id, texts in reviews.items()]
