"""The mock upstream of the holds benchmark: usage as the vendors count it.

Written apart from `relay.counting` (the estimator under test), which it never calls:
- Text: the exact prompt a vendor's chat template renders (OpenAI's ChatML with its
  role markers as special tokens, tools as the TypeScript-like namespace OpenAI renders
  them into, tool calls as `to=functions.name` turns; "Human:/Assistant:" turns for
  Claude; Gemma's `<start_of_turn>` turns for Gemini), tokenized whole by tiktoken.
- Images: the vendors' published formulas on the true dimensions, found by decoding:
  PNGs are decompressed and their rows counted; JPEG, GIF and WebP are walked to their
  frame, image descriptor and bitstream header; a URL image has the size the vendor
  would fetch (`CorpusCall.fetched`).
- Audio: the duration of every sample in the WAV's data.

Vendors whose tokenizer is not published cannot be reproduced offline. They are played
by an assumption, stated here and in the README: Claude counts cl100k_base's tokens
times 1.00-1.30 (its vocabulary is smaller than cl100k's, so it needs at least as many
tokens), Gemini and the other vendors o200k_base's times 0.90-1.30. The factor of each
request is drawn from a hash of its rendered prompt, so it is the same on every run.
"""

import base64
import hashlib
import json
import math
import struct
import zlib
from typing import Any

import tiktoken

from relay.counting import encoding as public_encoding

IM_START, IM_END, IM_SEP = "<|im_start|>", "<|im_end|>", "<|im_sep|>"

_chatml: dict[str, tiktoken.Encoding] = {}


def chatml(name: str) -> tiktoken.Encoding:
    """Return the encoding with ChatML's markers as special tokens (as OpenAI's servers)."""
    if name not in _chatml:
        base = public_encoding(name)
        top = base.max_token_value
        _chatml[name] = tiktoken.Encoding(
            f"{name}_im",
            pat_str=base._pat_str,
            mergeable_ranks=base._mergeable_ranks,
            special_tokens={
                **base._special_tokens,
                IM_START: top + 1,
                IM_END: top + 2,
                IM_SEP: top + 3,
            },
        )
    return _chatml[name]


def vendor_of(model: str) -> tuple[str, str]:
    """Return (vendor, encoding) of a model, by name."""
    if model.startswith("claude"):
        return "anthropic", "cl100k_base"
    if model.startswith("gemini"):
        return "google", "o200k_base"
    if model.startswith(("gpt-4o", "gpt-4.1", "gpt-5", "o1", "o3", "o4")):
        return "openai", "o200k_base"
    if model.startswith(("gpt-", "text-embedding")):
        return "openai", "cl100k_base"
    return "other", "o200k_base"


# --- True image dimensions ------------------------------------------------------------


def decoded_size(data: bytes) -> tuple[int, int]:
    """Return an image's (width, height) from its whole data."""
    if data.startswith(b"\x89PNG"):
        position, idat, header = 8, b"", b""
        while position < len(data):
            (length,) = struct.unpack(">I", data[position : position + 4])
            kind = data[position + 4 : position + 8]
            chunk = data[position + 8 : position + 8 + length]
            if kind == b"IHDR":
                header = chunk
            elif kind == b"IDAT":
                idat += chunk
            position += 12 + length
        width, height, depth, colour = struct.unpack(">IIBB", header[:10])
        channels = {0: 1, 2: 3, 4: 2, 6: 4}[colour]
        stride = 1 + width * channels * depth // 8
        pixels = zlib.decompress(idat)
        if len(pixels) % stride:
            raise ValueError("PNG rows do not match the width")
        return width, len(pixels) // stride
    if data.startswith(b"\xff\xd8"):
        position = 2
        while position < len(data):
            marker = data[position + 1]
            (length,) = struct.unpack(">H", data[position + 2 : position + 4])
            if marker == 0xC0 or marker == 0xC2:
                height, width = struct.unpack(">HH", data[position + 5 : position + 9])
                return width, height
            position += 2 + length
        raise ValueError("JPEG without a frame")
    if data.startswith(b"GIF8"):
        position = 13  # after the logical screen, no global colour table in the corpus
        if data[position] != 0x2C:
            raise ValueError("GIF without an image descriptor first")
        width, height = struct.unpack("<HH", data[position + 5 : position + 9])
        return width, height
    if data[8:12] == b"WEBP" and data[12:16] == b"VP8L":
        if data[20] != 0x2F:
            raise ValueError("VP8L without its signature")
        bits = struct.unpack("<I", data[21:25])[0]
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    raise ValueError("unknown image format")


