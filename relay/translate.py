"""Anthropic Messages ⇄ OpenAI chat completions, for `/v1/messages` on an OpenAI channel.

Text, system prompts, images, the sampling parameters and tool use translate:

- `tools` (name, description, input_schema) become OpenAI function tools, `tool_choice`
  auto/any/tool/none becomes auto/required/the named function/none, and
  `disable_parallel_tool_use` becomes `parallel_tool_calls: false`;
- an assistant turn's `tool_use` blocks become its `tool_calls` (input as JSON text);
- a user turn's `tool_result` blocks become `role: tool` messages, in their order and
  before the rest of that turn (an `is_error` result's text starts with "Error: ");
- an answer's `tool_calls` come back as `tool_use` blocks (finish reason `tool_calls`
  as stop reason `tool_use`), streamed as `input_json_delta` events.

What only hints (`cache_control`, `metadata`, `service_tier`, a text block's
`citations`) is left out. What would change the answer and has no equivalent (blocks
other than text, image, tool_use and tool_result; server tools such as web search;
`thinking`, `top_k`, `mcp_servers`, `container`) is refused: `Untranslatable`, a 400
naming the field. Values not of the type Anthropic's API gives them in the fields
that translated before tools did (`system`, `messages`, a block's text or source)
are left out, never an error.
"""

import json
import uuid
from typing import Any

from django.utils.translation import gettext_noop

from core.inputs import MAX_JSON_DEPTH, JsonTooDeep, json_loads

STOP_REASONS = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use"}

# Top-level fields that change the answer and have no chat completions equivalent.
REFUSED_FIELDS = ("top_k", "mcp_servers", "container", "context_management")
# Block types a message may hold that translate; any other type is refused.
TRANSLATED_BLOCKS = frozenset({"text", "image", "tool_use", "tool_result"})
TOOL_CHOICES = {"auto": "auto", "any": "required", "none": "none"}


class Untranslatable(Exception):
    """A request or answer the translation cannot carry: answered with `status_code`.

    `message` is an English msgid with `%(name)s` holes that `params` fill (as
    `relay.http.RelayError`'s, which it becomes).
    """

    def __init__(
        self, message: str, *, params: dict[str, object], status_code: int = 400, code: str
    ) -> None:
        super().__init__(message)
        self.message = message
        self.params = params
        self.status_code = status_code
        self.code = code


def client_json(text: str, field: str) -> Any:
    """Return the JSON a client sent inside a string (a tool call's arguments, a tool's
    result): nested as deep as a request body may be (`core.inputs`), since deeper, it
    could not be sent on (`json.dumps` recurses). Raise Untranslatable (400) for a
    deeper one, ValueError for one that is not JSON."""
    try:
        return json_loads(text)
    except JsonTooDeep:
        raise Untranslatable(
            gettext_noop("'%(field)s' holds JSON nested more than %(depth)s levels deep."),
            params={"field": field, "depth": MAX_JSON_DEPTH},
            code="invalid_request",
        ) from None


def _refuse(field: str) -> Untranslatable:
    return Untranslatable(
        gettext_noop(
            "'%(field)s' cannot be translated for this model's channel (OpenAI-compatible);"
            " remove it, or use a model served by an Anthropic channel."
        ),
        params={"field": field},
        code="untranslatable_request",
    )


def _refuse_invalid(field: str) -> Untranslatable:
    return Untranslatable(
        gettext_noop("'%(field)s' is not valid: see Anthropic's Messages API for its shape."),
        params={"field": field},
        code="invalid_request",
    )


def chat_field_invalid(field: str) -> Untranslatable:
    """The refusal of a chat completions field whose value has not the API's shape, by a
    translation of chat completions to another vendor's API (Gemini, Anthropic)."""
    return Untranslatable(
        gettext_noop("'%(field)s' is not valid: see OpenAI's chat completions API for its shape."),
        params={"field": field},
        code="invalid_request",
    )


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


def _tool_call(block: dict[str, Any], where: str) -> dict[str, Any]:
    """Return the OpenAI tool call of an assistant's `tool_use` block."""
    tool_id, name, given = block.get("id"), block.get("name"), block.get("input")
    if not isinstance(tool_id, str) or not isinstance(name, str) or not isinstance(given, dict):
        raise _refuse_invalid(where)
    arguments = json.dumps(given, ensure_ascii=False, separators=(",", ":"))
    return {"id": tool_id, "type": "function", "function": {"name": name, "arguments": arguments}}


