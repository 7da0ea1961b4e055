"""Property tests of the chat ⇄ Anthropic translation (`relay.anthropic_chat`).

A random valid chat request translated to Anthropic's Messages and back through the
existing Messages → chat translation (`relay.translate`) keeps every field both sides
carry; a random Anthropic answer, whole or streamed in random pieces, keeps its text,
its tool calls and its usage as a chat completion.
"""

import itertools
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from relay import translate
from relay.anthropic_chat import (
    MessageEventsToChatStream,
    chat_to_messages_request,
    message_to_chat_response,
)
from relay.translate import Untranslatable

from .fake_anthropic import request_problem, stream_events, text_message

texts = st.text(min_size=1, max_size=20)
names = st.from_regex(r"[a-z][a-z0-9_]{0,15}", fullmatch=True)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-1000, 1000) | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(texts, inner, max_size=3),
    max_leaves=8,
)
arguments = st.dictionaries(texts, json_values, max_size=4)


def content_of(draw: Any) -> Any:
    """A message's content: a string, or a list of text parts."""
    return draw(texts | st.lists(texts, min_size=1, max_size=3).map(_parts))


def _parts(items: list[str]) -> list[dict[str, str]]:
    return [{"type": "text", "text": text} for text in items]


@st.composite
def chat_requests(draw: Any) -> dict[str, Any]:
    """A valid chat request: system prompts first, then a conversation whose tool calls
    are each answered by a tool message, in order."""
    tool_names = draw(st.lists(names, max_size=3, unique=True))
    messages: list[dict[str, Any]] = [
        {"role": draw(st.sampled_from(["system", "developer"])), "content": content_of(draw)}
        for _ in range(draw(st.integers(0, 2)))
    ]
    messages.append({"role": "user", "content": content_of(draw)})
    call_number = 0
    for _ in range(draw(st.integers(0, 5))):
        step = draw(st.sampled_from(["user", "assistant", "tools"]))
        if step == "tools" and tool_names:
            calls = []
            for _ in range(draw(st.integers(1, 3))):
                call_number += 1
                given_arguments = json.dumps(draw(arguments))
                function = {"name": draw(st.sampled_from(tool_names)), "arguments": given_arguments}
                calls.append(
                    {"id": f"call_{call_number}", "type": "function", "function": function}
                )
            text = draw(st.none() | texts)
            messages.append({"role": "assistant", "content": text, "tool_calls": calls})
            for call in calls:
                messages.append(
                    {"role": "tool", "tool_call_id": call["id"], "content": content_of(draw)}
                )
        else:
            role = "assistant" if step == "assistant" else "user"
            messages.append({"role": role, "content": content_of(draw)})
    body: dict[str, Any] = {"model": "m", "messages": messages}
    body["max_tokens"] = draw(st.integers(1, 100_000))
    if draw(st.booleans()):
        body["temperature"] = draw(st.floats(0, 1))
    if draw(st.booleans()):
        body["top_p"] = draw(st.floats(0, 1))
    if draw(st.booleans()):
        body["stop"] = draw(st.lists(texts, min_size=1, max_size=3))
    if tool_names:
        body["tools"] = [
            {
                "type": "function",
                "function": {
                    "name": name,
                    "description": draw(texts),
                    "parameters": {"type": "object", "properties": {"x": {"type": "string"}}},
                },
            }
            for name in tool_names
        ]
        choice = draw(
            st.sampled_from([None, "auto", "none", "required"])
            | st.sampled_from(tool_names).map(
                lambda name: {"type": "function", "function": {"name": name}}
            )
        )
        if choice is not None:
            body["tool_choice"] = choice
        if draw(st.booleans()):
            body["parallel_tool_calls"] = False
    return body


def _texts(content: Any) -> list[str]:
    if content is None:
        return []
    if isinstance(content, str):
        return [content]
    return [part["text"] for part in content]


def flattened(messages: list[dict[str, Any]]) -> tuple[str, list[tuple[Any, ...]]]:
    """Return the system prompt and the conversation as one list of what it carries:
    each text with its role, each tool call and each tool result, in order."""
    system = ""
    items: list[tuple[Any, ...]] = []
    for message in messages:
        role = message["role"]
        if role in ("system", "developer"):
            system += "".join(_texts(message["content"]))
        elif role == "tool":
            items.append(("result", message["tool_call_id"], "\n".join(_texts(message["content"]))))
        else:
            items.extend((role, text) for text in _texts(message["content"]))
            for call in message.get("tool_calls") or []:
                function = call["function"]
                items.append(
                    ("call", call["id"], function["name"], json.loads(function["arguments"]))
                )
    return system, items