# --- The vendors' image formulas ----------------------------------------------------------

OPENAI_TILES = {
    "gpt-4o-mini": (2833, 5667),
    "o3": (75, 150),
    "o1": (75, 150),
    "gpt-5": (70, 140),
}
OPENAI_PATCHES = {"gpt-4.1-mini": 1.62, "gpt-4.1-nano": 2.46, "o4-mini": 1.72}


def openai_image(model: str, width: int, height: int, detail: str | None) -> int:
    for prefix, multiplier in OPENAI_PATCHES.items():
        if model.startswith(prefix):
            patches = math.ceil(width / 32) * math.ceil(height / 32)
            if patches > 1536:
                r = math.sqrt(32 * 32 * 1536 / (width * height))
                r = r * min(
                    math.floor(width * r / 32) / (width * r / 32),
                    math.floor(height * r / 32) / (height * r / 32),
                )
                patches = min(1536, math.ceil(width * r / 32) * math.ceil(height * r / 32))
            return math.ceil(patches * multiplier)
    base, tile = next(
        (costs for prefix, costs in OPENAI_TILES.items() if model.startswith(prefix)), (85, 170)
    )
    if detail == "low":
        return base
    w, h = width, height
    if max(w, h) > 2048:
        w, h = w * 2048 / max(width, height), h * 2048 / max(width, height)
    if min(w, h) > 768:
        shortest = min(w, h)
        w, h = w * 768 / shortest, h * 768 / shortest
    return base + tile * math.ceil(w / 512) * math.ceil(h / 512)


def anthropic_image(width: int, height: int) -> int:
    w, h = float(width), float(height)
    if max(w, h) > 1568:
        w, h = w * 1568 / max(width, height), h * 1568 / max(width, height)
    if w * h > 1_150_000:
        shrink = math.sqrt(1_150_000 / (w * h))
        w, h = w * shrink, h * shrink
    return min(1600, math.ceil(w * h / 750))


def gemini_image(width: int, height: int) -> int:
    if width <= 384 and height <= 384:
        return 258
    w, h = float(width), float(height)
    if max(w, h) > 3072:
        w, h = w * 3072 / max(width, height), h * 3072 / max(width, height)
    return 258 * math.ceil(w / 768) * math.ceil(h / 768)


def image_tokens(vendor: str, model: str, size: tuple[int, int], detail: str | None) -> int:
    if vendor == "anthropic":
        return anthropic_image(*size)
    if vendor == "google":
        return gemini_image(*size)
    return openai_image(model, *size, detail)


def wav_seconds(data: bytes) -> float:
    (byte_rate,) = struct.unpack("<I", data[28:32])
    position = 12
    while position < len(data):
        kind, size = (
            data[position : position + 4],
            struct.unpack("<I", data[position + 4 : position + 8])[0],
        )
        if kind == b"data":
            return len(data[position + 8 : position + 8 + size]) / byte_rate
        position += 8 + size
    raise ValueError("WAV without data")


# --- Rendering ------------------------------------------------------------------------


class Rendered:
    """A prompt as the vendor renders it, plus what it counts outside the text."""

    def __init__(self) -> None:
        self.text: list[str] = []
        self.extra = 0  # images, audio, documented fixed prompts