def _tool_message(block: dict[str, Any], where: str) -> dict[str, Any]:
    """Return the `role: tool` message of a user's `tool_result` block."""
    tool_use_id, content = block.get("tool_use_id"), block.get("content", "")
    if not isinstance(tool_use_id, str):
        raise _refuse_invalid(where)
    if isinstance(content, str):
        text = content
    elif isinstance(content, list):
        texts = []
        for number, part in enumerate(content):
            kind = part.get("type") if isinstance(part, dict) else None
            if kind != "text":
                raise _refuse(f"{where}.content.{number} ({str(kind)[:40]})")
            if not isinstance(part.get("text"), str):
                raise _refuse_invalid(f"{where}.content.{number}")
            texts.append(part["text"])
        text = "\n".join(texts)
    else:
        raise _refuse_invalid(f"{where}.content")
    if block.get("is_error") is True:
        text = f"Error: {text}"
    return {"role": "tool", "tool_call_id": tool_use_id, "content": text}


def _chat_messages(number: int, message: dict[str, Any]) -> list[dict[str, Any]]:
    """Return the chat messages of one Anthropic message: its tool results first (one
    `role: tool` message each, in order), then the rest of the turn (if any)."""
    role, content = message.get("role"), message.get("content")
    if not isinstance(content, list):
        return [{"role": role, "content": _openai_content(content)}]
    results: list[dict[str, Any]] = []
    calls: list[dict[str, Any]] = []
    rest: list[Any] = []
    for position, block in enumerate(content):
        if not isinstance(block, dict):
            continue
        kind = block.get("type")
        where = f"messages.{number}.content.{position}"
        if kind not in TRANSLATED_BLOCKS:
            raise _refuse(f"{where} ({str(kind)[:40]})")
        if kind == "tool_use":
            if role != "assistant":
                raise _refuse_invalid(where)
            calls.append(_tool_call(block, where))
        elif kind == "tool_result":
            if role != "user":
                raise _refuse_invalid(where)
            results.append(_tool_message(block, where))
        else:
            rest.append(block)
    if calls:
        text = _openai_content(rest) if rest else None
        return [{"role": role, "content": text, "tool_calls": calls}]
    if rest or not results:
        results.append({"role": role, "content": _openai_content(rest)})
    return results


def _chat_tools(body: dict[str, Any]) -> dict[str, Any]:
    """Return the chat request's `tools`, `tool_choice` and `parallel_tool_calls`."""
    given = body.get("tools")
    if given is None:
        given = []
    if not isinstance(given, list):
        raise _refuse_invalid("tools")
    tools = []
    for number, tool in enumerate(given):
        if not isinstance(tool, dict):
            raise _refuse_invalid(f"tools.{number}")
        kind = tool.get("type")
        if kind not in (None, "custom"):
            # A server tool (web search, code execution, ...): Anthropic runs it itself.
            raise _refuse(f"tools.{number} ({str(kind)[:40]})")
        name, schema = tool.get("name"), tool.get("input_schema")
        if not isinstance(name, str) or not isinstance(schema, dict):
            raise _refuse_invalid(f"tools.{number}")
        function: dict[str, Any] = {"name": name}
        if isinstance(tool.get("description"), str):
            function["description"] = tool["description"]
        function["parameters"] = schema
        tools.append({"type": "function", "function": function})
    translated: dict[str, Any] = {"tools": tools} if tools else {}
    choice = body.get("tool_choice")
    if choice is None:
        return translated
    kind = choice.get("type") if isinstance(choice, dict) else None
    if kind not in ("auto", "any", "tool", "none"):
        raise _refuse_invalid("tool_choice")
    if not tools:
        if kind in ("auto", "none"):
            return translated  # No tools to choose among: nothing to say.
        raise _refuse_invalid("tool_choice")
    assert isinstance(choice, dict)
    if kind == "tool":
        if not isinstance(choice.get("name"), str):
            raise _refuse_invalid("tool_choice")
        translated["tool_choice"] = {"type": "function", "function": {"name": choice["name"]}}
    else:
        translated["tool_choice"] = TOOL_CHOICES[kind]
    if choice.get("disable_parallel_tool_use") is True and kind != "none":
        translated["parallel_tool_calls"] = False
    return translated


