"""OpenAI chat completions ⇄ Google Gemini's native API, for a `gemini` channel.

A chat request becomes a `generateContent` request (`:streamGenerateContent?alt=sse`
when streamed), sent with the key in `x-goog-api-key`; Gemini's answer, whole or
streamed, becomes a chat completion. `/v1/messages` goes through the same translation
after `relay.translate` has made it a chat request.

What translates (relay/README.md, "Gemini channels", has the table): system and
developer messages (before the conversation) as `systemInstruction`; text, images (data
URLs inline, http(s) URLs as `fileData`), audio and data-URL files; function tools (their
JSON Schema as `parametersJsonSchema`) and `tool_choice`; an assistant's tool calls as
`functionCall` parts and tool results as `functionResponse` parts; the sampling
parameters and `response_format`. What would change the answer and cannot be carried is
refused with `Untranslatable` (400, naming the field); only hints (`user`, `metadata`,
`store`, `service_tier`, a message's `name`, a tool's `strict`, ...) are left out.
"""

import base64
import binascii
import json
import mimetypes
import time
import uuid
from typing import Any
from urllib.parse import quote, urlsplit

from django.utils.translation import gettext_noop

from . import translate
from .selectors import ChannelRoute
from .translate import Untranslatable, chat_field_invalid
from .usage import Usage, usage_from_openai

# What an OpenAI client reads for each of Gemini's finish reasons (any other: "stop").
FINISH_REASONS = {
    "STOP": "stop",
    "MAX_TOKENS": "length",
    "SAFETY": "content_filter",
    "RECITATION": "content_filter",
    "BLOCKLIST": "content_filter",
    "PROHIBITED_CONTENT": "content_filter",
    "SPII": "content_filter",
    "IMAGE_SAFETY": "content_filter",
    "IMAGE_PROHIBITED_CONTENT": "content_filter",
    "MODEL_ARMOR": "content_filter",
}
TOOL_CHOICE_MODES = {"auto": "AUTO", "none": "NONE", "required": "ANY"}
# Request fields that only hint (nothing in the answer depends on them), or that the
# relay itself reads: left out.
HINT_FIELDS = frozenset(
    {
        "model",
        "stream",
        "stream_options",
        "user",
        "metadata",
        "store",
        "service_tier",
        "safety_identifier",
        "prompt_cache_key",
        "prompt_cache_retention",
    }
)
# Request fields that translate (below).
TRANSLATED_FIELDS = frozenset(
    {
        "messages",
        "tools",
        "tool_choice",
        "parallel_tool_calls",
        "max_tokens",
        "max_completion_tokens",
        "temperature",
        "top_p",
        "stop",
        "n",
        "seed",
        "presence_penalty",
        "frequency_penalty",
        "response_format",
        "logprobs",
        "modalities",
    }
)
# Gemini takes a signature of the model's thoughts with each turn's first function
# call, and refuses (Gemini 3) a call without one. A chat client cannot keep it: this
# value, which Google documents for history that did not come from the model, says so.
SKIPPED_THOUGHT_SIGNATURE = "skip_thought_signature_validator"
AUDIO_TYPES = {"wav": "audio/wav", "mp3": "audio/mp3"}
# Google's API hosts: an image URL there is refused (Gemini would read it as our account).
GOOGLE_APIS = "googleapis.com"
# The reasons (`google.rpc.ErrorInfo`) of Gemini's refusals of the key itself; any other
# 4xx (a 403 for a file it may not read, say) refuses the request, not the key.
KEY_REFUSAL_REASONS = frozenset(
    {
        "API_KEY_INVALID",
        "API_KEY_SERVICE_BLOCKED",
        "SERVICE_DISABLED",
        "CONSUMER_SUSPENDED",
        "API_KEY_HTTP_REFERRER_BLOCKED",
        "API_KEY_IP_ADDRESS_BLOCKED",
    }
)


def _refuse(field: str) -> Untranslatable:
    return Untranslatable(
        gettext_noop(
            "'%(field)s' cannot be translated for this model's channel (Google Gemini);"
            " remove it, or use a model served by another channel."
        ),
        params={"field": field},
        code="untranslatable_request",
    )


