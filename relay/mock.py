"""Answers of the `mock` channel kind, built locally in the upstreams' own formats.

The demo (`make run`) routes every model here, so a first request works offline;
the fake upstream of the tests and the benchmark serves the same answers over HTTP.
"""

import base64
import hashlib
import json
import struct
import time
import uuid
from typing import Any

from .usage import estimate_prompt_tokens

REPLY = (
    "Hello from Comet's mock channel. This answer was made up locally, "
    "and the tokens it counts are billed like any other."
)
REPLY_PIECES = [piece + " " for piece in REPLY.split(" ")[:-1]] + [REPLY.split(" ")[-1]]
EMBEDDING_DIMENSIONS = 16


def _max_tokens(body: dict[str, Any]) -> int:
    for key in ("max_completion_tokens", "max_tokens", "max_output_tokens"):
        value = body.get(key)
        if isinstance(value, int) and value > 0:
            return value
    return len(REPLY_PIECES)


def _pieces(body: dict[str, Any]) -> list[str]:
    return REPLY_PIECES[: _max_tokens(body)]


def _sse(payload: dict[str, Any] | str, event: str | None = None) -> bytes:
    data = payload if isinstance(payload, str) else json.dumps(payload, separators=(",", ":"))
    prefix = f"event: {event}\n" if event else ""
    return f"{prefix}data: {data}\n\n".encode()


def _openai_usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def chat_completion(body: dict[str, Any], *, model: str) -> bytes:
    """Return a chat.completion JSON body."""
    pieces = _pieces(body)
    answer = {
        "id": f"chatcmpl-{uuid.uuid4().hex}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "".join(pieces)},
                "finish_reason": "stop" if len(pieces) == len(REPLY_PIECES) else "length",
            }
        ],
        "usage": _openai_usage(estimate_prompt_tokens(body), len(pieces)),
    }
    return json.dumps(answer, separators=(",", ":")).encode()


def chat_completion_chunks(body: dict[str, Any], *, model: str) -> list[bytes]:
    """Return the SSE events of a streamed chat completion, one per token."""
    identifier = f"chatcmpl-{uuid.uuid4().hex}"
    created = int(time.time())
    pieces = _pieces(body)
    include_usage = bool((body.get("stream_options") or {}).get("include_usage"))

    def chunk(delta: dict[str, Any], finish_reason: str | None) -> bytes:
        payload: dict[str, Any] = {
            "id": identifier,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
        }
        if include_usage:
            payload["usage"] = None
        return _sse(payload)

    events = [chunk({"role": "assistant", "content": ""}, None)]
    events.extend(chunk({"content": piece}, None) for piece in pieces)
    events.append(chunk({}, "stop" if len(pieces) == len(REPLY_PIECES) else "length"))
    if include_usage:
        usage_payload = {
            "id": identifier,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": [],
            "usage": _openai_usage(estimate_prompt_tokens(body), len(pieces)),
        }
        events.append(_sse(usage_payload))
    events.append(_sse("[DONE]"))
    return events


def completion(body: dict[str, Any], *, model: str) -> bytes:
    """Return a text_completion JSON body."""
    pieces = _pieces(body)
    answer = {
        "id": f"cmpl-{uuid.uuid4().hex}",
        "object": "text_completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {"index": 0, "text": "".join(pieces), "logprobs": None, "finish_reason": "stop"}
        ],
        "usage": _openai_usage(estimate_prompt_tokens(body), len(pieces)),
    }
    return json.dumps(answer, separators=(",", ":")).encode()


def completion_chunks(body: dict[str, Any], *, model: str) -> list[bytes]:
    """Return the SSE events of a streamed text completion."""
    identifier = f"cmpl-{uuid.uuid4().hex}"
    created = int(time.time())
    pieces = _pieces(body)
    events = [
        _sse(
            {
                "id": identifier,
                "object": "text_completion",
                "created": created,
                "model": model,
                "choices": [{"index": 0, "text": piece, "logprobs": None, "finish_reason": None}],
            }
        )
        for piece in pieces
    ]
    if (body.get("stream_options") or {}).get("include_usage"):
        usage = _openai_usage(estimate_prompt_tokens(body), len(pieces))
        events.append(
            _sse(
                {
                    "id": identifier,
                    "object": "text_completion",
                    "created": created,
                    "model": model,
                    "choices": [],
                    "usage": usage,
                }
            )
        )
    events.append(_sse("[DONE]"))
    return events


def _embedding(text: str, encoding_format: str) -> list[float] | str:
    digest = hashlib.sha256(text.encode()).digest()
    values = [(byte - 128) / 128 for byte in digest[:EMBEDDING_DIMENSIONS]]
    if encoding_format == "base64":
        return base64.b64encode(struct.pack(f"<{len(values)}f", *values)).decode()
    return values


