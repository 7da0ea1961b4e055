"""OpenAI chat completions ⇄ Anthropic Messages, for `/v1/chat/completions` on an Anthropic channel.

The other way round from `relay.translate` (Messages on an OpenAI channel). What translates:

- `system` and `developer` messages at the start become `system` (text blocks, in order);
- user and assistant text; `image_url` parts become image blocks (a `data:` URL its
  base64 source, an http(s) URL a `url` source);
- `tools` (functions) become Anthropic tools (name, description, `input_schema`),
  `tool_choice` auto/none/required/named becomes auto/none/any/tool, and
  `parallel_tool_calls: false` becomes `disable_parallel_tool_use`;
- an assistant's `tool_calls` become `tool_use` blocks (arguments must be a JSON object),
  `role: tool` messages `tool_result` blocks of a user turn; turns of the same role are
  merged, as Anthropic requires user and assistant to alternate;
- `max_completion_tokens` / `max_tokens` become `max_tokens`, which Anthropic requires:
  without one, the completion the call's hold assumed (`relay.calls.completion_allowed`)
  is sent, so that what is held and what may be generated agree;
- `temperature` (0 to 1 at Anthropic), `top_p`, `stop` as `stop_sequences`, `user` as
  `metadata.user_id`.

What only hints (`stream_options`, `store`, `metadata`, `service_tier`, an image's
`detail`, `prompt_cache_key`, `safety_identifier`) is left out. Everything else that
would change the answer is refused with a 400 naming the field (`Untranslatable`):
`n` above 1, `logprobs`, `logit_bias`, `seed`, penalties, `response_format` other than
text, `audio`, `reasoning_effort` (Anthropic's extended thinking takes a token budget
and answers with blocks chat completions cannot carry), a temperature above 1, a
message's `name`, a system message after the conversation began, and any field this
translation does not know. Answers come back as chat completions (whole, or as
`chat.completion.chunk` events ending with a usage chunk and `data: [DONE]`).
"""

import base64
import binascii
import json
import re
import time
from typing import Any
from urllib.parse import urlsplit

from django.utils.translation import gettext_noop

from .translate import Untranslatable, chat_field_invalid, client_json
from .usage import Usage, anthropic_usage_after_delta, usage_from_openai

# Completion tokens asked for when neither the request nor the relay gave a limit
# (relay.calls.DEFAULT_COMPLETION_RESERVE; the relay passes the hold's own figure).
FALLBACK_MAX_TOKENS = 4096

FINISH_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}
TOOL_CHOICES = {"auto": "auto", "none": "none", "required": "any"}
# Request fields that only hint how the call is handled: left out.
HINT_FIELDS = frozenset(
    {"stream_options", "store", "metadata", "service_tier", "prompt_cache_key", "safety_identifier"}
)
# Request fields that translate (the rest are refused).
TRANSLATED_FIELDS = frozenset(
    {
        "model",
        "messages",
        "stream",
        "max_tokens",
        "max_completion_tokens",
        "temperature",
        "top_p",
        "stop",
        "user",
        "tools",
        "tool_choice",
        "parallel_tool_calls",
    }
)
# Fields refused unless they hold the value that asks for nothing (OpenAI's default).
NEUTRAL_VALUES: dict[str, tuple[Any, ...]] = {
    "n": (1,),
    "logprobs": (False,),
    "logit_bias": ({},),
    "frequency_penalty": (0, 0.0),
    "presence_penalty": (0, 0.0),
    "modalities": (["text"],),
    "response_format": ({"type": "text"},),
}
DATA_URL = re.compile(r"data:(image/[A-Za-z0-9.+-]+);base64,(.*)", re.DOTALL)
ROLES = frozenset({"system", "developer", "user", "assistant", "tool"})
MESSAGE_FIELDS = {
    "system": frozenset({"role", "content"}),
    "developer": frozenset({"role", "content"}),
    "user": frozenset({"role", "content"}),
    "assistant": frozenset({"role", "content", "tool_calls", "refusal"}),
    "tool": frozenset({"role", "content", "tool_call_id"}),
}


def _refuse(field: str) -> Untranslatable:
    return Untranslatable(
        gettext_noop(
            "'%(field)s' cannot be translated for this model's channel (Anthropic); remove "
            "it, or use a model served by an OpenAI-compatible channel."
        ),
        params={"field": field},
        code="untranslatable_request",
    )


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _text_of_parts(content: Any, where: str) -> list[str]:
    """Return the texts of a system, developer or tool message: a string, or text parts."""
    if isinstance(content, str):
        return [content]
    if not isinstance(content, list):
        raise chat_field_invalid(where)
    texts = []
    for number, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind != "text":
            raise _refuse(f"{where}.{number} ({str(kind)[:40]})")
        if not isinstance(part.get("text"), str):
            raise chat_field_invalid(f"{where}.{number}")
        texts.append(part["text"])
    return texts


