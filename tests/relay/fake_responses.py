"""A fake upstream of OpenAI's Responses API (`POST /v1/responses`) on loopback.

Written from the openai SDK's types (`openai/types/responses/`), not from the relay's
mock: a whole answer is a `response` object; a stream is OpenAI's SSE events
(`event:` + `data:`, each with its `sequence_number`, no `[DONE]`), ending with
`response.completed` (or `response.incomplete`) whose response carries the usage.

One server plays several channels: the first path segment before `/v1` names the
channel (`/a/v1`, `/b/v1`), and the next ones are options: `cached-N` reports N of the
input tokens as cached, `reasoning-N` N of the output tokens as reasoning,
`chunk-delay-MS` waits between events, `incomplete` stops at max_output_tokens,
`input-N` reports N input tokens (a long conversation) instead of INPUT_TOKENS,
`failed-unbilled` ends the stream with `response.failed` whose usage is null.
Like OpenAI, a channel knows only the responses it made: a `previous_response_id` it
did not make is refused 400 `previous_response_not_found`.

What it records of each request: its channel, model, and the parameters the relay must
pass untouched (`store`, `include`, `reasoning`, whether `stream_options` was sent,
`previous_response_id`) — never the input.
"""

import asyncio
import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

# What every answer reports: the prompt (cached tokens included) and the text streamed.
INPUT_TOKENS = 40
TEXT_PIECES = ["Bonjour", " from", " the", " fake", " Responses", " upstream."]
TEXT = "".join(TEXT_PIECES)
MISSING = "<missing>"


@dataclass
class SeenRequest:
    channel: str
    model: str
    stream: bool
    store: Any
    include: Any
    reasoning: Any
    sent_stream_options: bool
    previous_response_id: Any


@dataclass
class FakeResponsesState:
    requests: list[SeenRequest] = field(default_factory=list)
    # response id → the channel that made it.
    made: dict[str, str] = field(default_factory=dict)
    in_flight: int = 0