def _choice(body: dict[str, Any]) -> Any:
    return body.get("tool_choice") or ("auto" if body.get("tools") else None)


@settings(max_examples=300, deadline=None)
@given(chat_requests())
def test_a_chat_request_survives_the_trip_through_anthropic(body):
    anthropic_request = chat_to_messages_request(body, model="claude-x")
    back = translate.messages_to_chat_request(anthropic_request, model="m")

    assert request_problem(anthropic_request) is None
    roles = [turn["role"] for turn in anthropic_request["messages"]]
    assert all(first != second for first, second in itertools.pairwise(roles))
    assert flattened(back["messages"]) == flattened(body["messages"])
    assert back["max_tokens"] == body["max_tokens"]
    for field in ("temperature", "top_p", "stop"):
        assert back.get(field) == body.get(field)
    assert back.get("tools") == body.get("tools")
    assert _choice(back) == _choice(body)
    is_parallel_off = body.get("parallel_tool_calls") is False and _choice(body) != "none"
    assert (back.get("parallel_tool_calls") is False) is is_parallel_off


tool_calls = st.lists(
    st.tuples(names.map(lambda name: f"toolu_{name}"), names, arguments),
    max_size=3,
    unique_by=lambda call: call[0],
)


@st.composite
def answers(draw: Any) -> Any:
    return text_message(
        draw(st.text(max_size=40)),
        stop_reason=draw(st.sampled_from(["end_turn", "max_tokens", "tool_use", "stop_sequence"])),
        tool_calls=tuple(draw(tool_calls)),
        input_tokens=draw(st.integers(0, 10**6)),
        output_tokens=draw(st.integers(0, 10**6)),
        cache_read=draw(st.integers(0, 10**6)),
        cache_creation=draw(st.integers(0, 10**6)),
    )


def _expected(message: Any) -> tuple[str, list[tuple[Any, ...]], dict[str, int]]:
    text = "".join(block.text for block in message.content if block.type == "text")
    calls = [
        (block.id, block.name, block.input) for block in message.content if block.type == "tool_use"
    ]
    usage = message.usage
    prompt = usage.input_tokens + usage.cache_read_input_tokens + usage.cache_creation_input_tokens
    counts = {
        "prompt_tokens": prompt,
        "cached_tokens": usage.cache_read_input_tokens,
        "completion_tokens": usage.output_tokens,
    }
    return text, calls, counts


def _counts(usage: dict[str, Any]) -> dict[str, int]:
    return {
        "prompt_tokens": usage["prompt_tokens"],
        "cached_tokens": usage["prompt_tokens_details"]["cached_tokens"],
        "completion_tokens": usage["completion_tokens"],
    }


@settings(max_examples=300, deadline=None)
@given(answers())
def test_an_anthropic_answer_keeps_its_text_tool_calls_and_usage(message):
    chat = message_to_chat_response(message.model_dump(mode="json"), model="m")

    text, calls, counts = _expected(message)
    answer = chat["choices"][0]["message"]
    assert (answer["content"] or "") == text
    got = [
        (call["id"], call["function"]["name"], json.loads(call["function"]["arguments"]))
        for call in answer.get("tool_calls") or []
    ]
    assert got == calls
    assert _counts(chat["usage"]) == counts


@settings(max_examples=200, deadline=None)
@given(answers(), st.lists(st.integers(1, 400), min_size=1, max_size=30))
def test_a_streamed_answer_cut_anywhere_keeps_its_text_tool_calls_and_usage(message, cuts):
    raw = b"".join(
        f"event: {event['type']}\ndata: {json.dumps(event)}\n\n".encode()
        for event in stream_events(message)
    )
    translator = MessageEventsToChatStream(model="m")
    out = b""
    position = 0
    for size in cuts:
        out += translator.feed(raw[position : position + size])
        position += size
    out += translator.feed(raw[position:]) + translator.finish()

    lines = [line[6:] for line in out.decode().split("\n") if line.startswith("data: ")]
    assert lines[-1] == "[DONE]"
    chunks = [json.loads(line) for line in lines[:-1]]
    text = ""
    calls: dict[int, list[Any]] = {}
    for chunk in chunks[:-1]:
        delta = chunk["choices"][0]["delta"]
        text += delta.get("content") or ""
        for call in delta.get("tool_calls") or []:
            if "id" in call:
                calls[call["index"]] = [call["id"], call["function"]["name"], ""]
            calls[call["index"]][2] += call["function"]["arguments"]
    expected_text, expected_calls, counts = _expected(message)
    assert text == expected_text
    assert [(id_, name, json.loads(given)) for id_, name, given in calls.values()] == expected_calls
    assert chunks[-1]["choices"] == []
    assert _counts(chunks[-1]["usage"]) == counts


