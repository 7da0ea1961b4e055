"""Property tests of the Gemini translation (`relay.gemini`): what one side can carry
survives a trip to the other and back.

A random valid chat request is translated to a generateContent request (which
google-genai's models must read), then back to chat by the inverse written here: texts,
roles, tool names, ids, arguments and results keep their values and their order. A
random Gemini answer (built with google-genai's types, dumped as the wire format)
translated to a chat completion keeps its text, its function calls and its usage.
"""

import json

import pytest
from google.genai import types
from hypothesis import given, settings
from hypothesis import strategies as st

from relay.gemini import chat_to_gemini_request, gemini_to_chat_answer
from relay.translate import Untranslatable

from .fake_gemini import request_check, wire

texts = st.text(max_size=30)
names = st.from_regex(r"[a-zA-Z_][a-zA-Z0-9_]{0,20}", fullmatch=True)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(10**6), 10**6) | texts,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(texts, inner, max_size=3),
    max_leaves=8,
)
arguments = st.dictionaries(texts, json_values, max_size=4)
tool_results = texts | arguments.map(json.dumps)
text_parts = texts.map(lambda text: {"type": "text", "text": text})


@st.composite
def conversations(draw):
    """Return chat messages: system first, then user turns, assistant answers (text,
    tool calls or both) each call answered by a tool message, in order."""
    messages = [{"role": "system", "content": text} for text in draw(st.lists(texts, max_size=2))]
    call_number = 0
    for _turn in range(draw(st.integers(1, 4))):
        content = draw(texts | st.lists(text_parts, min_size=1))
        messages.append({"role": "user", "content": content})
        if not draw(st.booleans()):
            continue
        calls = []
        for _call in range(draw(st.integers(0, 3))):
            call_number += 1
            call = {
                "id": f"call_{call_number}_{draw(names)}",
                "type": "function",
                "function": {
                    "name": draw(names),
                    "arguments": json.dumps(draw(arguments)),
                },
            }
            calls.append(call)
        text = draw(texts.filter(bool) if not calls else texts)
        answer = {"role": "assistant", "content": text or None}
        if calls:
            answer["tool_calls"] = calls
        messages.append(answer)
        for call in calls:
            messages.append(
                {"role": "tool", "tool_call_id": call["id"], "content": draw(tool_results)}
            )
    return messages


@st.composite
def chat_requests(draw):
    body = {"model": "gemini-test", "messages": draw(conversations())}
    tools = draw(st.lists(names, max_size=3, unique=True))
    if tools:
        body["tools"] = [
            {
                "type": "function",
                "function": {
                    "name": name,
                    "description": draw(texts),
                    "parameters": {"type": "object", "properties": {"x": {"type": "string"}}},
                },
            }
            for name in tools
        ]
        body["tool_choice"] = draw(st.sampled_from(["auto", "none", "required"]))
    for field, values in (
        ("max_tokens", st.integers(1, 10**5)),
        ("temperature", st.floats(0, 2)),
        ("top_p", st.floats(0, 1)),
        ("stop", st.lists(texts.filter(bool), min_size=1, max_size=4)),
        ("seed", st.integers(0, 2**31)),
    ):
        if draw(st.booleans()):
            body[field] = draw(values)
    return body


def tool_result_text(response):
    if set(response) == {"content"} and isinstance(response["content"], str):
        return response["content"]
    return json.dumps(response)


def gemini_to_chat_request(request):
    """The inverse of the relay's translation, as a Gemini reader would see the request."""
    messages = [
        {"role": "system", "content": part["text"]}
        for part in request.get("systemInstruction", {}).get("parts", [])
    ]
    for content in request["contents"]:
        parts = content["parts"]
        if content["role"] == "model":
            text = "".join(part.get("text", "") for part in parts)
            calls = [
                {
                    "id": part["functionCall"]["id"],
                    "type": "function",
                    "function": {
                        "name": part["functionCall"]["name"],
                        "arguments": json.dumps(part["functionCall"]["args"]),
                    },
                }
                for part in parts
                if "functionCall" in part
            ]
            answer = {"role": "assistant", "content": text or None}
            if calls:
                answer["tool_calls"] = calls
            messages.append(answer)
        elif all("functionResponse" in part for part in parts):
            messages.extend(
                {
                    "role": "tool",
                    "tool_call_id": part["functionResponse"]["id"],
                    "content": tool_result_text(part["functionResponse"]["response"]),
                }
                for part in parts
            )
        else:
            messages.append(
                {"role": "user", "content": [{"type": "text", "text": p["text"]} for p in parts]}
            )
    return messages