def _data_url(url: str, where: str) -> dict[str, Any]:
    """Return the `inlineData` part of a `data:` URL (base64 only, as Gemini takes)."""
    header, comma, data = url[5:].partition(",")
    mime_type, _semicolon, encoding = header.partition(";")
    if not comma or encoding != "base64" or not mime_type:
        raise chat_field_invalid(where)
    try:
        base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise chat_field_invalid(where) from None
    return {"inlineData": {"mimeType": mime_type, "data": data}}


def _image_part(part: dict[str, Any], where: str) -> dict[str, Any]:
    image = part.get("image_url")
    url = image.get("url") if isinstance(image, dict) else image
    if not isinstance(url, str):
        raise chat_field_invalid(where)
    if url.startswith("data:"):
        return _data_url(url, where)
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
    except ValueError:  # "http://[x/a.png"
        raise chat_field_invalid(where) from None
    if parts.scheme == "gs" or host == GOOGLE_APIS or host.endswith("." + GOOGLE_APIS):
        # Gemini would read it with the channel's own account: files another customer
        # uploaded through it (`generativelanguage.googleapis.com/.../files/...`).
        raise Untranslatable(
            gettext_noop(
                "'%(field)s' points at Google's own storage, which this channel does not"
                " read for you; send the image inline (a data: URL) or at a public URL."
            ),
            params={"field": where},
            code="invalid_request",
        )
    if parts.scheme not in ("http", "https"):
        raise chat_field_invalid(where)
    # Gemini reads a public URL itself (`fileData`), and needs its type said.
    mime_type, _encoding = mimetypes.guess_type(parts.path)
    if mime_type is None or not mime_type.startswith("image/"):
        raise _refuse(f"{where} (an image URL whose type its name does not tell)")
    return {"fileData": {"mimeType": mime_type, "fileUri": url}}


def _user_part(part: Any, where: str) -> dict[str, Any]:
    """Return the Gemini part of one part of a user message's content."""
    kind = part.get("type") if isinstance(part, dict) else None
    if kind == "text" and isinstance(part.get("text"), str):
        return {"text": part["text"]}
    if kind == "image_url":
        return _image_part(part, where)
    if kind == "input_audio":
        audio = part.get("input_audio")
        audio = audio if isinstance(audio, dict) else {}
        mime_type = AUDIO_TYPES.get(str(audio.get("format")))
        if mime_type is None or not isinstance(audio.get("data"), str):
            raise chat_field_invalid(where)
        return _data_url(f"data:{mime_type};base64,{audio['data']}", where)
    if kind == "file":
        file = part.get("file")
        data = file.get("file_data") if isinstance(file, dict) else None
        if not isinstance(data, str) or not data.startswith("data:"):
            raise _refuse(f"{where} (a file not given as a data URL)")
        return _data_url(data, where)
    if kind in ("text", None):
        raise chat_field_invalid(where)
    raise _refuse(f"{where} ({str(kind)[:40]})")


def _text_of(content: Any, where: str) -> str:
    """Return the text of a content that may only hold text (a string or text parts)."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise chat_field_invalid(where)
    texts = []
    for number, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        text = part.get("text") if kind == "text" else None
        if kind == "refusal":
            text = part.get("refusal")
        if not isinstance(text, str):
            if kind in ("text", "refusal", None):
                raise chat_field_invalid(f"{where}.{number}")
            raise _refuse(f"{where}.{number} ({str(kind)[:40]})")
        texts.append(text)
    return "".join(texts)


def _function_call(call: Any, where: str) -> dict[str, Any]:
    """Return the `functionCall` part of an assistant's tool call."""
    function = call.get("function") if isinstance(call, dict) else None
    if not isinstance(function, dict) or not isinstance(function.get("name"), str):
        raise chat_field_invalid(where)
    if call.get("type", "function") != "function":
        raise _refuse(f"{where} ({str(call.get('type'))[:40]})")
    arguments = function.get("arguments")
    if arguments is not None and not isinstance(arguments, str):
        raise chat_field_invalid(f"{where}.function.arguments")
    try:
        args = translate.client_json(arguments, f"{where}.function.arguments") if arguments else {}
    except ValueError:
        raise chat_field_invalid(f"{where}.function.arguments") from None
    if not isinstance(args, dict):
        raise chat_field_invalid(f"{where}.function.arguments")
    found: dict[str, Any] = {"name": function["name"], "args": args}
    if isinstance(call.get("id"), str) and call["id"]:
        found["id"] = call["id"]
    return {"functionCall": found}