keys = st.sampled_from(
    ["role", "content", "type", "text", "image_url", "url", "tool_calls", "id", "function",
     "name", "arguments", "tool_call_id", "parameters", "tools", "tool_choice", "stop",
     "temperature", "messages", "user", "n", "refusal", "parallel_tool_calls", "strict"]
)  # fmt: skip
anything = st.recursive(
    st.none() | st.booleans() | st.integers(-3, 3) | st.floats(allow_nan=False)
    | st.text(max_size=8)
    | st.sampled_from(["user", "assistant", "system", "tool", "text", "function", "image_url",
                       "data:image/png;base64,AA==", "https://x", "{}", "[1]", "auto",
                       # Client strings that once made 500s.
                       "http://[x/a.png", "[" * 100000, '{"a":' * 990 + "1" + "}" * 990]),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=5),
    max_leaves=30,
)  # fmt: skip


top_level = st.sampled_from(
    ["tools", "tool_choice", "stop", "temperature", "top_p", "user", "n", "parallel_tool_calls",
     "max_tokens", "stream", "metadata", "logprobs", "response_format"]
)  # fmt: skip


@settings(max_examples=1000, deadline=None)
@given(
    st.lists(st.dictionaries(keys, anything, max_size=5), max_size=4),
    st.dictionaries(top_level, anything, max_size=4),
)
def test_any_request_is_translated_or_refused_with_a_400(messages, fields):
    body = {"model": "m", "messages": messages, **fields}
    try:
        request = chat_to_messages_request(body, model="claude-x")
    except Untranslatable as refusal:
        status = refusal.status_code
    else:
        status = 200
        json.dumps(request)  # What the relay sends: it must be serializable.
    assert status in (200, 400)


def test_arguments_nested_too_deep_are_refused_naming_their_field():
    """990 levels parse (json.loads), but sending them on (json.dumps) raised
    RecursionError: a 500. Client JSON is held to a request body's depth."""
    deep = '{"a":' * 990 + "1" + "}" * 990
    call = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": deep}}
    body = {"messages": [{"role": "assistant", "tool_calls": [call]}]}
    with pytest.raises(Untranslatable) as refused:
        chat_to_messages_request(body, model="claude-x")
    assert refused.value.status_code == 400
    assert refused.value.params["field"] == "messages.0.tool_calls.0.function.arguments"
    assert "nested" in refused.value.message


def test_an_image_url_urlsplit_refuses_is_a_400():
    image = {"type": "image_url", "image_url": {"url": "http://[x/a.png"}}
    with pytest.raises(Untranslatable) as refused:
        chat_to_messages_request(
            {"messages": [{"role": "user", "content": [image]}]}, model="claude-x"
        )
    assert refused.value.status_code == 400
    assert refused.value.params["field"] == "messages.0.content.0"


def _stream_usage(delta_usage: dict[str, Any]) -> dict[str, Any]:
    start = text_message(input_tokens=20, cache_read=100, cache_creation=5)
    events = stream_events(start)
    for event in events:
        if event["type"] == "message_delta":
            event["usage"] = delta_usage
    raw = b"".join(f"data: {json.dumps(event)}\n\n".encode() for event in events)
    translator = MessageEventsToChatStream(model="m")
    out = translator.feed(raw) + translator.finish()
    lines = [line[6:] for line in out.decode().split("\n") if line.startswith("data: ")]
    return json.loads(lines[-2])["usage"]


def test_a_message_delta_with_a_null_or_zero_prompt_keeps_message_starts_count():
    """Anthropic-compatible gateways send `input_tokens` 0 or null in message_delta,
    without cache fields: message_start's prompt and cached counts stand."""
    for delta in (
        {"input_tokens": None, "output_tokens": 9},
        {"input_tokens": 0, "output_tokens": 9},
    ):
        usage = _stream_usage(delta)
        assert (usage["prompt_tokens"], usage["completion_tokens"]) == (125, 9)
        assert usage["prompt_tokens_details"]["cached_tokens"] == 100
    final = {"input_tokens": 30, "cache_read_input_tokens": 0, "output_tokens": 9}
    usage = _stream_usage(final)
    assert (usage["prompt_tokens"], usage["prompt_tokens_details"]["cached_tokens"]) == (35, 0)
