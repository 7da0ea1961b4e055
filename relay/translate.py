"""Anthropic Messages ⇄ OpenAI chat completions, for `/v1/messages` on an OpenAI channel.

Text, system prompts, images and the sampling parameters translate; tool use does
not (such requests should go to an Anthropic channel).
"""

import json
import uuid
from typing import Any

STOP_REASONS = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use"}


def _openai_content(content: Any) -> Any:
    if isinstance(content, str):
        return content
    parts: list[dict[str, Any]] = []
    for block in content if isinstance(content, list) else []:
        if not isinstance(block, dict):
            continue
        if block.get("type") == "text":
            parts.append({"type": "text", "text": block.get("text", "")})
        elif block.get("type") == "image":
            source = block.get("source")
            if not isinstance(source, dict):
                source = {}
            if source.get("type") == "base64":
                url = f"data:{source.get('media_type')};base64,{source.get('data')}"
            else:
                url = source.get("url", "")
            parts.append({"type": "image_url", "image_url": {"url": url}})
    return parts


def _system_text(system: Any) -> str:
    """Return the text of a system prompt: a string, or the texts of its blocks joined."""
    if isinstance(system, str):
        return system
    blocks = system if isinstance(system, list) else []
    return "".join(
        block["text"]
        for block in blocks
        if isinstance(block, dict) and isinstance(block.get("text"), str)
    )


def messages_to_chat_request(body: dict[str, Any], *, model: str) -> dict[str, Any]:
    """Return the chat completions request equivalent to an Anthropic Messages request.

    What has no equivalent, or is not of the type Anthropic's API gives it (a `system`
    that is a number, `messages` that are not a list), is left out, never an error.
    """
    messages: list[dict[str, Any]] = []
    system = _system_text(body.get("system"))
    if system:
        messages.append({"role": "system", "content": system})
    given = body.get("messages")
    for message in given if isinstance(given, list) else []:
        if isinstance(message, dict):
            messages.append(
                {"role": message.get("role"), "content": _openai_content(message.get("content"))}
            )
    chat: dict[str, Any] = {"model": model, "messages": messages}
    for source, target in (
        ("max_tokens", "max_tokens"),
        ("temperature", "temperature"),
        ("top_p", "top_p"),
        ("stop_sequences", "stop"),
    ):
        if source in body:
            chat[target] = body[source]
    # As the relay reads it (relay.app): only `true` streams, so the answer is read as sent.
    if body.get("stream") is True:
        chat["stream"] = True
        chat["stream_options"] = {"include_usage": True}
    return chat


def chat_response_to_message(payload: dict[str, Any], *, model: str) -> dict[str, Any]:
    """Return the Anthropic message equivalent to a chat.completion answer."""
    choice = (payload.get("choices") or [{}])[0]
    text = (choice.get("message") or {}).get("content") or ""
    usage = payload.get("usage") or {}
    return {
        "id": f"msg_{uuid.uuid4().hex}",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [{"type": "text", "text": text}],
        "stop_reason": STOP_REASONS.get(choice.get("finish_reason") or "stop", "end_turn"),
        "stop_sequence": None,
        "usage": {
            "input_tokens": int(usage.get("prompt_tokens") or 0),
            "output_tokens": int(usage.get("completion_tokens") or 0),
        },
    }


def _event(name: str, payload: dict[str, Any]) -> bytes:
    return f"event: {name}\ndata: {json.dumps(payload, separators=(',', ':'))}\n\n".encode()


class ChatStreamToMessageEvents:
    """Turn a chat completion SSE stream into Anthropic message events, chunk by chunk."""

    def __init__(self, *, model: str) -> None:
        self.model = model
        self._pending = b""
        self._started = False
        self._stop_reason = "end_turn"
        self._usage: dict[str, int] = {}
        self._finished = False

    def _start(self) -> bytes:
        self._started = True
        message: dict[str, Any] = {
            "id": f"msg_{uuid.uuid4().hex}",
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": 0, "output_tokens": 0},
        }
        return _event("message_start", {"type": "message_start", "message": message}) + _event(
            "content_block_start",
            {
                "type": "content_block_start",
                "index": 0,
                "content_block": {"type": "text", "text": ""},
            },
        )

    def feed(self, chunk: bytes) -> bytes:
        """Return the Anthropic events for the chat chunks completed by `chunk`."""
        out = b"" if self._started else self._start()
        lines = (self._pending + chunk).split(b"\n")
        self._pending = lines.pop()
        for line in lines:
            line = line.strip()
            if not line.startswith(b"data:"):
                continue
            data = line[5:].strip()
            if data == b"[DONE]":
                out += self.finish()
                continue
            try:
                payload = json.loads(data)
            except ValueError:
                continue
            if isinstance(payload.get("usage"), dict):
                self._usage = payload["usage"]
            for choice in payload.get("choices") or []:
                text = (choice.get("delta") or {}).get("content")
                if text:
                    out += _event(
                        "content_block_delta",
                        {
                            "type": "content_block_delta",
                            "index": 0,
                            "delta": {"type": "text_delta", "text": text},
                        },
                    )
                if choice.get("finish_reason"):
                    self._stop_reason = STOP_REASONS.get(choice["finish_reason"], "end_turn")
        return out

    def finish(self) -> bytes:
        """Return the closing events (once)."""
        if self._finished:
            return b""
        self._finished = True
        out = b"" if self._started else self._start()
        usage = {
            "input_tokens": int(self._usage.get("prompt_tokens") or 0),
            "output_tokens": int(self._usage.get("completion_tokens") or 0),
        }
        out += _event("content_block_stop", {"type": "content_block_stop", "index": 0})
        out += _event(
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": self._stop_reason, "stop_sequence": None},
                "usage": usage,
            },
        )
        return out + _event("message_stop", {"type": "message_stop"})


# Anthropic's error `type` for each HTTP status the relay answers with.
ANTHROPIC_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    502: "api_error",
    503: "overloaded_error",
    504: "timeout_error",
}


def anthropic_error(status_code: int, message: str) -> dict[str, Any]:
    """Return an error body in Anthropic's shape: `{"type": "error", "error": {type, message}}`."""
    if status_code in ANTHROPIC_ERROR_TYPES:
        kind = ANTHROPIC_ERROR_TYPES[status_code]
    else:
        kind = "invalid_request_error" if status_code < 500 else "api_error"
    return {"type": "error", "error": {"type": kind, "message": message}}


def openai_error_to_anthropic(status_code: int, body: bytes) -> bytes:
    """Rewrite an OpenAI-compatible upstream's error body for an Anthropic-format client."""
    message = ""
    try:
        payload = json.loads(body)
    except ValueError:
        payload = None
    if isinstance(payload, dict):
        error = payload.get("error")
        if isinstance(error, dict):
            message = str(error.get("message") or "")
        elif isinstance(error, str):
            message = error
    if not message:
        message = f"The upstream refused the request (HTTP {status_code})."
    return json.dumps(anthropic_error(status_code, message)).encode()