def _function_response(
    message: dict[str, Any], where: str, names: dict[str, str]
) -> dict[str, Any]:
    """Return the `functionResponse` part of a `role: tool` message: the result as the
    JSON object it is, or as `{"content": text}`."""
    call_id = message.get("tool_call_id")
    if not isinstance(call_id, str) or call_id not in names:
        raise chat_field_invalid(f"{where}.tool_call_id")
    text = _text_of(message.get("content", ""), f"{where}.content")
    try:
        parsed = translate.client_json(text, f"{where}.content")
    except ValueError:
        parsed = None
    response = parsed if isinstance(parsed, dict) else {"content": text}
    return {"functionResponse": {"id": call_id, "name": names[call_id], "response": response}}


def _contents(messages: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Return the `systemInstruction` parts and the `contents` of the chat messages."""
    if not isinstance(messages, list) or not messages:
        raise chat_field_invalid("messages")
    system: list[dict[str, Any]] = []
    contents: list[dict[str, Any]] = []
    # A tool call's id → its function's name (a functionResponse names its function).
    names: dict[str, str] = {}
    for number, message in enumerate(messages):
        where = f"messages.{number}"
        role = message.get("role") if isinstance(message, dict) else None
        if role in ("system", "developer"):
            if contents:
                # Gemini has one system instruction, before the conversation: moved
                # there, a later one would say something else.
                raise _refuse(f"{where} ({role} after the conversation began)")
            system.append({"text": _text_of(message.get("content"), f"{where}.content")})
        elif role == "user":
            assert isinstance(message, dict)
            content = message.get("content")
            if isinstance(content, str):
                parts = [{"text": content}]
            elif isinstance(content, list) and content:
                parts = [
                    _user_part(part, f"{where}.content.{index}")
                    for index, part in enumerate(content)
                ]
            else:
                raise chat_field_invalid(f"{where}.content")
            contents.append({"role": "user", "parts": parts})
        elif role == "assistant":
            assert isinstance(message, dict)
            if message.get("audio") is not None:
                raise _refuse(f"{where}.audio")
            if message.get("function_call") is not None:
                raise _refuse(f"{where}.function_call")
            content = message.get("content")
            text = "" if content is None else _text_of(content, f"{where}.content")
            parts = [{"text": text}] if text else []
            calls = message.get("tool_calls") or []
            if not isinstance(calls, list):
                raise chat_field_invalid(f"{where}.tool_calls")
            for index, call in enumerate(calls):
                part = _function_call(call, f"{where}.tool_calls.{index}")
                if "id" in part["functionCall"]:
                    names[part["functionCall"]["id"]] = part["functionCall"]["name"]
                if index == 0:
                    part["thoughtSignature"] = SKIPPED_THOUGHT_SIGNATURE
                parts.append(part)
            if parts:
                contents.append({"role": "model", "parts": parts})
        elif role == "tool":
            assert isinstance(message, dict)
            part = _function_response(message, where, names)
            last = contents[-1] if contents else None
            if (
                last
                and last["role"] == "user"
                and last["parts"]
                and "functionResponse" in last["parts"][-1]
            ):
                # The results of one turn's calls answer together, as Gemini expects.
                last["parts"].append(part)
            else:
                contents.append({"role": "user", "parts": [part]})
        elif role == "function":
            raise _refuse(f"{where} (role function)")
        else:
            raise chat_field_invalid(f"{where}.role")
    return system, contents


def _tools(body: dict[str, Any]) -> dict[str, Any]:
    """Return the request's `tools` and `toolConfig`."""
    given = body.get("tools") or []
    if not isinstance(given, list):
        raise chat_field_invalid("tools")
    declarations = []
    for number, tool in enumerate(given):
        if not isinstance(tool, dict):
            raise chat_field_invalid(f"tools.{number}")
        if tool.get("type") != "function":
            raise _refuse(f"tools.{number} ({str(tool.get('type'))[:40]})")
        function = tool.get("function")
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            raise chat_field_invalid(f"tools.{number}")
        declaration: dict[str, Any] = {"name": function["name"]}
        if isinstance(function.get("description"), str):
            declaration["description"] = function["description"]
        parameters = function.get("parameters")
        if parameters is not None:
            if not isinstance(parameters, dict):
                raise chat_field_invalid(f"tools.{number}.function.parameters")
            declaration["parametersJsonSchema"] = parameters
        declarations.append(declaration)
    translated: dict[str, Any] = (
        {"tools": [{"functionDeclarations": declarations}]} if declarations else {}
    )
    if body.get("parallel_tool_calls") is False and declarations:
        # Gemini decides alone how many calls it makes at once.
        raise _refuse("parallel_tool_calls")
    choice = body.get("tool_choice")
    if choice is None:
        return translated
    if not declarations:
        if choice in ("auto", "none"):
            return translated  # No tools to choose among: nothing to say.
        raise chat_field_invalid("tool_choice")
    if isinstance(choice, str) and choice in TOOL_CHOICE_MODES:
        config: dict[str, Any] = {"mode": TOOL_CHOICE_MODES[choice]}
    elif isinstance(choice, dict) and choice.get("type") == "function":
        function = choice.get("function")
        name = function.get("name") if isinstance(function, dict) else None
        if not isinstance(name, str):
            raise chat_field_invalid("tool_choice")
        config = {"mode": "ANY", "allowedFunctionNames": [name]}
    elif isinstance(choice, dict) and isinstance(choice.get("type"), str):
        raise _refuse(f"tool_choice ({choice['type'][:40]})")
    else:
        raise chat_field_invalid("tool_choice")
    translated["toolConfig"] = {"functionCallingConfig": config}
    return translated


def _number(body: dict[str, Any], field: str, *, whole: bool = False) -> Any:
    value = body[field]
    kinds: tuple[type, ...] = (int,) if whole else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds):
        raise chat_field_invalid(field)
    return value


