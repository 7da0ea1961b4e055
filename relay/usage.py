"""Token counts: read from an upstream's answer, or estimated when it gave none."""

import json
import re
from dataclasses import dataclass
from typing import Any

# An SSE event with some text in it: a content delta, a completion's text, a text_delta.
TEXT_EVENT = re.compile(rb'"(?:content|text)":"[^"]')


@dataclass(slots=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    is_estimated: bool = False


def estimate_text_tokens(text: str) -> int:
    """Return a rough token count of `text`: about four characters a token."""
    return (len(text) + 3) // 4


def _texts(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        found: list[str] = []
        for item in value:
            found.extend(_texts(item))
        return found
    if isinstance(value, dict):
        found = []
        for key in ("content", "text", "input", "prompt", "system"):
            if key in value:
                found.extend(_texts(value[key]))
        return found
    return []


def estimate_prompt_tokens(body: dict[str, Any]) -> int:
    """Return an estimate of a request's prompt tokens from its messages or input."""
    texts: list[str] = []
    for key in ("messages", "prompt", "input", "system"):
        if key in body:
            texts.extend(_texts(body[key]))
    return max(1, sum(estimate_text_tokens(text) for text in texts))


def estimate_answer_tokens(payload: Any) -> int:
    """Return an estimate of the tokens of an answer that reported no usage."""
    if not isinstance(payload, dict):
        return 0
    texts: list[str] = []
    for choice in payload.get("choices") or []:
        if isinstance(choice, dict):
            texts.extend(_texts(choice.get("message") or {}))
            texts.extend(_texts(choice.get("text") or ""))
    texts.extend(_texts(payload.get("content") or []))  # Anthropic
    texts.extend(_texts(payload.get("output") or []))  # OpenAI's Responses
    return sum(estimate_text_tokens(text) for text in texts)


# The most tokens one answer's usage may report: far above any model's context, and
# low enough that the cost stays a sane integer. More is read as this many.
MAX_REPORTED_TOKENS = 100_000_000


def _count(value: Any) -> int:
    """Read a token count an upstream reported: a whole number from 0 to the maximum.

    Anything else (a negative, a fraction, text, a bool, a number past every model) is
    read as the nearest count that makes sense, so a misbehaving upstream can neither
    break the settle of an answered request nor make it cost a fortune.
    """
    if isinstance(value, bool) or not isinstance(value, int | float):
        return 0
    if value != value:  # NaN
        return 0
    return int(max(0, min(value, MAX_REPORTED_TOKENS)))


def usage_from_openai(payload: dict[str, Any]) -> Usage | None:
    """Return the usage of an OpenAI-shaped answer (or final stream chunk), if it has one."""
    usage = payload.get("usage")
    if not isinstance(usage, dict):
        return None
    details = usage.get("prompt_tokens_details") or {}
    return Usage(
        prompt_tokens=_count(usage.get("prompt_tokens")),
        completion_tokens=_count(usage.get("completion_tokens")),
        cached_tokens=_count(details.get("cached_tokens")) if isinstance(details, dict) else 0,
    )


def usage_from_anthropic(payload: dict[str, Any]) -> Usage | None:
    """Return the usage of an Anthropic answer, if it has one."""
    usage = payload.get("usage")
    if not isinstance(usage, dict):
        return None
    return Usage(
        prompt_tokens=_anthropic_prompt_tokens(usage),
        completion_tokens=_count(usage.get("output_tokens")),
        cached_tokens=_count(usage.get("cache_read_input_tokens")),
    )


def _anthropic_prompt_tokens(usage: dict[str, Any]) -> int:
    """Return the prompt tokens of Anthropic's usage: `input_tokens` counts neither the
    tokens read from its cache (billed at the cached ratio) nor those written to it
    (billed as input)."""
    return (
        _count(usage.get("input_tokens"))
        + _count(usage.get("cache_read_input_tokens"))
        + _count(usage.get("cache_creation_input_tokens"))
    )


ANTHROPIC_PROMPT_FIELDS = ("input_tokens", "cache_read_input_tokens", "cache_creation_input_tokens")


def anthropic_usage_after_delta(known: dict[str, Any], delta: Any) -> dict[str, Any]:
    """Return a stream's Anthropic usage once a `message_delta`'s usage is read over what
    `message_start` said (`known`).

    The delta's `output_tokens` is the final count. Its prompt counts are taken only
    when they add up to more than 0 (Anthropic's since 2025, and the relay's translated
    streams, whose message_start cannot know them yet): Anthropic-compatible gateways
    send `input_tokens` 0 or null there, which would wipe message_start's count. Each
    count then given replaces the known one; one left out is kept.
    """
    merged = dict(known)
    if not isinstance(delta, dict):
        return merged
    if delta.get("output_tokens") is not None:
        merged["output_tokens"] = delta["output_tokens"]
    if sum(_count(delta.get(name)) for name in ANTHROPIC_PROMPT_FIELDS) > 0:
        merged.update(
            {name: delta[name] for name in ANTHROPIC_PROMPT_FIELDS if delta.get(name) is not None}
        )
    return merged


def usage_from_responses(payload: dict[str, Any]) -> Usage | None:
    """Return the usage of a Responses API `response` object, if it has one.

    `input_tokens` include the cached ones (as chat's `prompt_tokens` do), and
    `output_tokens` the reasoning ones: billed as the prompt and the completion.
    """
    usage = payload.get("usage")
    if not isinstance(usage, dict):
        return None
    details = usage.get("input_tokens_details") or {}
    return Usage(
        prompt_tokens=_count(usage.get("input_tokens")),
        completion_tokens=_count(usage.get("output_tokens")),
        cached_tokens=_count(details.get("cached_tokens")) if isinstance(details, dict) else 0,
    )


# The Responses stream events that end a response, each carrying the response's usage.
RESPONSE_END_EVENTS = frozenset({"response.completed", "response.incomplete", "response.failed"})
# A Responses text delta, and the event that names the response.
RESPONSE_DELTA_EVENT = re.compile(rb'"delta": ?"[^"]')
RESPONSE_CREATED = b'"response.created"'


class StreamUsageReader:
    """Watch SSE bytes going past for usage, without keeping any content.

    Only `data:` lines that mention "usage" are parsed; events carrying text are
    counted, which is the estimate of completion tokens when no usage arrives
    (OpenAI-compatible servers send about one token per event). A Responses stream
    (`responses`) is billed by the usage of the event that ends it (completed,
    incomplete or failed), and its `response.created` event gives the response's id.
    """

    def __init__(self, *, anthropic: bool = False, responses: bool = False) -> None:
        self.anthropic = anthropic
        self.responses = responses
        self.events = 0
        self.usage: Usage | None = None
        # The id of the response a Responses stream makes (never any of its content).
        self.response_id = ""
        self._pending = b""
        # An Anthropic stream's usage as its events said it so far.
        self._anthropic: dict[str, Any] = {}

    def feed(self, chunk: bytes) -> None:
        data = self._pending + chunk
        lines = data.split(b"\n")
        self._pending = lines.pop()
        for line in lines:
            self._line(line.strip())

    def _line(self, line: bytes) -> None:
        if not line.startswith(b"data:"):
            return
        payload = line[5:].strip()
        if payload == b"[DONE]":
            return
        if self.responses:
            self._responses_line(payload)
            return
        if b'"usage"' not in payload:
            if TEXT_EVENT.search(payload):
                self.events += 1
            return
        try:
            parsed = json.loads(payload)
        except ValueError:
            return
        if not isinstance(parsed, dict):
            return
        if self.anthropic:
            self._anthropic_usage(parsed)
        else:
            if TEXT_EVENT.search(payload):
                self.events += 1
            found = usage_from_openai(parsed)
            if found is not None:
                self.usage = found

    def _responses_line(self, payload: bytes) -> None:
        if b'"usage"' not in payload and RESPONSE_CREATED not in payload:
            if RESPONSE_DELTA_EVENT.search(payload):
                self.events += 1
            return
        try:
            parsed = json.loads(payload)
        except ValueError:
            return
        response = parsed.get("response") if isinstance(parsed, dict) else None
        if not isinstance(response, dict):
            return
        kind = parsed.get("type")
        if kind == "response.created" and isinstance(response.get("id"), str):
            self.response_id = response["id"]
        elif kind in RESPONSE_END_EVENTS:
            self.usage = usage_from_responses(response) or self.usage

    def _anthropic_usage(self, parsed: dict[str, Any]) -> None:
        kind = parsed.get("type")
        if kind == "message_start":
            message = parsed.get("message")
            usage = message.get("usage") if isinstance(message, dict) else None
            if isinstance(usage, dict):
                self._anthropic = usage
                self.usage = usage_from_anthropic({"usage": usage})
        elif kind == "message_delta":
            self._anthropic = anthropic_usage_after_delta(self._anthropic, parsed.get("usage"))
            self.usage = usage_from_anthropic({"usage": self._anthropic})

    def result(self, *, prompt_tokens: int) -> Usage:
        """Return the usage the upstream reported, or an estimate flagged as such: the
        prompt as counted for the hold (`relay.counting`), a token per text event."""
        if self.usage is not None and (self.usage.prompt_tokens or self.usage.completion_tokens):
            return self.usage
        return Usage(
            prompt_tokens=prompt_tokens,
            completion_tokens=self.events,
            is_estimated=True,
        )