def _text_blocks(texts: list[str]) -> list[dict[str, Any]]:
    return [{"type": "text", "text": text} for text in texts]


def _image_block(part: dict[str, Any], where: str) -> dict[str, Any]:
    image = part.get("image_url")
    url = image.get("url") if isinstance(image, dict) else image
    if not isinstance(url, str):
        raise chat_field_invalid(where)
    found = DATA_URL.fullmatch(url)
    if found:
        try:
            base64.b64decode(found.group(2), validate=True)
        except (binascii.Error, ValueError):
            raise chat_field_invalid(where) from None
        source = {"type": "base64", "media_type": found.group(1), "data": found.group(2)}
    elif url.startswith(("https://", "http://")):
        try:
            urlsplit(url)
        except ValueError:  # "http://[x/a.png": not a URL Anthropic could fetch
            raise chat_field_invalid(where) from None
        source = {"type": "url", "url": url}
    else:
        raise _refuse(f"{where} (image_url)")
    return {"type": "image", "source": source}


def _content_blocks(content: Any, where: str) -> list[dict[str, Any]]:
    """Return the Anthropic blocks of a user or assistant message's content."""
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    if not isinstance(content, list):
        raise chat_field_invalid(where)
    blocks = []
    for number, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        place = f"{where}.{number}"
        if kind == "text":
            if not isinstance(part.get("text"), str):
                raise chat_field_invalid(place)
            blocks.append({"type": "text", "text": part["text"]})
        elif kind == "image_url":
            blocks.append(_image_block(part, place))
        else:
            # input_audio, file, refusal: nothing Anthropic takes carries them.
            raise _refuse(f"{place} ({str(kind)[:40]})")
    return blocks


def _tool_use(call: Any, where: str) -> dict[str, Any]:
    """Return the `tool_use` block of an assistant's tool call; 400 unless its arguments
    are a JSON object (Anthropic's `input`)."""
    function = call.get("function") if isinstance(call, dict) else None
    if (
        not isinstance(call, dict)
        or call.get("type", "function") != "function"
        or not isinstance(call.get("id"), str)
        or not isinstance(function, dict)
        or not isinstance(function.get("name"), str)
    ):
        raise chat_field_invalid(where)
    arguments = function.get("arguments")
    try:
        given = (
            client_json(arguments, f"{where}.function.arguments")
            if isinstance(arguments, str) and arguments
            else {}
        )
    except ValueError:
        given = None
    if not isinstance(given, dict) or not isinstance(arguments, str | None):
        raise Untranslatable(
            gettext_noop(
                "'%(field)s' must be a JSON object (Anthropic takes a tool call's "
                "arguments only as one)."
            ),
            params={"field": f"{where}.function.arguments"},
            code="invalid_request",
        )
    return {"type": "tool_use", "id": call["id"], "name": function["name"], "input": given}


def _turn(number: int, message: Any) -> tuple[str, list[dict[str, Any]]]:
    """Return the Anthropic role and blocks of one chat message (not a system one)."""
    where = f"messages.{number}"
    role = message.get("role")
    for key in message:
        if key not in MESSAGE_FIELDS[role]:
            raise _refuse(f"{where}.{key}")
    if role == "tool":
        if not isinstance(message.get("tool_call_id"), str):
            raise chat_field_invalid(f"{where}.tool_call_id")
        content = message.get("content")
        texts = _text_of_parts(content, f"{where}.content")
        result = {
            "type": "tool_result",
            "tool_use_id": message["tool_call_id"],
            "content": content if isinstance(content, str) else _text_blocks(texts),
        }
        return "user", [result]
    blocks = _content_blocks(message.get("content"), f"{where}.content")
    if role == "assistant":
        if message.get("refusal") is not None:
            raise _refuse(f"{where}.refusal")
        calls = message.get("tool_calls")
        if calls is not None and not isinstance(calls, list):
            raise chat_field_invalid(f"{where}.tool_calls")
        for position, call in enumerate(calls or []):
            blocks.append(_tool_use(call, f"{where}.tool_calls.{position}"))
    return role, blocks


