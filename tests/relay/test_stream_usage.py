"""Streams as the client asked for them: the relay always asks the upstream for usage (to
bill the stream), and leaves out of the client's stream the usage chunk and fields it did
not ask for."""

import json

import httpx
import openai
import pytest

from relay import mock
from relay.forwarding import UnaskedUsageFilter

from .conftest import MODEL, wait_for_logs

pytestmark = pytest.mark.django_db(transaction=True)

MESSAGES = [{"role": "user", "content": "Say hello"}]


def _client(relay_url: str, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=relay_url, api_key=key, max_retries=0)


def test_a_stream_without_include_usage_has_choices_in_every_chunk_and_is_billed(
    relay_url, token_key, openai_channel, fake_upstream
):
    chunks = list(
        _client(relay_url, token_key).chat.completions.create(
            model=MODEL, messages=MESSAGES, stream=True
        )
    )

    # Every chunk has a first choice (what many clients read without checking) and no usage
    text = "".join(chunk.choices[0].delta.content or "" for chunk in chunks)
    assert text.startswith("Hello from Comet")
    assert all(chunk.usage is None for chunk in chunks)
    assert all("usage" not in chunk.model_dump(exclude_unset=True) for chunk in chunks)
    # ... while the upstream was asked for usage, and it is what was billed
    assert fake_upstream.app.stats.last_include_usage is True
    [log] = wait_for_logs(1)
    assert log.usage_estimated is False
    assert log.completion_tokens == len(text.split(" "))
    assert log.cost > 0


def test_a_stream_with_include_usage_gets_the_usage_chunk(
    relay_url, token_key, openai_channel, fake_upstream
):
    chunks = list(
        _client(relay_url, token_key).chat.completions.create(
            model=MODEL,
            messages=MESSAGES,
            stream=True,
            stream_options={"include_usage": True},
        )
    )

    last = chunks[-1]
    assert last.choices == []
    assert last.usage is not None
    assert all(chunk.choices for chunk in chunks[:-1])
    [log] = wait_for_logs(1)
    assert (log.prompt_tokens, log.completion_tokens) == (
        last.usage.prompt_tokens,
        last.usage.completion_tokens,
    )


def _raw_events(relay_url: str, key: str, path: str, body: dict) -> tuple[str, list[str]]:
    with httpx.stream(
        "POST",
        f"{relay_url}/{path}",
        headers={"authorization": f"Bearer {key}"},
        json=body,
        timeout=10,
    ) as response:
        assert response.status_code == 200
        raw = b"".join(response.iter_raw()).decode()
    return raw, [event for event in raw.split("\n\n") if event.strip()]


@pytest.mark.parametrize("options", [None, {"include_usage": False}, {}, "nonsense"])
def test_a_raw_client_reads_choices_0_of_every_chunk(relay_url, token_key, openai_channel, options):
    body: dict = {"model": MODEL, "messages": MESSAGES, "stream": True}
    if options is not None:
        body["stream_options"] = options

    raw, events = _raw_events(relay_url, token_key, "chat/completions", body)

    assert raw.endswith("data: [DONE]\n\n")
    assert events[-1] == "data: [DONE]"
    payloads = [json.loads(event.removeprefix("data: ")) for event in events[:-1]]
    assert payloads
    for payload in payloads:
        assert payload["choices"][0]["index"] == 0
        assert "usage" not in payload
    assert payloads[-1]["choices"][0]["finish_reason"] == "stop"


def test_streamed_completions_without_include_usage(
    relay_url, token_key, openai_channel, fake_upstream
):
    _raw, events = _raw_events(
        relay_url,
        token_key,
        "completions",
        {"model": MODEL, "prompt": "Once upon a time", "max_tokens": 4, "stream": True},
    )

    payloads = [json.loads(event.removeprefix("data: ")) for event in events[:-1]]
    assert all(payload["choices"][0]["text"] for payload in payloads)
    assert fake_upstream.app.stats.last_include_usage is True
    [log] = wait_for_logs(1)
    assert (log.completion_tokens, log.usage_estimated) == (4, False)


# --- The filter, byte by byte ---------------------------------------------------------------


def _upstream_stream(include_usage: bool = True) -> bytes:
    body = {"messages": MESSAGES, "stream": True}
    if include_usage:
        body["stream_options"] = {"include_usage": True}
    return b"".join(mock.chat_completion_chunks(body, model=MODEL))


def _filtered(pieces: list[bytes]) -> bytes:
    usage_filter = UnaskedUsageFilter()
    return b"".join(usage_filter.feed(piece) for piece in pieces) + usage_filter.finish()


def test_the_filter_gives_what_the_upstream_sends_without_usage():
    # The same stream asked without usage is what the client gets (ids and times aside)
    def shape(raw: bytes) -> list:
        events = [event for event in raw.split(b"\n\n") if event]
        return [
            event
            if event == b"data: [DONE]"
            else {
                key: value
                for key, value in json.loads(event.removeprefix(b"data: ")).items()
                if key not in ("id", "created")
            }
            for event in events
        ]

    filtered = _filtered([_upstream_stream()])

    assert shape(filtered) == shape(_upstream_stream(include_usage=False))
    assert b'"usage"' not in filtered
    assert filtered.endswith(b"data: [DONE]\n\n")


def test_the_filter_is_the_same_wherever_the_chunks_break():
    raw = _upstream_stream()
    whole = _filtered([raw])

    for cut in range(1, len(raw)):
        assert _filtered([raw[:cut], raw[cut:]]) == whole, cut
    assert _filtered([bytes([byte]) for byte in raw]) == whole


def test_the_filter_keeps_what_it_does_not_understand():
    odd = (
        b": keep-alive comment\n\n"
        b'data: not json with "usage"\n\n'
        b'data: ["usage"]\n\n'
        b'data: {"usage_note": 1}\n\n'
        b'data:{"choices":[{"index":0,"delta":{"content":"x"}}],"usage":{"total_tokens":3}}\r\n\r\n'
        b'data: {"choices":[],"usage":{"total_tokens":3}}\n\n'
        b'data: {"choices":[],"prompt_filter_results":[],"usage":null}\n\n'
        b'data: {"choices":[{"delta":{"content":"a,\\"usage\\":null}"}}],"usage":null}\n\n'
        b"data: [DONE]"
    )

    filtered = _filtered([odd])

    assert filtered == (
        b": keep-alive comment\n\n"
        b'data: not json with "usage"\n\n'
        b'data: ["usage"]\n\n'
        b'data: {"usage_note": 1}\n\n'
        b'data: {"choices":[{"index":0,"delta":{"content":"x"}}]}\r\n\r\n'
        b'data: {"choices":[],"prompt_filter_results":[]}\n\n'
        b'data: {"choices":[{"delta":{"content":"a,\\"usage\\":null}"}}]}\n\n'
        b"data: [DONE]"
    )