def embeddings(body: dict[str, Any], *, model: str) -> bytes:
    """Return an embeddings JSON body, one deterministic vector per input."""
    raw_input = body.get("input")
    inputs = raw_input if isinstance(raw_input, list) else [raw_input]
    encoding_format = body.get("encoding_format") or "float"
    data = [
        {
            "object": "embedding",
            "index": index,
            "embedding": _embedding(json.dumps(item), encoding_format),
        }
        for index, item in enumerate(inputs)
    ]
    prompt_tokens = estimate_prompt_tokens(body)
    answer = {
        "object": "list",
        "data": data,
        "model": model,
        "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens},
    }
    return json.dumps(answer, separators=(",", ":")).encode()


def anthropic_message(body: dict[str, Any], *, model: str) -> bytes:
    """Return an Anthropic Messages API JSON body."""
    pieces = _pieces(body)
    answer = {
        "id": f"msg_{uuid.uuid4().hex}",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [{"type": "text", "text": "".join(pieces)}],
        "stop_reason": "end_turn" if len(pieces) == len(REPLY_PIECES) else "max_tokens",
        "stop_sequence": None,
        "usage": {"input_tokens": estimate_prompt_tokens(body), "output_tokens": len(pieces)},
    }
    return json.dumps(answer, separators=(",", ":")).encode()


def anthropic_message_events(body: dict[str, Any], *, model: str) -> list[bytes]:
    """Return the SSE events of a streamed Anthropic message."""
    pieces = _pieces(body)
    message: dict[str, Any] = {
        "id": f"msg_{uuid.uuid4().hex}",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {"input_tokens": estimate_prompt_tokens(body), "output_tokens": 1},
    }
    events = [
        _sse({"type": "message_start", "message": message}, "message_start"),
        _sse(
            {
                "type": "content_block_start",
                "index": 0,
                "content_block": {"type": "text", "text": ""},
            },
            "content_block_start",
        ),
    ]
    events.extend(
        _sse(
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "text_delta", "text": piece},
            },
            "content_block_delta",
        )
        for piece in pieces
    )
    events.append(_sse({"type": "content_block_stop", "index": 0}, "content_block_stop"))
    events.append(
        _sse(
            {
                "type": "message_delta",
                "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                "usage": {"output_tokens": len(pieces)},
            },
            "message_delta",
        )
    )
    events.append(_sse({"type": "message_stop"}, "message_stop"))
    return events


def _response(body: dict[str, Any], *, model: str, identifier: str, done: bool) -> dict[str, Any]:
    """Return a Responses API `response` object: in progress (no output yet), or done."""
    pieces = _pieces(body)
    complete = len(pieces) == len(REPLY_PIECES)
    response: dict[str, Any] = {
        "id": identifier,
        "object": "response",
        "created_at": int(time.time()),
        "status": "in_progress",
        "error": None,
        "incomplete_details": None,
        "instructions": None,
        "max_output_tokens": body.get("max_output_tokens"),
        "model": model,
        "output": [],
        "parallel_tool_calls": True,
        "previous_response_id": body.get("previous_response_id"),
        "reasoning": {"effort": None, "summary": None},
        "store": body.get("store", True),
        "temperature": 1.0,
        "text": {"format": {"type": "text"}},
        "tool_choice": "auto",
        "tools": [],
        "top_p": 1.0,
        "truncation": "disabled",
        "usage": None,
        "user": None,
        "metadata": {},
    }
    if done:
        prompt_tokens = estimate_prompt_tokens(
            {"input": body.get("input"), "system": body.get("instructions")}
        )
        response.update(
            status="completed" if complete else "incomplete",
            incomplete_details=None if complete else {"reason": "max_output_tokens"},
            output=[_response_message(identifier, "".join(pieces), done=True)],
            usage={
                "input_tokens": prompt_tokens,
                "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
                "output_tokens": len(pieces),
                "output_tokens_details": {"reasoning_tokens": 0},
                "total_tokens": prompt_tokens + len(pieces),
            },
        )
    return response


def _response_message(identifier: str, text: str, *, done: bool) -> dict[str, Any]:
    """Return the output message of a response (its id derived from the response's)."""
    return {
        "id": "msg_" + identifier.removeprefix("resp_"),
        "type": "message",
        "status": "completed" if done else "in_progress",
        "role": "assistant",
        "content": [_output_text(text)] if done else [],
    }


def _output_text(text: str) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def response(body: dict[str, Any], *, model: str) -> bytes:
    """Return a Responses API `response` JSON body."""
    answer = _response(body, model=model, identifier=f"resp_{uuid.uuid4().hex}", done=True)
    return json.dumps(answer, separators=(",", ":")).encode()


