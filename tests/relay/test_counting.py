"""Prompt counting for holds: real encodings loaded offline, the vendors' image formulas,
and bounded work on any content."""

import base64
import struct
import time
import zlib

import pytest
import tiktoken.load

from relay import counting
from relay.counting import (
    anthropic_image_tokens,
    base64_image_size,
    data_url_image_size,
    family_of,
    gemini_image_tokens,
    openai_patch_tokens,
    openai_tile_tokens,
    prompt_tokens,
)


def png(width: int, height: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    raw = (b"\x00" + bytes(width)) * height
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw))


def jpeg(width: int, height: int, *, exif_bytes: int) -> bytes:
    def segment(marker: int, data: bytes) -> bytes:
        return bytes([0xFF, marker]) + struct.pack(">H", len(data) + 2) + data

    exif = segment(0xE1, b"Exif\x00\x00" + bytes(min(exif_bytes, 65_000)))
    profiles = b"".join(segment(0xE2, bytes(60_000)) for _ in range(exif_bytes // 60_000))
    frame = segment(0xC0, struct.pack(">BHHB", 8, height, width, 3) + bytes(9))
    return b"\xff\xd8" + exif + profiles + frame + b"\xff\xda" + bytes(1000) + b"\xff\xd9"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def chat(model: str, *messages: dict, **extra) -> int:
    return prompt_tokens(
        endpoint="chat", body={"model": model, "messages": list(messages), **extra}, model=model
    )


def test_the_encodings_are_openais_and_load_without_the_network(monkeypatch):
    # Given a tokenizer that may not download anything
    def no_download(blobpath):
        raise AssertionError(f"tried to fetch {blobpath}")

    monkeypatch.setattr(tiktoken.load, "read_file", no_download)
    monkeypatch.setattr(counting, "_encodings", {})

    # When the encodings load, they are the files in the repository, and tokenize as
    # OpenAI's published encodings do
    assert counting.encoding("cl100k_base").encode("hello world") == [15339, 1917]
    assert counting.encoding("o200k_base").encode("hello world") == [24912, 2375]


def test_an_encoding_file_that_is_not_openais_is_refused(monkeypatch, tmp_path):
    import gzip

    (tmp_path / "cl100k_base.tiktoken.gz").write_bytes(gzip.compress(b"aGVsbG8= 0\n"))
    monkeypatch.setattr(counting, "ENCODINGS_DIR", tmp_path)
    monkeypatch.setattr(counting, "_encodings", {})

    with pytest.raises(RuntimeError, match="not OpenAI's"):
        counting.encoding("cl100k_base")


@pytest.mark.parametrize(
    ("model", "family", "encoding"),
    [
        ("gpt-4o", "gpt-4o", "o200k_base"),
        ("gpt-4o-mini-2024-07-18", "gpt-4o-mini", "o200k_base"),
        ("openai/gpt-4.1-mini", "gpt-4.1-mini", "o200k_base"),
        ("o3-pro", "o3", "o200k_base"),
        ("gpt-5-nano", "gpt-5-nano", "o200k_base"),
        ("gpt-4-turbo", "gpt-4", "cl100k_base"),
        ("gpt-3.5-turbo", "gpt-3.5", "cl100k_base"),
        ("text-embedding-3-small", "text-embedding", "cl100k_base"),
        ("claude-sonnet-4-20250514", "claude", "cl100k_base"),
        ("us.anthropic.claude-3-7-sonnet", "claude", "cl100k_base"),
        ("gemini-2.5-pro", "gemini", "o200k_base"),
        ("deepseek-chat", "other", "o200k_base"),
    ],
)
def test_each_model_counts_with_its_familys_encoding(model, family, encoding):
    assert (family_of(model).name, family_of(model).encoding) == (family, encoding)


def test_chat_messages_count_their_text_and_role_markers_as_openai_does():
    # system: 3 markers + "system" 1 + "You are a helpful assistant." 6; user: 3 + 1 + "Hello" 1;
    # the reply's 3 markers
    assert (
        chat(
            "gpt-4o",
            {"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": "Hello"},
        )
        == 10 + 5 + 3
    )
    # A name adds its tokens and one more
    assert chat("gpt-4o", {"role": "user", "content": "Hello", "name": "alice"}) == 5 + 2 + 3


def test_tools_and_system_text_are_counted():
    message = {"role": "user", "content": "What's the weather?"}
    plain = chat("gpt-4o", message)
    tool = {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Get the current weather in a given city",
            "parameters": {
                "type": "object",
                "properties": {
                    "city": {"type": "string", "description": "The city"},
                    "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                },
            },
        },
    }
    with_tool = chat("gpt-4o", message, tools=[tool])
    assert with_tool - plain >= 30
    anthropic = prompt_tokens(
        endpoint="messages",
        body={"system": "Answer in French.", "messages": [message], "tools": [tool["function"]]},
        model="claude-sonnet-4-20250514",
    )
    assert anthropic > counting.ANTHROPIC_TOOL_PROMPT_TOKENS + 10


def test_openai_image_formulas_match_the_published_examples():
    assert openai_tile_tokens(1024, 1024, base=85, per_tile=170) == 765
    assert openai_tile_tokens(2048, 4096, base=85, per_tile=170) == 1105
    assert openai_tile_tokens(100, 100, base=85, per_tile=170) == 255
    assert openai_patch_tokens(1024, 1024, multiplier=1) == 1024
    assert openai_patch_tokens(1800, 2400, multiplier=1) == 1452
    assert anthropic_image_tokens(1000, 1000) == 1334
    assert anthropic_image_tokens(8000, 8000) <= 1600
    assert gemini_image_tokens(384, 300) == 258
    assert gemini_image_tokens(1000, 1000) == 258 * 4


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        ("gpt-4o", 765),  # 1024 x 1024 high: 4 tiles
        ("gpt-4.1-mini", 1659),  # 1,024 patches x 1.62
        ("claude-sonnet-4-20250514", 1399),  # 1024 x 1024 / 750
        ("gemini-2.5-flash", 1032),
    ],
)
def test_an_inline_image_counts_by_its_vendors_formula(model, expected):
    url = "data:image/png;base64," + b64(png(1024, 1024))
    text = {"type": "text", "text": "Describe this picture."}
    image = {"role": "user", "content": [text, {"type": "image_url", "image_url": {"url": url}}]}
    text_only = chat(model, {"role": "user", "content": [text]})

    assert chat(model, image) - text_only == expected