def _ts_type(schema: dict[str, Any], indent: str) -> str:
    if "enum" in schema:
        return " | ".join(json.dumps(item) for item in schema["enum"])
    kind = schema.get("type")
    if kind == "object" and "properties" in schema:
        inner = _ts_props(schema["properties"], schema.get("required", []), indent + "  ")
        return "{\n" + inner + indent + "}"
    if kind == "array":
        return _ts_type(schema.get("items", {}), indent) + "[]"
    return {"integer": "number", "string": "string", "number": "number", "boolean": "boolean"}.get(
        kind or "", "any"
    )


def _ts_props(properties: dict[str, Any], required: list[str], indent: str) -> str:
    out = ""
    for name, schema in properties.items():
        if "description" in schema:
            out += f"{indent}// {schema['description']}\n"
        optional = "" if name in required else "?"
        out += f"{indent}{name}{optional}: {_ts_type(schema, indent)},\n"
    return out


def openai_tools_text(functions: list[dict[str, Any]]) -> str:
    """Return the namespace OpenAI renders function definitions into."""
    text = "# Tools\n\n## functions\n\nnamespace functions {\n\n"
    for function in functions:
        if function.get("description"):
            text += f"// {function['description']}\n"
        parameters = function.get("parameters") or {}
        properties = parameters.get("properties") or {}
        text += f"type {function['name']} = (_: {{\n"
        text += _ts_props(properties, parameters.get("required", []), "")
        text += "}) => any;\n\n"
    return text + "} // namespace functions"


def _parts(call_fetched: dict, vendor: str, model: str, content: Any, rendered: Rendered) -> str:
    if isinstance(content, str):
        return content
    texts = []
    for part in content or []:
        kind = part.get("type")
        if kind == "text":
            texts.append(part["text"])
        elif kind == "image_url":
            url, detail = part["image_url"]["url"], part["image_url"].get("detail")
            if url.startswith("data:"):
                size = decoded_size(base64.b64decode(url.split(",", 1)[1]))
            else:
                size = call_fetched[url]
            rendered.extra += image_tokens(vendor, model, size, detail)
        elif kind == "input_audio":
            seconds = wav_seconds(base64.b64decode(part["input_audio"]["data"]))
            rendered.extra += math.ceil(seconds * (32 if vendor == "google" else 10))
        elif kind == "image":
            size = decoded_size(base64.b64decode(part["source"]["data"]))
            rendered.extra += image_tokens(vendor, model, size, None)
    return "\n".join(texts)


def render_chat(body: dict[str, Any], vendor: str, fetched: dict) -> Rendered:
    model = body["model"]
    rendered = Rendered()
    turns: list[tuple[str, str]] = []
    functions = [tool["function"] for tool in body.get("tools", [])]
    if functions:
        turns.append(("system", openai_tools_text(functions)))
    for message in body["messages"]:
        role = message["role"]
        if "name" in message:
            role = f"{role} name={message['name']}"
        turns.append((role, _parts(fetched, vendor, model, message.get("content"), rendered)))
        for call in message.get("tool_calls") or []:
            function = call["function"]
            turns.append((f"assistant to=functions.{function['name']}", function["arguments"]))
    if vendor == "anthropic":
        text = ""
        for role, content in turns:
            speaker = "Assistant" if role.startswith("assistant") else "Human"
            text += f"\n\n{speaker}: {content}" if role != "system" else content
        rendered.text.append(text + "\n\nAssistant:")
    elif vendor in ("google", "other"):
        rendered.text.append(
            "".join(f"<start_of_turn>{role}\n{content}<end_of_turn>\n" for role, content in turns)
            + "<start_of_turn>model\n"
        )
    else:
        rendered.text.append(
            "".join(f"{IM_START}{role}{IM_SEP}{content}{IM_END}" for role, content in turns)
            + f"{IM_START}assistant{IM_SEP}"
        )
    return rendered