def _generation_config(body: dict[str, Any]) -> dict[str, Any]:
    """Return the request's `generationConfig`."""
    config: dict[str, Any] = {}
    for source in ("max_tokens", "max_completion_tokens"):
        if body.get(source) is not None:
            config["maxOutputTokens"] = _number(body, source, whole=True)
    for source, target in (
        ("temperature", "temperature"),
        ("top_p", "topP"),
        ("presence_penalty", "presencePenalty"),
        ("frequency_penalty", "frequencyPenalty"),
    ):
        if body.get(source) is not None:
            config[target] = _number(body, source)
    if body.get("seed") is not None:
        config["seed"] = _number(body, "seed", whole=True)
    if body.get("n") is not None:
        config["candidateCount"] = _number(body, "n", whole=True)
    stop = body.get("stop")
    if isinstance(stop, str):
        config["stopSequences"] = [stop]
    elif isinstance(stop, list) and all(isinstance(item, str) for item in stop):
        if stop:
            config["stopSequences"] = stop
    elif stop is not None:
        raise chat_field_invalid("stop")
    config.update(_response_format(body.get("response_format")))
    return config


def _response_format(given: Any) -> dict[str, Any]:
    if given is None:
        return {}
    kind = given.get("type") if isinstance(given, dict) else None
    if kind == "text":
        return {}
    if kind == "json_object":
        return {"responseMimeType": "application/json"}
    if kind == "json_schema":
        assert isinstance(given, dict)
        spec = given.get("json_schema")
        schema = spec.get("schema") if isinstance(spec, dict) else None
        if not isinstance(schema, dict):
            raise chat_field_invalid("response_format.json_schema")
        return {"responseMimeType": "application/json", "responseJsonSchema": schema}
    if isinstance(kind, str):
        raise _refuse(f"response_format ({kind[:40]})")
    raise chat_field_invalid("response_format")


def _check_fields(body: dict[str, Any]) -> None:
    """Refuse every field that would change the answer and has no Gemini equivalent."""
    for field, value in body.items():
        if field in HINT_FIELDS or value is None:
            continue
        if field == "logprobs" and value is False:
            continue
        if field == "modalities" and value == ["text"]:
            continue
        if field == "logit_bias" and value == {}:
            continue
        if field in TRANSLATED_FIELDS and field not in ("logprobs", "modalities"):
            continue
        raise _refuse(str(field)[:60])


