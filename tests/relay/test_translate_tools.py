"""Properties of the tool translation (`relay.translate`), without a relay: a valid
Anthropic request translated to OpenAI and back keeps its tools, calls and results."""

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from relay import translate

names = st.from_regex(r"[a-zA-Z_][a-zA-Z0-9_-]{0,20}", fullmatch=True)
ids = st.from_regex(r"toolu_[a-zA-Z0-9]{1,16}", fullmatch=True)
texts = st.text(max_size=30)
json_leaves = st.none() | st.booleans() | st.integers(-(10**9), 10**9) | texts
json_values = st.recursive(
    json_leaves,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(texts, inner, max_size=3),
    max_leaves=8,
)
inputs = st.dictionaries(texts, json_values, max_size=4)
schemas = st.fixed_dictionaries(
    {"type": st.just("object"), "properties": st.dictionaries(names, st.just({}), max_size=3)}
)
tools = st.lists(
    st.fixed_dictionaries(
        {"name": names, "input_schema": schemas},
        optional={"description": texts, "cache_control": st.just({"type": "ephemeral"})},
    ),
    max_size=4,
)
text_blocks = st.builds(lambda text: {"type": "text", "text": text}, texts)


@st.composite
def conversations(draw: st.DrawFn) -> list[dict[str, Any]]:
    """A valid conversation: a user's text, then turns of an assistant's text and tool
    calls answered by the next user turn's results (for those calls, in their order),
    then maybe more text."""
    messages: list[dict[str, Any]] = [{"role": "user", "content": draw(texts)}]
    calls: list[str] = []
    for turn in range(draw(st.integers(0, 4))):
        uses = [
            {"type": "tool_use", "id": f"{tool_id}{turn}{number}", "name": name, "input": given}
            for number, (tool_id, name, given) in enumerate(
                draw(st.lists(st.tuples(ids, names, inputs), max_size=3))
            )
        ]
        blocks = draw(st.lists(text_blocks, max_size=2)) + uses
        messages.append({"role": "assistant", "content": blocks or draw(texts)})
        calls = [use["id"] for use in uses]
        results = [
            {
                "type": "tool_result",
                "tool_use_id": tool_id,
                "content": draw(texts | st.lists(text_blocks, max_size=3)),
                **({"is_error": True} if draw(st.booleans()) else {}),
            }
            for tool_id in calls
        ]
        rest = draw(st.lists(text_blocks, min_size=0 if results else 1, max_size=2))
        messages.append({"role": "user", "content": results + rest})
    return messages


choices = st.sampled_from(
    [None, {"type": "auto"}, {"type": "any"}, {"type": "none"}, {"type": "tool", "name": "x"}]
)


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    return "".join(part["text"] for part in content or [])


def chat_to_messages(chat: dict[str, Any]) -> dict[str, Any]:
    """The inverse of `messages_to_chat_request` for what it keeps (the code has none)."""
    messages: list[dict[str, Any]] = []
    for message in chat["messages"]:
        if message["role"] == "tool":
            result = {"type": "tool_result", "tool_use_id": message["tool_call_id"]}
            result["content"] = message["content"]
            if messages and messages[-1]["role"] == "user" and messages[-1].get("open"):
                messages[-1]["content"].append(result)
            else:
                messages.append({"role": "user", "content": [result], "open": True})
            continue
        if message["role"] == "user" and messages and messages[-1].get("open"):
            messages[-1]["content"].append({"type": "text", "text": _text(message["content"])})
            messages[-1].pop("open")
            continue
        if messages:
            messages[-1].pop("open", None)
        blocks: list[dict[str, Any]] = []
        if message.get("content"):
            blocks.append({"type": "text", "text": _text(message["content"])})
        for call in message.get("tool_calls", []):
            function = call["function"]
            blocks.append(
                {
                    "type": "tool_use",
                    "id": call["id"],
                    "name": function["name"],
                    "input": json.loads(function["arguments"]),
                }
            )
        messages.append({"role": message["role"], "content": blocks})
    for message in messages:
        message.pop("open", None)
    back: dict[str, Any] = {"messages": messages}
    back["tools"] = [
        {"name": tool["function"]["name"], "input_schema": tool["function"]["parameters"]}
        for tool in chat.get("tools", [])
    ]
    choice = chat.get("tool_choice")
    if isinstance(choice, dict):
        back["tool_choice"] = {"type": "tool", "name": choice["function"]["name"]}
    elif choice is not None:
        back["tool_choice"] = {"type": {"required": "any"}.get(choice, choice)}
    return back


def _tool_blocks(messages: list[dict[str, Any]]) -> list[tuple]:
    """Every tool call and result of a conversation, in order, as the property compares them."""
    found = []
    for message in messages:
        for block in message["content"] if isinstance(message["content"], list) else []:
            if block["type"] == "tool_use":
                found.append(("use", block["id"], block["name"], block["input"]))
            elif block["type"] == "tool_result":
                text = _text(block["content"]) if isinstance(block["content"], str) else None
                if text is None:
                    text = "\n".join(part["text"] for part in block["content"])
                if block.get("is_error"):
                    text = f"Error: {text}"
                found.append(("result", block["tool_use_id"], text))
    return found