def response_events(body: dict[str, Any], *, model: str) -> list[bytes]:
    """Return the SSE events of a streamed response, as OpenAI sends them: created, in
    progress, the message and its text part opened, a text delta per token, each closed,
    then `response.completed` (or `response.incomplete` at max_output_tokens) with usage."""
    identifier = f"resp_{uuid.uuid4().hex}"
    started = _response(body, model=model, identifier=identifier, done=False)
    finished = _response(body, model=model, identifier=identifier, done=True)
    message = _response_message(identifier, "", done=False)
    text = finished["output"][0]["content"][0]["text"]
    where = {"item_id": message["id"], "output_index": 0, "content_index": 0}
    events: list[tuple[str, dict[str, Any]]] = [
        ("response.created", {"response": started}),
        ("response.in_progress", {"response": started}),
        ("response.output_item.added", {"output_index": 0, "item": message}),
        ("response.content_part.added", {**where, "part": _output_text("")}),
    ]
    events.extend(
        ("response.output_text.delta", {**where, "delta": piece, "logprobs": []})
        for piece in _pieces(body)
    )
    events += [
        ("response.output_text.done", {**where, "text": text, "logprobs": []}),
        ("response.content_part.done", {**where, "part": _output_text(text)}),
        ("response.output_item.done", {"output_index": 0, "item": finished["output"][0]}),
        (f"response.{finished['status']}", {"response": finished}),
    ]
    return [
        _sse({"type": kind, **payload, "sequence_number": number}, kind)
        for number, (kind, payload) in enumerate(events)
    ]


# Upstream path → (complete answer, streamed events); embeddings do not stream.
ANSWERS = {
    "/chat/completions": (chat_completion, chat_completion_chunks),
    "/completions": (completion, completion_chunks),
    "/embeddings": (embeddings, None),
    "/messages": (anthropic_message, anthropic_message_events),
    "/responses": (response, response_events),
}


def answer(path: str, body: dict[str, Any], *, model: str, stream: bool) -> bytes | list[bytes]:
    """Return the answer to a request for `path`: one body, or the events of a stream."""
    complete, streamed = ANSWERS[path]
    if stream and streamed is not None:
        return streamed(body, model=model)
    return complete(body, model=model)


# --- Images and audio ---------------------------------------------------------------------

# A one-pixel transparent PNG: the smallest image every client decodes.
TINY_PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
)
TRANSCRIPT = "Hello from Comet's mock channel."
# The speech answer: this long a WAV of silence, 16-bit mono at 8 kHz.
SPEECH_MILLISECONDS = 250
SPEECH_SAMPLE_RATE = 8_000


def wav_silence(milliseconds: int, *, sample_rate: int = SPEECH_SAMPLE_RATE) -> bytes:
    """Return a WAV file of silence (16-bit mono) this long."""
    data = b"\x00\x00" * (sample_rate * milliseconds // 1000)
    fmt = struct.pack("<HHIIHH", 1, 1, sample_rate, sample_rate * 2, 2, 16)
    chunks = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt
    chunks += b"data" + struct.pack("<I", len(data)) + data
    return b"RIFF" + struct.pack("<I", len(chunks)) + chunks


def _images(body: dict[str, Any]) -> bytes:
    count = body.get("n", 1)
    count = int(count) if str(count).isdigit() else 1
    encoded = base64.b64encode(TINY_PNG).decode()
    if body.get("response_format") == "url":
        item = {"url": f"data:image/png;base64,{encoded}"}
    else:
        item = {"b64_json": encoded}
    answer = {"created": int(time.time()), "data": [dict(item) for _ in range(max(1, count))]}
    return json.dumps(answer, separators=(",", ":")).encode()


def _transcript(body: dict[str, Any]) -> tuple[bytes, bytes]:
    response_format = body.get("response_format") or "json"
    if response_format in ("text", "srt", "vtt"):
        return b"text/plain; charset=utf-8", TRANSCRIPT.encode()
    answer: dict[str, Any] = {"text": TRANSCRIPT}
    if response_format == "verbose_json":
        answer.update(task="transcribe", language="english", duration=1.0, segments=[])
    return b"application/json", json.dumps(answer, separators=(",", ":")).encode()


def media_answer(path: str, body: dict[str, Any]) -> tuple[bytes, bytes] | None:
    """Return the content type and body of the answer to an image or audio request for
    `path` (its JSON body, or its form's text fields), or None for another path."""
    if path in ("/images/generations", "/images/edits"):
        return b"application/json", _images(body)
    if path == "/audio/speech":
        return b"audio/wav", wav_silence(SPEECH_MILLISECONDS)
    if path in ("/audio/transcriptions", "/audio/translations"):
        return _transcript(body)
    return None