def _conversation(given: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Return the system blocks and the alternating turns of a chat request's messages."""
    if not isinstance(given, list) or not given:
        raise chat_field_invalid("messages")
    system: list[dict[str, Any]] = []
    turns: list[dict[str, Any]] = []
    for number, message in enumerate(given):
        role = message.get("role") if isinstance(message, dict) else None
        if not isinstance(role, str) or role not in ROLES:
            raise _refuse(f"messages.{number}.role ({str(role)[:40]})")
        assert isinstance(message, dict)
        if role in ("system", "developer"):
            if turns:
                # Anthropic has one system prompt, before the conversation.
                raise _refuse(f"messages.{number} ({role} after the conversation began)")
            for key in message:
                if key not in MESSAGE_FIELDS[role]:
                    raise _refuse(f"messages.{number}.{key}")
            texts = _text_of_parts(message.get("content"), f"messages.{number}.content")
            system.extend(_text_blocks(texts))
            continue
        anthropic_role, blocks = _turn(number, message)
        if turns and turns[-1]["role"] == anthropic_role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": anthropic_role, "content": blocks})
    return system, turns


def _tools(body: dict[str, Any]) -> dict[str, Any]:
    """Return the Messages request's `tools` and `tool_choice`."""
    given = body.get("tools")
    if given is not None and not isinstance(given, list):
        raise chat_field_invalid("tools")
    tools = []
    for number, tool in enumerate(given or []):
        function = tool.get("function") if isinstance(tool, dict) else None
        if not isinstance(tool, dict) or tool.get("type") != "function":
            raise _refuse(f"tools.{number}")
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            raise chat_field_invalid(f"tools.{number}")
        if function.get("strict") is True:
            raise _refuse(f"tools.{number}.function.strict")
        schema = function.get("parameters", {"type": "object", "properties": {}})
        if not isinstance(schema, dict):
            raise chat_field_invalid(f"tools.{number}.function.parameters")
        translated = {"name": function["name"], "input_schema": schema}
        if isinstance(function.get("description"), str):
            translated["description"] = function["description"]
        tools.append(translated)
    out: dict[str, Any] = {"tools": tools} if tools else {}
    choice = body.get("tool_choice")
    parallel = body.get("parallel_tool_calls")
    if parallel not in (None, True, False):
        raise chat_field_invalid("parallel_tool_calls")
    if choice is None:
        choice = "auto"
    if isinstance(choice, str) and choice in TOOL_CHOICES:
        anthropic_choice: dict[str, Any] = {"type": TOOL_CHOICES[choice]}
    elif (
        isinstance(choice, dict)
        and choice.get("type") == "function"
        and isinstance(choice.get("function"), dict)
        and isinstance(choice["function"].get("name"), str)
    ):
        anthropic_choice = {"type": "tool", "name": choice["function"]["name"]}
    else:
        raise chat_field_invalid("tool_choice")
    if not tools:
        if anthropic_choice["type"] in ("auto", "none"):
            return out  # No tools to choose among: nothing to say.
        raise chat_field_invalid("tool_choice")
    if parallel is False and anthropic_choice["type"] != "none":
        anthropic_choice["disable_parallel_tool_use"] = True
    if body.get("tool_choice") is not None or parallel is False:
        out["tool_choice"] = anthropic_choice
    return out


def _check_fields(body: dict[str, Any]) -> None:
    for field, value in body.items():
        if field in TRANSLATED_FIELDS or field in HINT_FIELDS or value is None:
            continue
        if value in NEUTRAL_VALUES.get(field, ()):
            continue
        raise _refuse(field)


def chat_to_messages_request(
    body: dict[str, Any], *, model: str, max_tokens: int | None = None
) -> dict[str, Any]:
    """Return the Anthropic Messages request equivalent to a chat completions request.

    `max_tokens` is the completion the relay's hold assumed, sent when the request sets
    no limit. Raise Untranslatable (400, naming the field) for what has no equivalent.
    """
    _check_fields(body)
    system, turns = _conversation(body.get("messages"))
    limit = body.get("max_completion_tokens") or body.get("max_tokens")
    request: dict[str, Any] = {
        "model": model,
        "max_tokens": limit or max_tokens or FALLBACK_MAX_TOKENS,
        "messages": turns,
    }
    if system:
        request["system"] = system
    temperature = body.get("temperature")
    if temperature is not None:
        if not _number(temperature):
            raise chat_field_invalid("temperature")
        if temperature > 1:
            raise Untranslatable(
                gettext_noop(
                    "'temperature' above 1 cannot be sent to this model's channel "
                    "(Anthropic takes 0 to 1); lower it."
                ),
                params={},
                code="untranslatable_request",
            )
        request["temperature"] = temperature
    if body.get("top_p") is not None:
        if not _number(body["top_p"]):
            raise chat_field_invalid("top_p")
        request["top_p"] = body["top_p"]
    stop = body.get("stop")
    if isinstance(stop, str):
        request["stop_sequences"] = [stop]
    elif isinstance(stop, list) and all(isinstance(item, str) for item in stop):
        if stop:
            request["stop_sequences"] = stop
    elif stop is not None:
        raise chat_field_invalid("stop")
    user = body.get("user")
    if user is not None:
        if not isinstance(user, str):
            raise chat_field_invalid("user")
        request["metadata"] = {"user_id": user}
    request.update(_tools(body))
    if body.get("stream") is True:
        request["stream"] = True
    return request


# --- Answers --------------------------------------------------------------------------


def _unreadable(kind: str) -> Untranslatable:
    return Untranslatable(
        gettext_noop(
            "The upstream answered with a content block of type '%(type)s' that a chat "
            "completion cannot carry. Nothing was charged; try again."
        ),
        params={"type": kind},
        status_code=502,
        code="upstream_untranslatable_answer",
    )


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def chat_usage(usage: Any) -> dict[str, Any]:
    """Return OpenAI's usage for Anthropic's: cache reads and cache writes are prompt
    tokens too (Anthropic counts them apart from `input_tokens`), reads being cached."""
    usage = usage if isinstance(usage, dict) else {}
    cached = _count(usage.get("cache_read_input_tokens"))
    prompt = (
        _count(usage.get("input_tokens"))
        + cached
        + _count(usage.get("cache_creation_input_tokens"))
    )
    completion = _count(usage.get("output_tokens"))
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": cached},
    }