def render_messages(body: dict[str, Any]) -> Rendered:
    rendered = Rendered()
    text = ""
    if body.get("tools"):
        rendered.extra += 346  # Anthropic's tool-use system prompt (tool_choice auto)
        text += "\n".join(json.dumps(tool, ensure_ascii=False) for tool in body["tools"])
    if isinstance(body.get("system"), str):
        text += body["system"]
    for message in body["messages"]:
        speaker = "Assistant" if message["role"] == "assistant" else "Human"
        text += f"\n\n{speaker}: " + _parts(
            {}, "anthropic", body["model"], message["content"], rendered
        )
    rendered.text.append(text + "\n\nAssistant:")
    return rendered


def _factor(vendor: str, text: str) -> float:
    """The assumed ratio of an unpublished tokenizer to the public encoding (docstring)."""
    if vendor not in ("anthropic", "google", "other"):
        return 1.0
    draw = (
        int.from_bytes(hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()[:4]) / 2**32
    )
    low = 1.0 if vendor == "anthropic" else 0.9
    return low + draw * (1.3 - low)


def prompt_tokens(endpoint: str, body: dict[str, Any], fetched: dict | None = None) -> int:
    """Return the prompt tokens the vendor of `body["model"]` bills for this request."""
    vendor, encoding_name = vendor_of(body["model"])
    if endpoint == "embeddings":
        inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
        encoder = public_encoding(encoding_name)
        total = sum(len(encoder.encode_ordinary(text)) for text in inputs)
        return math.ceil(total * _factor(vendor, "".join(inputs)))
    rendered = (
        render_messages(body)
        if endpoint == "messages"
        else render_chat(body, vendor, fetched or {})
    )
    text = "".join(rendered.text)
    if vendor == "openai":
        tokens = len(chatml(encoding_name).encode(text, allowed_special="all"))
    else:
        tokens = len(public_encoding(encoding_name).encode_ordinary(text))
    return math.ceil(tokens * _factor(vendor, text)) + rendered.extra


def completion_tokens(body: dict[str, Any], allowed_per_choice: int, seed: int) -> int:
    """Return the completion tokens of the answer: a typical length, within the limit."""
    digest = hashlib.sha256(str(seed).encode()).digest()
    draw, tail = (int.from_bytes(digest[i : i + 4]) / 2**32 for i in (0, 4))
    length = int(math.exp(4.5 + 2.5 * draw))  # 90 to 1,800 tokens, median about 320
    if tail < 0.05:  # one answer in twenty runs long: 3,000 to 12,000 tokens
        length = int(3_000 + 9_000 * draw)
    choices = max(body.get("n", 1), body.get("best_of", 1))
    return min(length, allowed_per_choice) * choices


# --- The upstream ------------------------------------------------------------------------


class VendorUpstream:
    """An ASGI upstream answering /v1/chat/completions, /v1/messages and /v1/embeddings
    with the vendors' usage; image URLs resolve through `fetched`."""

    def __init__(self) -> None:
        self.fetched: dict[str, tuple[int, int]] = {}

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        raw = b""
        while True:
            message = await receive()
            raw += message.get("body", b"")
            if not message.get("more_body"):
                break
        body = json.loads(raw)
        endpoint = scope["path"].rstrip("/").rsplit("/", 1)[-1]
        endpoint = {"completions": "chat"}.get(endpoint, endpoint)
        prompt = prompt_tokens(endpoint, body, self.fetched)
        # Without a limit the vendor lets the answer run (to its own output limit).
        limit = body.get("max_completion_tokens") or body.get("max_tokens") or 32_768
        completion = 0 if endpoint == "embeddings" else completion_tokens(body, limit, len(raw))
        if endpoint == "messages":
            answer: dict[str, Any] = {
                "type": "message",
                "content": [{"type": "text", "text": "ok"}],
                "usage": {"input_tokens": prompt, "output_tokens": completion},
            }
        else:
            answer = {
                "object": "chat.completion",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}}],
                "usage": {
                    "prompt_tokens": prompt,
                    "completion_tokens": completion,
                    "total_tokens": prompt + completion,
                },
            }
        data = json.dumps(answer).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": data})
