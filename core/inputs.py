"""The one place that says what a number or a JSON body from a request may be.

`str.isdigit()` is true for "²", "①", "٣" and a fullwidth "1" (U+FF11); `int()` turns some
of them into numbers and raises on others, and `Decimal()` takes "٣", "1e309" and "nan".
Request input is parsed here instead: ASCII digits only, bounded to what the
database holds.
"""

import json
import re
from collections.abc import Iterable
from decimal import Decimal
from typing import Any

from django.utils.translation import gettext

# The largest value of PostgreSQL's bigint (and of every id column Comet has).
BIGINT_MAX = 2**63 - 1
# Request bodies nested deeper than this are refused: no API Comet serves or relays
# needs more (tool schemas included), and code that walks a body recursively stays
# far from Python's recursion limit.
MAX_JSON_DEPTH = 128

_ASCII_INTEGER = re.compile(r"[0-9]+")
_ASCII_DECIMAL = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)")


def ascii_int(text: str | None, *, maximum: int = BIGINT_MAX) -> int | None:
    """Return `text` as a whole number when it is ASCII digits from 0 to `maximum`, else None."""
    if text is None or not _ASCII_INTEGER.fullmatch(text):
        return None
    # Past 19 digits nothing fits a bigint; the check also spares int() a huge string.
    if len(text.lstrip("0")) > len(str(maximum)):
        return None
    value = int(text)
    return value if value <= maximum else None


def ascii_decimal(text: str | None, *, signed: bool = False) -> Decimal | None:
    """Return `text` as a Decimal when it is plain ASCII decimal notation, else None.

    "25", "25.50", ".5" (and "-3.5" when `signed`); never an exponent, "inf" or "nan".
    """
    if text is None or not _ASCII_DECIMAL.fullmatch(text):
        return None
    if not signed and text[0] in "+-":
        return None
    return Decimal(text)


class JsonTooDeep(ValueError):
    """A JSON document nested deeper than allowed (a ValueError, as malformed JSON is)."""


def json_loads(raw: bytes | str, *, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """Return the parsed JSON document; raise ValueError for anything that is not usable.

    Besides malformed JSON and invalid UTF-8 (which `json.loads` refuses itself), a
    document nested deeper than `max_depth` is refused (JsonTooDeep): deep enough,
    `json.loads` raises RecursionError, and any later recursive walk of it could too.
    """
    try:
        value = json.loads(raw)
    except RecursionError:
        raise JsonTooDeep(f"JSON nested more than {max_depth} levels deep.") from None
    if json_depth_exceeds(value, max_depth):
        raise JsonTooDeep(f"JSON nested more than {max_depth} levels deep.")
    return value


def json_depth_exceeds(value: Any, max_depth: int) -> bool:
    """Return whether lists and objects in `value` nest deeper than `max_depth`."""
    pending: list[tuple[Any, int]] = [(value, 1)]
    while pending:
        item, depth = pending.pop()
        children: Iterable[Any]
        if isinstance(item, dict):
            children = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > max_depth:
            return True
        pending.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return False


def storable_text_problem(text: str) -> str | None:
    """Return why PostgreSQL cannot store `text` (NUL, lone surrogate), or None if it can."""
    if "\x00" in text:
        return gettext("contains a NUL character")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return gettext("contains a lone surrogate (not valid Unicode)")
    return None