def _tool_call(block: dict[str, Any], index: int | None = None) -> dict[str, Any]:
    given = block.get("input")
    if not isinstance(block.get("id"), str) or not isinstance(block.get("name"), str):
        raise _unreadable("tool_use (without an id or a name)")
    arguments = json.dumps(given if isinstance(given, dict) else {}, ensure_ascii=False)
    call: dict[str, Any] = {
        "id": block["id"],
        "type": "function",
        "function": {"name": block["name"], "arguments": arguments},
    }
    if index is not None:
        call["index"] = index
    return call


def message_to_chat_response(payload: dict[str, Any], *, model: str) -> dict[str, Any]:
    """Return the chat.completion equivalent to an Anthropic message.

    Text blocks become the content, `tool_use` blocks the tool calls; thinking blocks
    (only sent when a channel's parameter overrides ask for them) are left out, as
    chat completions never show reasoning; any other block is a 502.
    """
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    for block in payload.get("content") or []:
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "text":
            texts.append(str(block.get("text") or ""))
        elif kind == "tool_use":
            calls.append(_tool_call(block))
        elif kind not in ("thinking", "redacted_thinking"):
            raise _unreadable(str(kind)[:40])
    message: dict[str, Any] = {
        "role": "assistant",
        "content": "".join(texts) if texts or not calls else None,
        "refusal": None,
    }
    if calls:
        message["tool_calls"] = calls
    return {
        "id": f"chatcmpl-{payload.get('id') or ''}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": message,
                "logprobs": None,
                "finish_reason": FINISH_REASONS.get(str(payload.get("stop_reason")), "stop"),
            }
        ],
        "usage": chat_usage(payload.get("usage")),
    }


class UpstreamStreamError(Exception):
    """The upstream's stream broke off (an `error` event, or no `message_stop`): the
    relay ends the client's stream there and marks it interrupted."""


def _block_index(event: dict[str, Any]) -> int:
    index = event.get("index")
    return index if isinstance(index, int) else -1