def chat_to_gemini_request(body: dict[str, Any]) -> dict[str, Any]:
    """Return the `generateContent` request equivalent to a chat completions request.

    Raise Untranslatable for what would change the answer and cannot be carried.
    """
    _check_fields(body)
    system, contents = _contents(body.get("messages"))
    request: dict[str, Any] = {"contents": contents}
    if system:
        request["systemInstruction"] = {"parts": system}
    request.update(_tools(body))
    config = _generation_config(body)
    if config:
        request["generationConfig"] = config
    return request


def _whole(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def chat_usage(metadata: Any) -> dict[str, Any]:
    """Return the chat completion's usage for Gemini's `usageMetadata`.

    The prompt's count includes its cached tokens (as OpenAI's does) and the tokens of
    tool-use prompts; the completion's includes the model's thoughts, billed as output.
    """
    metadata = metadata if isinstance(metadata, dict) else {}
    prompt = _whole(metadata.get("promptTokenCount")) + _whole(
        metadata.get("toolUsePromptTokenCount")
    )
    thoughts = _whole(metadata.get("thoughtsTokenCount"))
    completion = _whole(metadata.get("candidatesTokenCount")) + thoughts
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {
            "cached_tokens": min(_whole(metadata.get("cachedContentTokenCount")), prompt)
        },
        "completion_tokens_details": {"reasoning_tokens": thoughts},
    }


def _call_id(given: Any) -> str:
    return given if isinstance(given, str) and given else f"call_{uuid.uuid4().hex[:24]}"


def _tool_call(call: Any) -> dict[str, Any]:
    """Return the chat tool call of a Gemini `functionCall`."""
    if not isinstance(call, dict) or not isinstance(call.get("name"), str):
        raise _unreadable_answer()
    args = call.get("args")
    if args is None:
        args = {}
    if not isinstance(args, dict):
        raise _unreadable_answer()
    return {
        "id": _call_id(call.get("id")),
        "type": "function",
        "function": {
            "name": call["name"],
            "arguments": json.dumps(args, ensure_ascii=False, separators=(",", ":")),
        },
    }


def _unreadable_answer() -> Untranslatable:
    return Untranslatable(
        gettext_noop(
            "The upstream answered with a function call that cannot be read as a tool call."
            " Nothing was charged; try again."
        ),
        params={},
        status_code=502,
        code="upstream_unreadable_tool_call",
    )


def _parts(candidate: dict[str, Any]) -> list[dict[str, Any]]:
    """Return a candidate's parts that belong to the answer (not the model's thoughts)."""
    content = candidate.get("content")
    parts = content.get("parts") if isinstance(content, dict) else None
    if not isinstance(parts, list):
        return []
    return [part for part in parts if isinstance(part, dict) and part.get("thought") is not True]


def _finish_reason(candidate: dict[str, Any], has_calls: bool) -> str:
    if has_calls:
        return "tool_calls"
    return FINISH_REASONS.get(str(candidate.get("finishReason")), "stop")


def _candidates(payload: dict[str, Any]) -> list[dict[str, Any]]:
    candidates = payload.get("candidates")
    return [item for item in candidates if isinstance(item, dict)] if candidates else []


def _index(candidate: dict[str, Any], default: int) -> int:
    index = candidate.get("index")
    return index if isinstance(index, int) and not isinstance(index, bool) else default


def gemini_to_chat_answer(payload: dict[str, Any], *, model: str) -> dict[str, Any]:
    """Return the chat completion equivalent to a `generateContent` answer.

    A prompt Gemini blocked (`promptFeedback.blockReason`, no candidates) is an answer
    without text whose finish reason is `content_filter`, with the usage reported.
    """
    choices = []
    for number, candidate in enumerate(_candidates(payload)):
        parts = _parts(candidate)
        text = "".join(part["text"] for part in parts if isinstance(part.get("text"), str))
        calls = [_tool_call(part["functionCall"]) for part in parts if "functionCall" in part]
        message: dict[str, Any] = {
            "role": "assistant",
            "content": text if text or not calls else None,
            "refusal": None,
        }
        if calls:
            message["tool_calls"] = calls
        choices.append(
            {
                "index": _index(candidate, number),
                "message": message,
                "logprobs": None,
                "finish_reason": _finish_reason(candidate, bool(calls)),
            }
        )
    if not choices:
        message = {"role": "assistant", "content": None, "refusal": None}
        choices.append(
            {"index": 0, "message": message, "logprobs": None, "finish_reason": "content_filter"}
        )
    response_id = payload.get("responseId")
    return {
        "id": f"chatcmpl-{response_id if isinstance(response_id, str) else uuid.uuid4().hex}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": choices,
        "usage": chat_usage(payload.get("usageMetadata")),
    }


