"""A channel's header and parameter overrides: what they may hold, and how they apply.

An operator sets, per channel, extra headers sent upstream and request parameters
merged into every generation sent upstream (chat completions, completions, messages,
in the upstream's own format). They never replace what the relay itself must control:
the channel's key and the request's framing (headers), the model, and whether and how
the answer streams (parameters: a stream's usage is what it is billed by). Billing
still reads the usage the upstream reports.

What is stored was checked here (the admin form and the model's validators); the relay
filters the forbidden headers again when it loads a channel, so a row written some
other way cannot send them either.
"""

import copy
import json
import math
import re
from collections.abc import Iterable, Mapping
from typing import Any

from django.core.exceptions import ValidationError
from django.utils.translation import gettext as _

from core.inputs import json_depth_exceeds, storable_text_problem

# Headers only the relay sets: the channel's key (every vendor's name for it), where
# the request goes and how its body is framed.
FORBIDDEN_HEADERS = frozenset(
    {
        "authorization",
        "proxy-authorization",
        "api-key",
        "x-api-key",
        "x-goog-api-key",
        "host",
        "content-length",
        "content-type",
        "content-encoding",
        "transfer-encoding",
        "connection",
        "te",
        "upgrade",
        "expect",
    }
)
# Parameters only the relay sets: the model (its name upstream is the channel's model
# mapping) and streaming (a stream is billed by the usage the relay asks for).
FORBIDDEN_PARAMETERS = frozenset({"model", "stream", "stream_options"})

MAX_HEADERS = 20
MAX_PARAMETERS = 30
MAX_HEADER_NAME_LENGTH = 64
MAX_HEADER_VALUE_LENGTH = 1024
MAX_PARAMETER_NAME_LENGTH = 100
# Levels of nesting in a parameter's value: the object of overrides is the first, so a
# list of objects of lists (Gemini's safety settings, say) fits.
MAX_PARAMETER_DEPTH = 5
# The size of each object as JSON, in characters.
MAX_OVERRIDES_CHARS = 4096

# RFC 9110's token: the characters a header name may have.
_HEADER_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
# Visible ASCII and the space: what every HTTP client sends as a header value unchanged.
_HEADER_VALUE = re.compile(r"[\x20-\x7e]*")


def header_text(value: str | int | float | bool) -> str:
    """Return a header override's value as sent: JSON's spelling of a number or a bool."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _is_scalar(value: Any) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    return isinstance(value, str | int | bool)


def header_overrides_problems(value: Any) -> list[str]:
    """Return why `value` cannot be a channel's header overrides (none: it can)."""
    if not isinstance(value, Mapping):
        return [_("Enter a JSON object of header names and their values.")]
    if len(value) > MAX_HEADERS:
        return [_("At most %(count)s headers.") % {"count": MAX_HEADERS}]
    problems: list[str] = []
    seen: set[str] = set()
    for name, text in value.items():
        shown = str(name)[:MAX_HEADER_NAME_LENGTH]
        if not isinstance(name, str) or not _HEADER_NAME.fullmatch(name):
            problems.append(_("“%(name)s” is not a header name.") % {"name": shown})
            continue
        if len(name) > MAX_HEADER_NAME_LENGTH:
            problems.append(
                _("“%(name)s…” is longer than %(length)s characters.")
                % {"name": shown, "length": MAX_HEADER_NAME_LENGTH}
            )
            continue
        lowered = name.lower()
        if lowered in FORBIDDEN_HEADERS:
            problems.append(
                _(
                    "“%(name)s” is set by the relay itself (the channel's key, or how the "
                    "request is sent) and cannot be overridden."
                )
                % {"name": name}
            )
            continue
        if lowered in seen:
            problems.append(_("“%(name)s” is given twice.") % {"name": name})
            continue
        seen.add(lowered)
        if not _is_scalar(text):
            problems.append(
                _("The value of “%(name)s” must be a string, a number or true/false.")
                % {"name": name}
            )
            continue
        sent = header_text(text)
        if len(sent) > MAX_HEADER_VALUE_LENGTH or not _HEADER_VALUE.fullmatch(sent):
            problems.append(
                _(
                    "The value of “%(name)s” must be at most %(count)s characters of "
                    "printable ASCII (no line breaks)."
                )
                % {"name": name, "count": MAX_HEADER_VALUE_LENGTH}
            )
    return problems or _size_problems(value)