def _data(payload: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(payload, separators=(",", ":")).encode() + b"\n\n"


class MessageEventsToChatStream:
    """Turn Anthropic's message events into chat.completion.chunk events, chunk by chunk.

    Text deltas become content deltas, a `tool_use` block a tool call (its id and name
    first, then its `input_json_delta`s as arguments), `message_delta`'s stop reason the
    finish reason; `message_stop` ends the stream with the usage chunk (`choices: []`,
    what the relay bills by) and `data: [DONE]`. An `error` event is passed on as
    OpenAI's streams carry one (`data: {"error": …}`, which the openai SDK raises), and
    the stream is ended there as broken.
    """

    def __init__(self, *, model: str) -> None:
        self.model = model
        self._pending = b""
        self._id = "chatcmpl-"
        self._created = int(time.time())
        self._usage: dict[str, Any] = {}
        # An Anthropic block's index → the index of its tool call.
        self._tools: dict[int, int] = {}
        self._finished = False
        self._broken = False

    def _chunk(self, delta: dict[str, Any], finish_reason: str | None = None) -> bytes:
        return _data(
            {
                "id": self._id,
                "object": "chat.completion.chunk",
                "created": self._created,
                "model": self.model,
                "choices": [
                    {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
                ],
            }
        )

    def feed(self, chunk: bytes) -> bytes:
        """Return the chat chunks for the Anthropic events completed by `chunk`."""
        if self._finished or self._broken:
            return b""
        lines = (self._pending + chunk).split(b"\n")
        self._pending = lines.pop()
        out = b""
        for line in lines:
            line = line.strip()
            if not line.startswith(b"data:"):
                continue
            try:
                event = json.loads(line[5:])
            except ValueError:
                continue
            if isinstance(event, dict):
                out += self._event(event)
            if self._finished or self._broken:
                break
        return out

    def _event(self, event: dict[str, Any]) -> bytes:
        kind = event.get("type")
        if kind == "message_start":
            message = event.get("message")
            message = message if isinstance(message, dict) else {}
            self._id = f"chatcmpl-{message.get('id') or ''}"
            usage = message.get("usage")
            self._usage.update(usage if isinstance(usage, dict) else {})
            return self._chunk({"role": "assistant", "content": ""})
        if kind == "content_block_start":
            block = event.get("content_block")
            if isinstance(block, dict) and block.get("type") == "tool_use":
                index = len(self._tools)
                self._tools[_block_index(event)] = index
                call = _tool_call({**block, "input": {}}, index)
                call["function"]["arguments"] = ""
                return self._chunk({"tool_calls": [call]})
            if isinstance(block, dict) and block.get("text"):
                return self._chunk({"content": block["text"]})
            return b""
        if kind == "content_block_delta":
            return self._delta(event)
        if kind == "message_delta":
            self._usage = anthropic_usage_after_delta(self._usage, event.get("usage"))
            delta = event.get("delta")
            reason = delta.get("stop_reason") if isinstance(delta, dict) else None
            if reason:
                return self._chunk({}, FINISH_REASONS.get(str(reason), "stop"))
            return b""
        if kind == "message_stop":
            return self._end()
        if kind == "error":
            self._broken = True
            error = event.get("error")
            error = error if isinstance(error, dict) else {}
            return _data(
                {
                    "error": {
                        "message": str(error.get("message") or "The upstream's stream failed."),
                        "type": str(error.get("type") or "api_error"),
                        "param": None,
                        "code": None,
                    }
                }
            )
        return b""  # ping, and events Anthropic may add

    def _delta(self, event: dict[str, Any]) -> bytes:
        delta = event.get("delta")
        delta = delta if isinstance(delta, dict) else {}
        kind = delta.get("type")
        if kind == "text_delta" and isinstance(delta.get("text"), str):
            return self._chunk({"content": delta["text"]})
        if kind == "input_json_delta" and isinstance(delta.get("partial_json"), str):
            index = self._tools.get(_block_index(event))
            if index is None or not delta["partial_json"]:
                return b""
            arguments = {"function": {"arguments": delta["partial_json"]}}
            return self._chunk({"tool_calls": [{"index": index, **arguments}]})
        return b""  # thinking and signature deltas, citations: not shown by chat completions

    def _end(self) -> bytes:
        self._finished = True
        usage_chunk = {
            "id": self._id,
            "object": "chat.completion.chunk",
            "created": self._created,
            "model": self.model,
            "choices": [],
            "usage": chat_usage(self._usage),
        }
        return _data(usage_chunk) + b"data: [DONE]\n\n"

    def usage(self) -> Usage | None:
        """Return the usage the events read so far said (the relay bills a stream cut
        short by it), or None before any did."""
        if not self._usage:
            return None
        return usage_from_openai({"usage": chat_usage(self._usage)})

    def finish(self) -> bytes:
        """Return nothing more after `message_stop`; raise if the stream broke off."""
        if not self._finished:
            raise UpstreamStreamError("the upstream's stream ended without message_stop")
        return b""


def anthropic_error_to_openai(status_code: int, body: bytes) -> bytes:
    """Rewrite an Anthropic error body (`{"type": "error", "error": {type, message}}`) in
    OpenAI's shape, for a chat completions client."""
    message, kind = "", "invalid_request_error" if status_code < 500 else "api_error"
    try:
        payload = json.loads(body)
    except ValueError:
        payload = None
    error = payload.get("error") if isinstance(payload, dict) else None
    if isinstance(error, dict):
        message = str(error.get("message") or "")
        kind = str(error.get("type") or kind)
    if not message:
        message = f"The upstream refused the request (HTTP {status_code})."
    return json.dumps(
        {"error": {"message": message, "type": kind, "param": None, "code": None}}
    ).encode()