class FakeResponses:
    """The ASGI app of the fake Responses upstream."""

    def __init__(self) -> None:
        self.state = FakeResponsesState()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        segments = scope["path"].strip("/").split("/")
        raw = b""
        while True:
            message = await receive()
            raw += message.get("body", b"")
            if not message.get("more_body"):
                break
        if "v1" not in segments or segments[segments.index("v1") + 1 :] != ["responses"]:
            await _json(send, 404, _error("Unknown route.", "not_found", None))
            return
        options = segments[: segments.index("v1")]
        channel = options[0] if options else "default"
        try:
            await self._answer(channel, options, json.loads(raw), send)
        except (ValueError, TypeError, AttributeError):
            # What OpenAI answers a request it cannot read.
            await _json(send, 400, _error("Invalid request.", "invalid_value", None))

    async def _answer(
        self, channel: str, options: list[str], body: dict[str, Any], send: Any
    ) -> None:
        stream = body.get("stream") is True
        self.state.requests.append(
            SeenRequest(
                channel=channel,
                model=body.get("model", ""),
                stream=stream,
                store=body.get("store", MISSING),
                include=body.get("include", MISSING),
                reasoning=body.get("reasoning", MISSING),
                sent_stream_options="stream_options" in body,
                previous_response_id=body.get("previous_response_id"),
            )
        )
        previous = body.get("previous_response_id")
        if previous is not None and self.state.made.get(previous) != channel:
            await _json(
                send,
                400,
                _error(
                    f"Previous response with id '{previous}' not found.",
                    "previous_response_not_found",
                    "previous_response_id",
                ),
            )
            return
        answer = _Answer(body, options)
        self.state.made[answer.id] = channel
        if not stream:
            await _json(send, 200, answer.response(done=True))
            return
        self.state.in_flight += 1
        try:
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [(b"content-type", b"text/event-stream; charset=utf-8")],
                }
            )
            delay = answer.chunk_delay
            for event in answer.events():
                if delay:
                    await asyncio.sleep(delay)
                await send({"type": "http.response.body", "body": event, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            self.state.in_flight -= 1


class _Answer:
    """One response: its id, text and usage, whole or as events."""

    def __init__(self, body: dict[str, Any], options: list[str]) -> None:
        self.id = f"resp_{uuid.uuid4().hex}"
        self.item_id = f"msg_{uuid.uuid4().hex}"
        self.body = body
        self.cached = 0
        self.reasoning = 0
        self.chunk_delay = 0.0
        self.input_tokens = INPUT_TOKENS
        limit = body.get("max_output_tokens")
        self.pieces = TEXT_PIECES
        self.status = "completed"
        for option in options[1:]:
            if option.startswith("cached-"):
                self.cached = int(option.removeprefix("cached-"))
            elif option.startswith("reasoning-"):
                self.reasoning = int(option.removeprefix("reasoning-"))
            elif option.startswith("chunk-delay-"):
                self.chunk_delay = int(option.removeprefix("chunk-delay-")) / 1000
            elif option.startswith("input-"):
                self.input_tokens = int(option.removeprefix("input-"))
            elif option == "failed-unbilled":
                self.status = "failed"
            elif option == "incomplete" and isinstance(limit, int):
                self.pieces = TEXT_PIECES[:limit]
                self.status = "incomplete"
        self.text = "".join(self.pieces)
        self.created_at = int(time.time())

    @property
    def output_tokens(self) -> int:
        return len(self.pieces) + self.reasoning

    def usage(self) -> dict[str, Any]:
        return {
            "input_tokens": self.input_tokens,
            "input_tokens_details": {"cached_tokens": self.cached, "cache_write_tokens": 0},
            "output_tokens": self.output_tokens,
            "output_tokens_details": {"reasoning_tokens": self.reasoning},
            "total_tokens": self.input_tokens + self.output_tokens,
        }

    def message(self, *, done: bool) -> dict[str, Any]:
        return {
            "id": self.item_id,
            "type": "message",
            "status": "completed" if done else "in_progress",
            "role": "assistant",
            "content": [_text_part(self.text)] if done else [],
        }

    def response(self, *, done: bool) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "response",
            "created_at": self.created_at,
            "status": self.status if done else "in_progress",
            "background": False,
            "error": (
                {"code": "server_error", "message": "The model failed."}
                if done and self.status == "failed"
                else None
            ),
            "incomplete_details": (
                {"reason": "max_output_tokens"} if done and self.status == "incomplete" else None
            ),
            "instructions": self.body.get("instructions"),
            "max_output_tokens": self.body.get("max_output_tokens"),
            "model": self.body.get("model"),
            "output": [self.message(done=True)] if done else [],
            "parallel_tool_calls": True,
            "previous_response_id": self.body.get("previous_response_id"),
            "reasoning": {"effort": None, "summary": None},
            "service_tier": "default",
            "store": self.body.get("store", True),
            "temperature": 1.0,
            "text": {"format": {"type": "text"}, "verbosity": "medium"},
            "tool_choice": "auto",
            "tools": [],
            "top_p": 1.0,
            "truncation": "disabled",
            "usage": self.usage() if done and self.status != "failed" else None,
            "user": None,
            "metadata": {},
        }

    def events(self) -> list[bytes]:
        where = {"item_id": self.item_id, "output_index": 0, "content_index": 0}
        events: list[tuple[str, dict[str, Any]]] = [
            ("response.created", {"response": self.response(done=False)}),
            ("response.in_progress", {"response": self.response(done=False)}),
            ("response.output_item.added", {"output_index": 0, "item": self.message(done=False)}),
            ("response.content_part.added", {**where, "part": _text_part("")}),
        ]
        for piece in self.pieces:
            events.append(("response.output_text.delta", {**where, "delta": piece, "logprobs": []}))
        events += [
            ("response.output_text.done", {**where, "text": self.text, "logprobs": []}),
            ("response.content_part.done", {**where, "part": _text_part(self.text)}),
            ("response.output_item.done", {"output_index": 0, "item": self.message(done=True)}),
            (f"response.{self.status}", {"response": self.response(done=True)}),
        ]
        return [
            (
                f"event: {kind}\n"
                f"data: {json.dumps({'type': kind, **data, 'sequence_number': number})}\n\n"
            ).encode()
            for number, (kind, data) in enumerate(events)
        ]


def _text_part(text: str) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def _error(message: str, code: str, param: str | None) -> dict[str, Any]:
    return {
        "error": {
            "message": message,
            "type": "invalid_request_error",
            "param": param,
            "code": code,
        }
    }


async def _json(send: Any, status: int, payload: Any) -> None:
    body = json.dumps(payload).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