def test_low_detail_and_url_images_count_as_the_smallest_image():
    def image(url, **detail):
        return {
            "role": "user",
            "content": [{"type": "image_url", "image_url": {"url": url, **detail}}],
        }

    empty = chat("gpt-4o", {"role": "user", "content": []})
    big = "data:image/png;base64," + b64(png(2000, 2000))
    assert chat("gpt-4o", image(big, detail="low")) - empty == 85
    assert chat("gpt-4o", image("https://example.com/cat.jpg")) - empty == 85


def test_image_sizes_are_read_from_header_bytes_only():
    assert data_url_image_size("data:image/png;base64," + b64(png(640, 480))) == (640, 480)
    gif = b"GIF89a" + struct.pack("<HH", 300, 200) + bytes(30)
    assert base64_image_size(b64(gif)) == (300, 200)
    vp8x = b"RIFF" + bytes(4) + b"WEBPVP8X" + bytes(8) + (1919).to_bytes(3, "little")
    vp8x += (1079).to_bytes(3, "little")
    assert base64_image_size(b64(vp8x)) == (1920, 1080)
    bits = (799) | (599 << 14)
    vp8l = b"RIFF" + bytes(4) + b"WEBPVP8L" + bytes(4) + b"\x2f" + struct.pack("<I", bits)
    assert base64_image_size(b64(vp8l + bytes(8))) == (800, 600)
    # A JPEG whose size marker follows 1 MB of camera data
    big = jpeg(4032, 3024, exif_bytes=1_000_000)
    assert len(big) > 1_000_000
    assert base64_image_size(b64(big)) == (4032, 3024)
    # The same, in base64 wrapped at 76 characters a line
    assert base64_image_size(base64.encodebytes(big).decode()) == (4032, 3024)


