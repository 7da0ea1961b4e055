"""A fake Anthropic Messages API on loopback, speaking Anthropic's wire format.

Its answers and stream events are built with the `anthropic` SDK's own types
(`Message`, `Raw*Event`, `ErrorResponse`) and dumped as the API sends them; what the
relay sends is checked against the SDK's `MessageCreateParams` (every block of every
message validated, no field the API does not take) before it is answered. A request
that fails the check is answered 400 as Anthropic would, and kept in `refused`.

A test sets `answer` (a `Message`) or `failure` (a status and an `ErrorResponse`);
`events_before_error` > 0 makes a stream send that many events, then an `error` event
and nothing more. The requests received are kept in `requests` (test data only).
"""

import json
from dataclasses import dataclass, field
from typing import Any

import pydantic
from anthropic.types import (
    ErrorResponse,
    InputJSONDelta,
    Message,
    MessageDeltaUsage,
    RawContentBlockDeltaEvent,
    RawContentBlockStartEvent,
    RawContentBlockStopEvent,
    RawMessageDeltaEvent,
    RawMessageStartEvent,
    RawMessageStopEvent,
    TextBlock,
    TextDelta,
    ToolUseBlock,
    Usage,
)
from anthropic.types.message_create_params import MessageCreateParamsBase
from anthropic.types.raw_message_delta_event import Delta

REQUEST_ADAPTER = pydantic.TypeAdapter(MessageCreateParamsBase)
# The SDK's types no longer list the sampling parameters (the newest models refuse
# `temperature`); the models before them take all three, as this fake does.
SAMPLING_FIELDS = frozenset({"temperature", "top_p", "top_k"})
REQUEST_FIELDS = (
    MessageCreateParamsBase.__required_keys__
    | MessageCreateParamsBase.__optional_keys__
    | SAMPLING_FIELDS
    | {"stream"}
)


def materialize(value: Any) -> Any:
    """Return `value` with pydantic's lazy iterators consumed (which validates them)."""
    if isinstance(value, dict):
        return {key: materialize(item) for key, item in value.items()}
    if isinstance(value, list | tuple) or type(value).__name__ == "ValidatorIterator":
        return [materialize(item) for item in value]
    return value


def request_problem(body: Any) -> str | None:
    """Return why `body` is not a Messages request the API takes, or None."""
    if not isinstance(body, dict):
        return "not an object"
    unknown = set(body) - REQUEST_FIELDS
    if unknown:
        return f"{sorted(unknown)[0]}: Extra inputs are not permitted"
    for name in SAMPLING_FIELDS & set(body):
        if not isinstance(body[name], int | float) or isinstance(body[name], bool):
            return f"{name}: Input should be a valid number"
    try:
        materialize(REQUEST_ADAPTER.validate_python(body))
    except pydantic.ValidationError as error:
        return str(error).splitlines()[0]
    return None


def text_message(
    text: str = "Hello from Claude",
    *,
    stop_reason: str = "end_turn",
    tool_calls: tuple[tuple[str, str, dict[str, Any]], ...] = (),
    input_tokens: int = 11,
    output_tokens: int = 7,
    cache_read: int = 0,
    cache_creation: int = 0,
) -> Message:
    """Return an answer: `text` then a tool_use block per (id, name, input)."""
    content: list[Any] = [TextBlock(type="text", text=text)] if text else []
    content += [
        ToolUseBlock(type="tool_use", id=tool_id, name=name, input=given)
        for tool_id, name, given in tool_calls
    ]
    return Message(
        id="msg_fake0123",
        type="message",
        role="assistant",
        model="claude-upstream",
        content=content,
        stop_reason=stop_reason,  # type: ignore[arg-type]
        stop_sequence=None,
        usage=Usage(
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            cache_read_input_tokens=cache_read,
            cache_creation_input_tokens=cache_creation,
        ),
    )