def carried(messages):
    """What of chat messages Gemini can carry, in a form to compare."""
    found = []
    for message in messages:
        role, content = message["role"], message.get("content")
        if role == "user":
            texts = [content] if isinstance(content, str) else [p["text"] for p in content]
            found.append(("user", texts))
        elif role == "system":
            found.append(("system", content))
        elif role == "assistant":
            calls = [
                (call["id"], call["function"]["name"], json.loads(call["function"]["arguments"]))
                for call in message.get("tool_calls", [])
            ]
            found.append(("assistant", content or None, calls))
        else:
            try:
                result = json.loads(content)
            except ValueError:
                result = None
            if not isinstance(result, dict):
                result = {"content": content}
            found.append(("tool", message["tool_call_id"], result))
    return found


@settings(max_examples=300, deadline=None)
@given(chat_requests())
def test_a_chat_request_survives_the_trip_to_gemini(body):
    request = chat_to_gemini_request(body)

    # What is sent is what google-genai reads as a generateContent request
    request_check(request)
    # and every message keeps its role, texts, calls and results, in order
    assert carried(gemini_to_chat_request(request)) == carried(body["messages"])
    # as do the tools and the sampling parameters
    declarations = request.get("tools", [{}])[0].get("functionDeclarations", [])
    assert [(d["name"], d["description"], d["parametersJsonSchema"]) for d in declarations] == [
        (t["function"]["name"], t["function"]["description"], t["function"]["parameters"])
        for t in body.get("tools", [])
    ]
    config = request.get("generationConfig", {})
    for field, target in (
        ("max_tokens", "maxOutputTokens"),
        ("temperature", "temperature"),
        ("top_p", "topP"),
        ("stop", "stopSequences"),
        ("seed", "seed"),
    ):
        assert config.get(target) == body.get(field)


counts = st.none() | st.integers(0, 10**6)
answer_parts = st.lists(
    st.one_of(
        texts.map(lambda text: types.Part(text=text)),
        st.tuples(names, arguments, st.none() | names).map(
            lambda call: types.Part(
                function_call=types.FunctionCall(name=call[0], args=call[1], id=call[2])
            )
        ),
    ),
    max_size=5,
)


@settings(max_examples=300, deadline=None)
@given(
    answer_parts,
    st.sampled_from(["STOP", "MAX_TOKENS", "SAFETY", "OTHER"]),
    counts,
    counts,
    counts,
    counts,
)
def test_a_gemini_answer_survives_the_trip_to_chat(
    parts, reason, prompt, candidates, thoughts, cached
):
    cached = min(cached or 0, prompt or 0) or None
    response = types.GenerateContentResponse(
        candidates=[
            types.Candidate(
                index=0,
                content=types.Content(role="model", parts=parts),
                finish_reason=types.FinishReason(reason),
            )
        ],
        usage_metadata=types.GenerateContentResponseUsageMetadata(
            prompt_token_count=prompt,
            candidates_token_count=candidates,
            thoughts_token_count=thoughts,
            cached_content_token_count=cached,
        ),
    )

    answer = gemini_to_chat_answer(json.loads(json.dumps(wire(response))), model="m")

    [choice] = answer["choices"]
    message = choice["message"]
    assert (message["content"] or "") == "".join(part.text or "" for part in parts)
    calls = [part.function_call for part in parts if part.function_call]
    got = message.get("tool_calls", [])
    assert [(c["function"]["name"], json.loads(c["function"]["arguments"])) for c in got] == [
        (call.name, call.args) for call in calls
    ]
    for call, sent in zip(calls, got, strict=True):
        assert sent["id"] == call.id if call.id else sent["id"].startswith("call_")
    expected_reason = {"STOP": "stop", "MAX_TOKENS": "length", "SAFETY": "content_filter"}
    assert choice["finish_reason"] == (
        "tool_calls" if calls else expected_reason.get(reason, "stop")
    )
    usage = answer["usage"]
    assert usage["prompt_tokens"] == (prompt or 0)
    assert usage["completion_tokens"] == (candidates or 0) + (thoughts or 0)
    assert usage["prompt_tokens_details"]["cached_tokens"] == (cached or 0)