def messages_to_chat_request(body: dict[str, Any], *, model: str) -> dict[str, Any]:
    """Return the chat completions request equivalent to an Anthropic Messages request.

    Raise Untranslatable for what would change the answer and has no equivalent
    (the module's docstring lists what is refused and what is left out).
    """
    for field in REFUSED_FIELDS:
        if body.get(field) is not None:
            raise _refuse(field)
    thinking = body.get("thinking")
    if thinking is not None and not (
        isinstance(thinking, dict) and thinking.get("type") == "disabled"
    ):
        raise _refuse("thinking")
    messages: list[dict[str, Any]] = []
    system = _system_text(body.get("system"))
    if system:
        messages.append({"role": "system", "content": system})
    given = body.get("messages")
    for number, message in enumerate(given if isinstance(given, list) else []):
        if isinstance(message, dict):
            messages.extend(_chat_messages(number, message))
    chat: dict[str, Any] = {"model": model, "messages": messages}
    for source, target in (
        ("max_tokens", "max_tokens"),
        ("temperature", "temperature"),
        ("top_p", "top_p"),
        ("stop_sequences", "stop"),
    ):
        if source in body:
            chat[target] = body[source]
    chat.update(_chat_tools(body))
    # As the relay reads it (relay.app): only `true` streams, so the answer is read as sent.
    if body.get("stream") is True:
        chat["stream"] = True
        chat["stream_options"] = {"include_usage": True}
    return chat


def _tool_use_id() -> str:
    return f"toolu_{uuid.uuid4().hex}"


def _tool_use(call: Any) -> dict[str, Any]:
    """Return the `tool_use` block of an answer's tool call; Untranslatable (502) if its
    arguments are not a JSON object (passing them on as something else would corrupt
    the call)."""
    function = call.get("function") if isinstance(call, dict) else None
    if not isinstance(function, dict) or not isinstance(function.get("name"), str):
        raise _unreadable_tool_call()
    arguments = function.get("arguments")
    if arguments is None or arguments == "":
        given: Any = {}
    elif not isinstance(arguments, str):
        raise _unreadable_tool_call()
    else:
        try:
            given = json.loads(arguments)
        except (TypeError, ValueError):
            raise _unreadable_tool_call() from None
    if not isinstance(given, dict):
        raise _unreadable_tool_call()
    tool_id = call.get("id")
    return {
        "type": "tool_use",
        "id": tool_id if isinstance(tool_id, str) and tool_id else _tool_use_id(),
        "name": function["name"],
        "input": given,
    }


def _unreadable_tool_call() -> Untranslatable:
    return Untranslatable(
        gettext_noop(
            "The upstream answered with a tool call whose arguments are not a JSON object;"
            " it cannot be passed on as a tool_use block. Nothing was charged; try again."
        ),
        params={},
        status_code=502,
        code="upstream_unreadable_tool_call",
    )


def chat_response_to_message(payload: dict[str, Any], *, model: str) -> dict[str, Any]:
    """Return the Anthropic message equivalent to a chat.completion answer."""
    choice = (payload.get("choices") or [{}])[0]
    answer = choice.get("message") or {}
    text = answer.get("content") or ""
    calls = answer.get("tool_calls") or []
    content: list[dict[str, Any]] = [{"type": "text", "text": text}] if text or not calls else []
    content.extend(_tool_use(call) for call in calls)
    usage = payload.get("usage") or {}
    return {
        "id": f"msg_{uuid.uuid4().hex}",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": STOP_REASONS.get(choice.get("finish_reason") or "stop", "end_turn"),
        "stop_sequence": None,
        "usage": chat_usage_to_anthropic(usage),
    }