def stream_events(message: Message) -> list[dict[str, Any]]:
    """Return the events Anthropic streams `message` as: pieces of text, tool input in
    pieces of JSON, a ping, the stop reason and the final usage in message_delta."""
    usage = message.usage
    start = message.model_copy(
        update={
            "content": [],
            "stop_reason": None,
            "usage": usage.model_copy(update={"output_tokens": 1}),
        }
    )
    events: list[Any] = [RawMessageStartEvent(type="message_start", message=start)]
    events.append({"type": "ping"})
    for index, block in enumerate(message.content):
        if isinstance(block, TextBlock):
            events.append(
                RawContentBlockStartEvent(
                    type="content_block_start",
                    index=index,
                    content_block=TextBlock(type="text", text=""),
                )
            )
            text = block.text
            for piece in (text[: len(text) // 2], text[len(text) // 2 :]):
                events.append(
                    RawContentBlockDeltaEvent(
                        type="content_block_delta",
                        index=index,
                        delta=TextDelta(type="text_delta", text=piece),
                    )
                )
        else:
            assert isinstance(block, ToolUseBlock)
            events.append(
                RawContentBlockStartEvent(
                    type="content_block_start",
                    index=index,
                    content_block=block.model_copy(update={"input": {}}),
                )
            )
            raw = json.dumps(block.input)
            for piece in ("", raw[:3], raw[3:]):
                events.append(
                    RawContentBlockDeltaEvent(
                        type="content_block_delta",
                        index=index,
                        delta=InputJSONDelta(type="input_json_delta", partial_json=piece),
                    )
                )
        events.append(RawContentBlockStopEvent(type="content_block_stop", index=index))
    events.append(
        RawMessageDeltaEvent(
            type="message_delta",
            delta=Delta(stop_reason=message.stop_reason, stop_sequence=None),
            usage=MessageDeltaUsage(
                output_tokens=usage.output_tokens,
                input_tokens=usage.input_tokens,
                cache_read_input_tokens=usage.cache_read_input_tokens,
                cache_creation_input_tokens=usage.cache_creation_input_tokens,
            ),
        )
    )
    events.append(RawMessageStopEvent(type="message_stop"))
    return [event if isinstance(event, dict) else event.model_dump(mode="json") for event in events]


def error_response(kind: str, message: str) -> dict[str, Any]:
    """Return Anthropic's error body, built with the SDK's types."""
    return ErrorResponse.model_validate(
        {"type": "error", "error": {"type": kind, "message": message}, "request_id": "req_1"}
    ).model_dump(mode="json", exclude_none=True)


@dataclass
class FakeAnthropic:
    """The ASGI app of the fake Messages API."""

    answer: Message = field(default_factory=text_message)
    failure: tuple[int, dict[str, Any]] | None = None
    events_before_error: int = 0
    requests: list[dict[str, Any]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)

    def reset(self) -> None:
        self.__init__()  # type: ignore[misc]

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                else:
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        raw = b""
        while True:
            message = await receive()
            raw += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {name.decode(): value.decode() for name, value in scope["headers"]}
        if scope["path"] != "/v1/messages":
            await self._json(send, 404, error_response("not_found_error", "Not found"))
            return
        body = json.loads(raw)
        self.requests.append(body)
        self.headers.append(headers)
        problem = request_problem(body)
        if problem is not None:
            self.refused.append(problem)
            await self._json(send, 400, error_response("invalid_request_error", problem))
            return
        if self.failure is not None:
            await self._json(send, *self.failure)
            return
        if body.get("stream") is not True:
            await self._json(send, 200, self.answer.model_dump(mode="json"))
            return
        events = stream_events(self.answer)
        if self.events_before_error:
            overloaded = {"type": "overloaded_error", "message": "Overloaded"}
            events = [*events[: self.events_before_error], {"type": "error", "error": overloaded}]
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"text/event-stream; charset=utf-8")],
            }
        )
        for event in events:
            chunk = f"event: {event['type']}\ndata: {json.dumps(event)}\n\n".encode()
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b""})

    async def _json(self, send: Any, status: int, payload: Any) -> None:
        body = json.dumps(payload).encode()
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": body})