@pytest.mark.parametrize(
    "data",
    ["", "!!!!", "not base64 at all", b64(b"\x89PNG\r\n\x1a\n"), b64(b"\xff\xd8\xff"), "=" * 50],
)
def test_an_unreadable_image_has_no_size(data):
    assert base64_image_size(data) is None


def test_audio_counts_by_its_duration():
    rate = 16_000
    samples = bytes(rate * 2 * 30)  # 30 s of 16-bit mono
    fmt = struct.pack("<HHIIHH", 1, 1, rate, rate * 2, 2, 16)
    wav = b"RIFF" + struct.pack("<I", 36 + len(samples)) + b"WAVEfmt " + struct.pack("<I", 16)
    wav += fmt + b"data" + struct.pack("<I", len(samples)) + samples
    audio = {"type": "input_audio", "input_audio": {"data": b64(wav), "format": "wav"}}

    empty = chat("gpt-4o", {"role": "user", "content": []})
    assert chat("gpt-4o", {"role": "user", "content": [audio]}) - empty == 300
    assert (
        chat("gemini-2.5-flash", {"role": "user", "content": [audio]})
        - chat("gemini-2.5-flash", {"role": "user", "content": []})
        == 32 * 30
    )


def test_embeddings_count_each_input_and_token_arrays_by_length():
    def embed(value):
        return prompt_tokens(
            endpoint="embeddings", body={"input": value}, model="text-embedding-3-small"
        )

    assert embed("hello world") == 2
    assert embed(["hello world", "hello"]) == 3
    assert embed([15339, 1917, 0]) == 3
    assert embed([[1, 2], [3]]) == 3


def test_text_past_the_budget_is_extrapolated_low(monkeypatch):
    text = "The quick brown fox jumps over the lazy dog. " * 20_000  # 900,000 characters
    exact = len(counting.encoding("o200k_base").encode_ordinary(text))
    counted = prompt_tokens(endpoint="embeddings", body={"input": text}, model="gpt-4o")

    assert 0.85 * exact <= counted <= exact


@pytest.mark.parametrize(
    "body",
    [
        {"messages": [{"role": "user", "content": " " * 7_000_000}]},
        {"messages": [{"role": "user", "content": "x" * 7_000_000}]},
        {"messages": [{"role": "user", "content": "\x00" * 1_000_000 + "\ud800" * 1000}]},
        {"messages": [{"role": "user", "content": "a"}] * 200_000},
        {"messages": "not a list", "tools": "nor this", "functions": [1, None, {"name": 5}]},
        {"messages": [{"role": 5, "content": {"deep": [[[[[[{"text": 1e308}]]]]]]}}]},
        {
            "messages": [
                {
                    "role": "user",
                    "content": [{"type": "image_url", "image_url": {"url": "data:;base64,@@"}}]
                    * 10_000,
                }
            ]
        },
        {"input": ["a"] * 1_000_000},
        {"input": [10**30, -1]},
    ],
    ids=[
        "spaces",
        "one-letter",
        "nul-surrogate",
        "many-messages",
        "wrong-types",
        "deep",
        "10k-bogus-images",
        "many-inputs",
        "huge-numbers",
    ],
)
def test_hostile_content_is_counted_in_bounded_time(body):
    for endpoint in ("chat", "embeddings", "messages", "completions"):
        started = time.perf_counter()
        tokens = prompt_tokens(endpoint=endpoint, body=body, model="gpt-4o")
        assert 1 <= tokens <= counting.MAX_PROMPT_TOKENS
        # Generous for a shared 2-core machine; the typical case is under 0.5 s.
        assert time.perf_counter() - started < 3