chat_fields = st.sampled_from(
    ["messages", "tools", "tool_choice", "stop", "n", "max_tokens", "response_format", "user"]
)
message_like = st.dictionaries(
    st.sampled_from(["role", "content", "tool_calls", "tool_call_id", "name"]),
    json_values | st.sampled_from(["user", "assistant", "tool", "system"]),
    max_size=4,
)


# Client strings that once made 500s: JSON nested past what can be sent on, a tool
# result that is deep brackets, URLs urlsplit refuses or that point at Google's storage.
deep_json = st.integers(1, 1200).map(lambda depth: '{"a":' * depth + "1" + "}" * depth)
odd_strings = deep_json | st.sampled_from(
    ["[" * 100000, "http://[x/a.png", "https://[::1/a.png", "gs://bucket/a.png",
     "https://generativelanguage.googleapis.com/v1beta/files/abc.png", "", "{}", "[]"]
)  # fmt: skip
odd_image_parts = odd_strings.map(lambda url: {"type": "image_url", "image_url": {"url": url}})
odd_calls = st.fixed_dictionaries(
    {
        "id": st.sampled_from(["c1", "c2"]),
        "type": st.just("function"),
        "function": st.fixed_dictionaries({"name": names, "arguments": odd_strings}),
    }
)
odd_messages = st.one_of(
    st.fixed_dictionaries(
        {
            "role": st.just("user"),
            "content": odd_strings | st.lists(odd_image_parts | text_parts, max_size=2),
        }
    ),
    st.fixed_dictionaries({"role": st.just("assistant"), "tool_calls": st.lists(odd_calls)}),
    st.fixed_dictionaries(
        {
            "role": st.just("tool"),
            "tool_call_id": st.sampled_from(["c1", "c2"]),
            "content": odd_strings | st.lists(text_parts, max_size=2),
        }
    ),
)


@settings(max_examples=500, deadline=None)
@given(
    st.dictionaries(chat_fields, json_values, max_size=5),
    st.lists(message_like | json_values | odd_messages, max_size=4),
)
def test_any_request_is_translated_or_refused_with_a_4xx(body, messages):
    body = {"messages": messages, **body}
    status = 200
    try:
        request = chat_to_gemini_request(body)
    except Untranslatable as refusal:
        status = refusal.status_code
    else:
        json.dumps(request)  # What the relay sends: it must be serializable.
    assert status in (200, 400)


def refusal_of(messages):
    with pytest.raises(Untranslatable) as refused:
        chat_to_gemini_request({"messages": messages})
    assert refused.value.status_code == 400
    return refused.value.params["field"]


def call_of(arguments):
    function = {"name": "f", "arguments": arguments}
    return {
        "role": "assistant",
        "tool_calls": [{"id": "c1", "type": "function", "function": function}],
    }


def test_json_nested_too_deep_is_refused_naming_its_field():
    deep = '{"a":' * 990 + "1" + "}" * 990
    assert refusal_of([call_of(deep)]) == "messages.0.tool_calls.0.function.arguments"
    tool = {"role": "tool", "tool_call_id": "c1", "content": "[" * 100000}
    assert refusal_of([call_of("{}"), tool]) == "messages.1.content"


def test_an_empty_user_content_between_a_call_and_its_result_is_refused():
    tool = {"role": "tool", "tool_call_id": "c1", "content": "ok"}
    empty = {"role": "user", "content": []}
    assert refusal_of([call_of("{}"), empty, tool]) == "messages.1.content"


@pytest.mark.parametrize(
    "url",
    [
        "http://[x/a.png",
        "gs://bucket/a.png",
        "https://generativelanguage.googleapis.com/v1beta/files/abc123",
        "https://storage.googleapis.com/bucket/a.png",
    ],
)
def test_a_bad_url_or_one_on_googles_storage_is_refused(url):
    image = {"type": "image_url", "image_url": {"url": url}}
    assert refusal_of([{"role": "user", "content": [image]}]) == "messages.0.content.0"