def _whole(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def chat_usage_to_anthropic(usage: Any) -> dict[str, int]:
    """Return Anthropic's usage for a chat completion's: its cached prompt tokens are
    `cache_read_input_tokens`, apart from `input_tokens` (Anthropic counts them apart)."""
    usage = usage if isinstance(usage, dict) else {}
    details = usage.get("prompt_tokens_details")
    cached = _whole(details.get("cached_tokens")) if isinstance(details, dict) else 0
    prompt = _whole(usage.get("prompt_tokens"))
    return {
        "input_tokens": max(prompt - cached, 0),
        "output_tokens": _whole(usage.get("completion_tokens")),
        "cache_read_input_tokens": min(cached, prompt),
    }


def _event(name: str, payload: dict[str, Any]) -> bytes:
    return f"event: {name}\ndata: {json.dumps(payload, separators=(',', ':'))}\n\n".encode()


class ChatStreamToMessageEvents:
    """Turn a chat completion SSE stream into Anthropic message events, chunk by chunk.

    Text and each tool call become content blocks in the order they arrive: a block is
    stopped when the next one starts. A tool call's arguments stream as
    `input_json_delta`s, as the upstream sends them (not checked: a client reads them
    as Anthropic's own partial JSON).
    """

    def __init__(self, *, model: str) -> None:
        self.model = model
        self._pending = b""
        self._started = False
        self._stop_reason = "end_turn"
        self._usage: dict[str, int] = {}
        self._finished = False
        # The index of the last block started (-1: none), and whether it is still open
        # and holds text.
        self._index = -1
        self._is_open = False
        self._is_text = False
        # An upstream tool call's index (or id) → the index of its block.
        self._tool_blocks: dict[Any, int] = {}
        self._last_tool: Any = None

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
        return _event("message_start", {"type": "message_start", "message": message})

    def _open(self, block: dict[str, Any]) -> bytes:
        out = self._close()
        self._index += 1
        self._is_open = True
        self._is_text = block["type"] == "text"
        return out + _event(
            "content_block_start",
            {"type": "content_block_start", "index": self._index, "content_block": block},
        )

    def _close(self) -> bytes:
        if not self._is_open:
            return b""
        self._is_open = False
        return _event("content_block_stop", {"type": "content_block_stop", "index": self._index})

    def _delta(self, index: int, delta: dict[str, Any]) -> bytes:
        return _event(
            "content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta}
        )

    def _tool_call_delta(self, call: dict[str, Any]) -> bytes:
        out = b""
        key = call.get("index")
        if not isinstance(key, int):
            key = ("id", call["id"]) if isinstance(call.get("id"), str) else self._last_tool
        function = call.get("function")
        if not isinstance(function, dict):
            function = {}
        if key is None or key not in self._tool_blocks:
            tool_id = call.get("id")
            name = function.get("name")
            out += self._open(
                {
                    "type": "tool_use",
                    "id": tool_id if isinstance(tool_id, str) and tool_id else _tool_use_id(),
                    "name": name if isinstance(name, str) else "",
                    "input": {},
                }
            )
            key = key if key is not None else ("block", self._index)
            self._tool_blocks[key] = self._index
        self._last_tool = key
        arguments = function.get("arguments")
        if isinstance(arguments, str) and arguments:
            delta = {"type": "input_json_delta", "partial_json": arguments}
            out += self._delta(self._tool_blocks[key], delta)
        return out

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
            if not isinstance(payload, dict):
                continue
            if isinstance(payload.get("usage"), dict):
                self._usage = payload["usage"]
            for choice in payload.get("choices") or []:
                if not isinstance(choice, dict):
                    continue
                delta = choice.get("delta")
                delta = delta if isinstance(delta, dict) else {}
                text = delta.get("content")
                if isinstance(text, str) and text:
                    if not (self._is_open and self._is_text):
                        out += self._open({"type": "text", "text": ""})
                    out += self._delta(self._index, {"type": "text_delta", "text": text})
                calls = delta.get("tool_calls")
                for call in calls if isinstance(calls, list) else []:
                    if isinstance(call, dict):
                        out += self._tool_call_delta(call)
                if choice.get("finish_reason"):
                    self._stop_reason = STOP_REASONS.get(choice["finish_reason"], "end_turn")
        return out

    def finish(self) -> bytes:
        """Return the closing events (once)."""
        if self._finished:
            return b""
        self._finished = True
        out = b"" if self._started else self._start()
        if self._index < 0:
            out += self._open({"type": "text", "text": ""})
        out += self._close()
        usage = chat_usage_to_anthropic(self._usage)
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