def _parameter_value_problem(value: Any) -> str | None:
    """Return why a parameter's value cannot be stored and sent as JSON, or None."""
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, Mapping):
            for key in item:
                if not isinstance(key, str):
                    return _("names in an object must be strings")
            pending.extend(item.keys())
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
        elif isinstance(item, str):
            problem = storable_text_problem(item)
            if problem:
                return problem
        elif isinstance(item, float):
            if not math.isfinite(item):
                return _("numbers must be finite")
        elif item is not None and not isinstance(item, int | bool):
            return _("only JSON values are allowed")
    return None


def parameter_overrides_problems(value: Any) -> list[str]:
    """Return why `value` cannot be a channel's parameter overrides (none: it can)."""
    if not isinstance(value, Mapping):
        return [_("Enter a JSON object of request parameters and their values.")]
    if len(value) > MAX_PARAMETERS:
        return [_("At most %(count)s parameters.") % {"count": MAX_PARAMETERS}]
    if json_depth_exceeds(dict(value), MAX_PARAMETER_DEPTH):
        return [
            _("Values may nest at most %(count)s levels deep.") % {"count": MAX_PARAMETER_DEPTH - 1}
        ]
    problems: list[str] = []
    for name, item in value.items():
        shown = str(name)[:MAX_PARAMETER_NAME_LENGTH]
        if (
            not isinstance(name, str)
            or not name.strip()
            or len(name) > MAX_PARAMETER_NAME_LENGTH
            or storable_text_problem(name)
        ):
            problems.append(_("“%(name)s” is not a parameter name.") % {"name": shown})
            continue
        if name in FORBIDDEN_PARAMETERS:
            problems.append(
                _(
                    "“%(name)s” is set by the relay itself and cannot be overridden (map "
                    "model names with the model mapping)."
                )
                % {"name": name}
            )
            continue
        problem = _parameter_value_problem(item)
        if problem:
            problems.append(
                _("The value of “%(name)s”: %(problem)s.") % {"name": shown, "problem": problem}
            )
    return problems or _size_problems(value)


def _size_problems(value: Mapping[str, Any]) -> list[str]:
    """Return the problem of an object (already checked to be plain JSON) too long to keep."""
    if len(json.dumps(value, ensure_ascii=False)) > MAX_OVERRIDES_CHARS:
        return [_("At most %(count)s characters of JSON.") % {"count": MAX_OVERRIDES_CHARS}]
    return []


def validate_header_overrides(value: Any) -> None:
    """The model's validator: raise ValidationError naming each problem."""
    problems = header_overrides_problems(value)
    if problems:
        raise ValidationError(problems)


def validate_parameter_overrides(value: Any) -> None:
    """The model's validator: raise ValidationError naming each problem."""
    problems = parameter_overrides_problems(value)
    if problems:
        raise ValidationError(problems)


def headers_to_send(value: Any) -> tuple[tuple[str, str], ...]:
    """Return the stored header overrides as the relay sends them: lower-case names.

    What could not have been stored through the admin (a forbidden name, a value a
    client would refuse to send) is left out, never sent.
    """
    if not isinstance(value, Mapping):
        return ()
    headers: dict[str, str] = {}
    for name, text in value.items():
        if not isinstance(name, str) or not _HEADER_NAME.fullmatch(name):
            continue
        lowered = name.lower()
        if lowered in FORBIDDEN_HEADERS or not _is_scalar(text):
            continue
        sent = header_text(text)
        if _HEADER_VALUE.fullmatch(sent):
            headers[lowered] = sent
    return tuple(headers.items())


def parameters_to_merge(value: Any) -> tuple[tuple[str, Any], ...]:
    """Return the stored parameter overrides as the relay merges them (forbidden ones out)."""
    if not isinstance(value, Mapping):
        return ()
    return tuple(
        (name, item)
        for name, item in value.items()
        if isinstance(name, str) and name not in FORBIDDEN_PARAMETERS
    )


def parameters_apply(
    payload: dict[str, Any], overrides: Iterable[tuple[str, Any]]
) -> dict[str, Any]:
    """Return the upstream request with the channel's parameters merged in.

    The channel's value replaces the client's; a null removes the client's parameter
    (for an upstream that refuses one it does not know).
    """
    merged = dict(payload)
    for name, value in overrides:
        if value is None:
            merged.pop(name, None)
        else:
            # Lists and objects are the channel's, shared by every request: copied.
            merged[name] = copy.deepcopy(value) if isinstance(value, dict | list) else value
    return merged
