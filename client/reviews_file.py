"""Reading reviews.jsonl: one JSON object per line, {"entity_id", "text", optional "entity_name"}.

Every problem is reported as `<file>:<line>: <what is wrong>` and stops the run before any request
is sent, so a bad file never produces a half-analysed result.
"""
import json
from collections import defaultdict
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


def read_entities(path: Path) -> list[Entity]:
    """Entities in order of first appearance, each with all its reviews."""
    reviews: dict[str, list[str]] = defaultdict(list)
    names: dict[str, str | None] = {}
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
        entity_id = _field(record, "entity_id", where)
        text = _field(record, "text", where)
        if len(text.encode("utf-8")) > MAX_TEXT_BYTES:
            raise InputError(f"{where}: 'text' is over {MAX_TEXT_BYTES:,} bytes")
        reviews[entity_id].append(text)
        names.setdefault(entity_id, _field(record, "entity_name", where, required=False))
    if not reviews:
        raise InputError(f"{path}: no reviews (expected JSON lines with entity_id and text)")
    return [Entity(entity_id, texts, names[entity_id]) for entity_id, texts in reviews.items()]