@settings(max_examples=300, deadline=None)
@given(messages=conversations(), tools=tools, choice=choices)
def test_a_request_translated_and_back_keeps_its_tools_calls_and_results(messages, tools, choice):
    body: dict[str, Any] = {"model": "m", "max_tokens": 10, "messages": messages, "tools": tools}
    if choice is not None and (tools or choice["type"] in ("auto", "none")):
        body["tool_choice"] = choice

    chat = translate.messages_to_chat_request(body, model="m")
    back = chat_to_messages(chat)

    assert [tool["name"] for tool in back["tools"]] == [tool["name"] for tool in tools]
    assert [tool["input_schema"] for tool in back["tools"]] == [
        tool["input_schema"] for tool in tools
    ]
    assert _tool_blocks(back["messages"]) == _tool_blocks(messages)
    if tools and choice is not None:
        assert back["tool_choice"] == {
            key: value for key, value in choice.items() if key in ("type", "name")
        }
    # A tool's result comes right after the call, before the turn's other text.
    roles = [message["role"] for message in chat["messages"]]
    for position, message in enumerate(chat["messages"]):
        if message["role"] == "tool":
            assert roles[position - 1] in ("tool", "assistant")


calls = st.lists(st.tuples(ids, names, inputs), max_size=4, unique_by=lambda call: call[0])


@settings(max_examples=200, deadline=None)
@given(calls=calls, text=texts)
def test_an_answers_tool_calls_become_tool_use_blocks_in_order(calls, text):
    payload = {
        "choices": [
            {
                "message": {
                    "role": "assistant",
                    "content": text or None,
                    "tool_calls": [
                        {
                            "id": tool_id,
                            "type": "function",
                            "function": {"name": name, "arguments": json.dumps(arguments)},
                        }
                        for tool_id, name, arguments in calls
                    ],
                },
                "finish_reason": "tool_calls" if calls else "stop",
            }
        ]
    }

    message = translate.chat_response_to_message(payload, model="m")

    uses = [block for block in message["content"] if block["type"] == "tool_use"]
    assert [(use["id"], use["name"], use["input"]) for use in uses] == calls
    assert message["stop_reason"] == ("tool_use" if calls else "end_turn")
    if text or not calls:
        assert message["content"][0] == {"type": "text", "text": text}


def _sse(payload: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(payload).encode() + b"\n\n"


@settings(max_examples=200, deadline=None)
@given(calls=calls, text=texts, cuts=st.lists(st.integers(1, 7), min_size=1, max_size=5))
def test_streamed_tool_calls_become_the_same_blocks(calls, text, cuts):
    stream = b""
    if text:
        stream += _sse({"choices": [{"index": 0, "delta": {"content": text}}]})
    for number, (tool_id, name, arguments_given) in enumerate(calls):
        arguments = json.dumps(arguments_given)
        start = {"index": number, "id": tool_id, "function": {"name": name, "arguments": ""}}
        stream += _sse({"choices": [{"index": 0, "delta": {"tool_calls": [start]}}]})
        position = 0
        for cut in cuts * len(arguments):
            if position >= len(arguments):
                break
            piece = {
                "index": number,
                "function": {"arguments": arguments[position : position + cut]},
            }
            stream += _sse({"choices": [{"index": 0, "delta": {"tool_calls": [piece]}}]})
            position += cut
    stream += _sse({"choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]})
    stream += b"data: [DONE]\n\n"
    translator = translate.ChatStreamToMessageEvents(model="m")

    # Fed in uneven network chunks
    out = b"".join(translator.feed(stream[i : i + 13]) for i in range(0, len(stream), 13))
    out += translator.finish()

    events = [
        json.loads(line[6:]) for line in out.decode().splitlines() if line.startswith("data: ")
    ]
    blocks: dict[int, dict[str, Any]] = {}
    open_blocks: set[int] = set()
    for event in events:
        if event["type"] == "content_block_start":
            blocks[event["index"]] = dict(event["content_block"], partial="")
            open_blocks.add(event["index"])
        elif event["type"] == "content_block_delta":
            assert event["index"] in open_blocks
            delta = event["delta"]
            if delta["type"] == "input_json_delta":
                blocks[event["index"]]["partial"] += delta["partial_json"]
            else:
                blocks[event["index"]]["text"] += delta["text"]
        elif event["type"] == "content_block_stop":
            open_blocks.remove(event["index"])
    assert not open_blocks
    assert sorted(blocks) == list(range(len(blocks)))
    uses = [
        (block["id"], block["name"], json.loads(block["partial"]))
        for _index, block in sorted(blocks.items())
        if block["type"] == "tool_use"
    ]
    assert uses == calls
    assert events[-2]["delta"]["stop_reason"] == "tool_use"


@pytest.mark.parametrize(
    "arguments", ['{"city": "Par', "[1, 2]", "null", 5], ids=["cut", "list", "null", "number"]
)
def test_arguments_that_are_not_a_json_object_are_refused(arguments):
    call = {"id": "c", "type": "function", "function": {"name": "f", "arguments": arguments}}
    payload = {"choices": [{"message": {"tool_calls": [call]}, "finish_reason": "tool_calls"}]}

    with pytest.raises(translate.Untranslatable) as raised:
        translate.chat_response_to_message(payload, model="m")

    assert raised.value.status_code == 502


def test_cache_control_and_metadata_are_left_out_quietly():
    body = {
        "messages": [
            {
                "role": "user",
                "content": [{"type": "text", "text": "hi", "cache_control": {"type": "ephemeral"}}],
            }
        ],
        "metadata": {"user_id": "u"},
        "thinking": {"type": "disabled"},
    }

    chat = translate.messages_to_chat_request(body, model="m")

    assert chat["messages"] == [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]
    assert set(chat) == {"model", "messages"}