# OpenAI's error `type` for an upstream's refusal, by HTTP status.
ERROR_TYPES = {
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    429: "rate_limit_exceeded",
}


def gemini_error_to_openai(status_code: int, body: bytes) -> bytes:
    """Rewrite Gemini's `{"error": {code, message, status}}` in OpenAI's error shape."""
    try:
        payload = json.loads(body)
    except ValueError:
        payload = None
    if isinstance(payload, list) and payload:
        payload = payload[0]  # Some of Google's errors come as a list of one.
    error = payload.get("error") if isinstance(payload, dict) else None
    error = error if isinstance(error, dict) else {}
    message = error.get("message")
    if not isinstance(message, str) or not message:
        message = f"The upstream refused the request (HTTP {status_code})."
    status = error.get("status")
    return json.dumps(
        {
            "error": {
                "message": message,
                "type": ERROR_TYPES.get(status_code, "invalid_request_error"),
                "code": status if isinstance(status, str) else None,
                "param": None,
            }
        }
    ).encode()


def _sse(payload: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(payload, separators=(",", ":")).encode() + b"\n\n"


class GeminiStreamToChatChunks:
    """Turn Gemini's SSE stream (`alt=sse`) into chat.completion.chunk events.

    Each candidate's first chunk says its role; text and function calls follow as
    deltas (a call whole, at its own index); its finish reason closes it. Gemini repeats
    the usage, cumulative, on every chunk: the last one is sent in a final chunk with
    empty `choices`, then `data: [DONE]`.
    """

    def __init__(self, *, model: str) -> None:
        self.model = model
        self._id = f"chatcmpl-{uuid.uuid4().hex}"
        self._created = int(time.time())
        self._pending = b""
        self._usage: Any = None
        self._blocked = False
        self._finished = False
        # Candidate index → the number of tool calls it sent so far, and whether it ended.
        self._calls: dict[int, int] = {}
        self._ended: set[int] = set()

    def _chunk(self, index: int, delta: dict[str, Any], finish: str | None = None) -> bytes:
        choice = {"index": index, "delta": delta, "logprobs": None, "finish_reason": finish}
        return _sse(
            {
                "id": self._id,
                "object": "chat.completion.chunk",
                "created": self._created,
                "model": self.model,
                "choices": [choice],
            }
        )

    def _candidate(self, number: int, candidate: dict[str, Any]) -> bytes:
        index = _index(candidate, number)
        out = b""
        if index not in self._calls:
            self._calls[index] = 0
            out += self._chunk(index, {"role": "assistant", "content": ""})
        for part in _parts(candidate):
            if isinstance(part.get("text"), str) and part["text"]:
                out += self._chunk(index, {"content": part["text"]})
            if "functionCall" in part:
                call = dict(_tool_call(part["functionCall"]), index=self._calls[index])
                self._calls[index] += 1
                out += self._chunk(index, {"tool_calls": [call]})
        if candidate.get("finishReason") and index not in self._ended:
            self._ended.add(index)
            out += self._chunk(index, {}, _finish_reason(candidate, self._calls[index] > 0))
        return out

    def _event(self, payload: dict[str, Any]) -> bytes:
        if isinstance(payload.get("error"), dict):
            # A failure after the stream began: said as OpenAI says it, in the stream.
            error = json.loads(gemini_error_to_openai(502, json.dumps(payload).encode()))
            return _sse(error)
        if "usageMetadata" in payload:
            self._usage = payload["usageMetadata"]
        feedback = payload.get("promptFeedback")
        if isinstance(feedback, dict) and feedback.get("blockReason"):
            self._blocked = True
        out = b""
        for number, candidate in enumerate(_candidates(payload)):
            out += self._candidate(number, candidate)
        return out

    def feed(self, chunk: bytes) -> bytes:
        """Return the chat chunks for the Gemini events completed by `chunk`."""
        lines = (self._pending + chunk).split(b"\n")
        self._pending = lines.pop()
        out = b""
        for line in lines:
            line = line.strip()
            if not line.startswith(b"data:"):
                continue
            try:
                payload = json.loads(line[5:])
            except ValueError:
                continue
            if isinstance(payload, dict):
                out += self._event(payload)
        return out

    def usage(self) -> Usage | None:
        """Return the last usage Gemini sent (the relay bills a stream cut short by it),
        or None before any."""
        if self._usage is None:
            return None
        return usage_from_openai({"usage": chat_usage(self._usage)})

    def finish(self) -> bytes:
        """Return the closing chunks (once): a blocked prompt's, the usage, `[DONE]`."""
        if self._finished:
            return b""
        self._finished = True
        out = self.feed(b"\n") if self._pending else b""
        for index in sorted(set(self._calls) - self._ended):
            # A candidate the stream left without a finish reason.
            out += self._chunk(index, {}, "tool_calls" if self._calls[index] else "stop")
        if not self._calls:
            # Nothing came (a blocked prompt): an empty answer, filtered.
            out += self._chunk(0, {"role": "assistant", "content": ""})
            out += self._chunk(0, {}, "content_filter" if self._blocked else "stop")
        payload = {
            "id": self._id,
            "object": "chat.completion.chunk",
            "created": self._created,
            "model": self.model,
            "choices": [],
            "usage": chat_usage(self._usage),
        }
        return out + _sse(payload) + b"data: [DONE]\n\n"


def generate_url(base_url: str, upstream_model: str, *, stream: bool) -> str:
    """Return the URL of a model's `generateContent` (streamed: with SSE)."""
    name = quote(upstream_model.removeprefix("models/"), safe="-._~@")
    if stream:
        return f"{base_url}/models/{name}:streamGenerateContent?alt=sse"
    return f"{base_url}/models/{name}:generateContent"


class _Chained:
    """Two stream translators one after the other (Gemini → chat → Anthropic events)."""

    def __init__(self, first: Any, second: Any) -> None:
        self.first = first
        self.second = second

    def feed(self, chunk: bytes) -> bytes:
        return self.second.feed(self.first.feed(chunk))

    def finish(self) -> bytes:
        return self.second.feed(self.first.finish()) + self.second.finish()

    def usage(self) -> Usage | None:
        return self.first.usage()


def messages_error(status_code: int, body: bytes) -> bytes:
    return translate.openai_error_to_anthropic(
        status_code, gemini_error_to_openai(status_code, body)
    )


def messages_answer(payload: dict[str, Any], *, model: str) -> dict[str, Any]:
    chat = gemini_to_chat_answer(payload, model=model)
    return translate.chat_response_to_message(chat, model=model)


def messages_stream(*, model: str) -> _Chained:
    """Return the translator of a Gemini stream into Anthropic events (through chat chunks)."""
    return _Chained(
        GeminiStreamToChatChunks(model=model), translate.ChatStreamToMessageEvents(model=model)
    )


def key_headers(route: ChannelRoute) -> dict[str, str]:
    """Return a Gemini request's headers: the operator's overrides, then the key."""
    assert route.api_key is not None
    return {
        "content-type": "application/json",
        **dict(route.header_overrides),
        "x-goog-api-key": route.api_key,
    }


def refuses_key(body: bytes) -> bool:
    """Whether Gemini's error says the key is refused (400 `API_KEY_INVALID`, 403 for a
    key blocked or its project suspended: `KEY_REFUSAL_REASONS`), not the request.

    Only the reason counts: a client can make Gemini answer 403 `PERMISSION_DENIED`
    (a file URI it may not read), and that must not set our key aside.
    """
    try:
        payload = json.loads(body)
    except (ValueError, RecursionError):
        return False
    if isinstance(payload, list) and payload:
        payload = payload[0]  # Some of Google's errors come as a list of one.
    error = payload.get("error") if isinstance(payload, dict) else None
    if not isinstance(error, dict):
        return False
    details = error.get("details")
    reasons = {
        detail.get("reason")
        for detail in (details if isinstance(details, list) else [])
        if isinstance(detail, dict) and isinstance(detail.get("reason"), str)
    }
    return bool(reasons & KEY_REFUSAL_REASONS)
