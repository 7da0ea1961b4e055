"""Count a request's prompt tokens from its content, the way the vendors count them.

The hold of a request (`relay.calls.reservation_amount`) is its prompt as counted here
plus the completion it allows. Where the count cannot be exact it errs low: a count a
little low costs a small overrun that is charged in full and recorded (billing.meter),
while a count too high refuses with 402 a customer whose balance covers the call.

- Text is tokenized with OpenAI's BPE encodings through tiktoken, loaded from the files
  in `relay/encodings/` (never fetched at run time; see the README there): o200k_base
  for GPT-4o, GPT-4.1, GPT-4.5, GPT-5 and the o-series, cl100k_base for older OpenAI
  models. Vendors without a public tokenizer are counted with a public encoding their
  own tokenizer counts at least as many tokens as (`FAMILIES`): Claude with cl100k_base
  (Anthropic's vocabulary is smaller, so it needs more tokens for the same text),
  Gemini and every other model with o200k_base at 90 %.
- Each chat message adds the few tokens of its role markers (OpenAI's documented 3, and
  3 for the reply's; none for Claude, whose template is not published); tools and
  functions add their names, descriptions and parameters, and the system text counts
  like any message.
- Images follow the vendors' published formulas from the dimensions in the image's
  header bytes (PNG, JPEG, GIF, WebP), read from the base64 without decoding the image:
  OpenAI's 512-px tiles (or 32-px patches for the mini models), Anthropic's
  width * height / 750, Gemini's 258 tokens per 768-px tile. An image given by URL, or
  whose header cannot be read, counts as the smallest image of its vendor.
- Audio counts by duration: a WAV header's, else its size at 320 kbps (the highest
  common bitrate, so the duration errs short).
- Work is bounded: `TEXT_BUDGET_CHARS` characters are tokenized exactly, the rest
  counted at 90 % of the rate measured on them; text is tokenized in pieces of
  `CHUNK_CHARS` (split where the split changes no token), so no input reaches the
  tokenizer's worst cases; `MAX_MEASURED_IMAGES` images are measured, the rest count as
  the smallest image.
"""

import base64
import binascii
import functools
import gzip
import hashlib
import json
import math
import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tiktoken

ENCODINGS_DIR = Path(__file__).resolve().parent / "encodings"

# SHA-256 of each uncompressed encoding file: the hashes tiktoken itself checks the
# files against when it downloads them (tiktoken_ext/openai_public.py).
ENCODING_HASHES = {
    "cl100k_base": "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7",
    "o200k_base": "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d",
}
# The pre-tokenization patterns of tiktoken_ext/openai_public.py (tiktoken 0.14.0).
ENCODING_PATTERNS = {
    "cl100k_base": (
        r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+|"""
        r""" ?[^\s\p{L}\p{N}]++[\r\n]*+|\s++$|\s*[\r\n]|\s+(?!\S)|\s"""
    ),
    "o200k_base": "|".join(
        [
            r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
            r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
            r"""\p{N}{1,3}""",
            r""" ?[^\s\p{L}\p{N}]+[\r\n/]*""",
            r"""\s*[\r\n]+""",
            r"""\s+(?!\S)""",
            r"""\s+""",
        ]
    ),
}
ENCODING_SPECIAL_TOKENS = {
    "cl100k_base": {
        "<|endoftext|>": 100257,
        "<|fim_prefix|>": 100258,
        "<|fim_middle|>": 100259,
        "<|fim_suffix|>": 100260,
        "<|endofprompt|>": 100276,
    },
    "o200k_base": {"<|endoftext|>": 199999, "<|endofprompt|>": 200018},
}

# Characters of one request tokenized exactly (about 5 ms of ordinary text, 60 ms of the
# slowest text on this project's 2-core machine); past it, text is extrapolated.
TEXT_BUDGET_CHARS = 262_144
# The rate measured on the exact part, applied to the rest, is taken at this share,
# so an extrapolation errs low.
EXTRAPOLATED_SHARE = 0.9
# Text reaches the tokenizer in pieces of at most this many characters: its cost grows
# faster than the length of one unbroken run, and a run of a million spaces overflows
# its regex stack.
CHUNK_CHARS = 2_048
# Images whose header is read per request; each one past it counts as the smallest.
MAX_MEASURED_IMAGES = 256
# Segments of a JPEG skipped at most to find its size marker (each costs one small read
# of the base64, wherever it is: EXIF and colour profiles come first).
MAX_JPEG_SEGMENTS = 512
# Text values tokenized exactly per request; the rest are extrapolated like text past
# the budget (a body of a hundred thousand one-word messages stays fast).
MAX_EXACT_TEXTS = 20_000
# What one request's prompt may count at most (the most any model reads, and more).
MAX_PROMPT_TOKENS = 10_000_000
# Audio of unknown encoding is timed at this many bytes a second (320 kbps).
AUDIO_BYTES_PER_SECOND_AT_MOST = 40_000


def _load_encoding(name: str) -> tiktoken.Encoding:
    data = gzip.decompress((ENCODINGS_DIR / f"{name}.tiktoken.gz").read_bytes())
    if hashlib.sha256(data).hexdigest() != ENCODING_HASHES[name]:
        raise RuntimeError(f"relay/encodings/{name}.tiktoken.gz is not OpenAI's {name}.")
    ranks = {
        base64.b64decode(token): int(rank)
        for token, rank in (line.split() for line in data.splitlines() if line)
    }
    return tiktoken.Encoding(
        name,
        pat_str=ENCODING_PATTERNS[name],
        mergeable_ranks=ranks,
        special_tokens=ENCODING_SPECIAL_TOKENS[name],
    )


_encodings: dict[str, tiktoken.Encoding] = {}
_encodings_lock = threading.Lock()


def encoding(name: str) -> tiktoken.Encoding:
    """Return the named encoding, loaded from `relay/encodings/` once per process."""
    found = _encodings.get(name)
    if found is None:
        with _encodings_lock:
            found = _encodings.get(name)
            if found is None:
                found = _encodings[name] = _load_encoding(name)
    return found


def encodings_load() -> None:
    """Load every encoding now (at the relay's start), not during the first request."""
    for name in ENCODING_HASHES:
        encoding(name)


# --- Images ------------------------------------------------------------------------------


def openai_tile_tokens(width: int, height: int, *, base: int, per_tile: int) -> int:
    """Return OpenAI's count of a high-detail image: fit 2048 px square, then the shortest
    side to 768 px, then `base` + `per_tile` for each 512-px tile."""
    w, h = float(width), float(height)
    if max(w, h) > 2048:
        scale = 2048 / max(w, h)
        w, h = w * scale, h * scale
    if min(w, h) > 768:
        scale = 768 / min(w, h)
        w, h = w * scale, h * scale
    tiles = math.ceil(w / 512) * math.ceil(h / 512)
    return base + per_tile * tiles


def openai_patch_tokens(width: int, height: int, *, multiplier: float) -> int:
    """Return OpenAI's count for the patch-metered models (GPT-4.1 mini and nano, o4-mini,
    GPT-5 mini and nano): 32-px patches, at most 1,536, times the model's multiplier."""
    patches = math.ceil(width / 32) * math.ceil(height / 32)
    if patches > 1536:
        shrink = math.sqrt(32 * 32 * 1536 / (width * height))
        shrink *= min(
            math.floor(width * shrink / 32) / (width * shrink / 32),
            math.floor(height * shrink / 32) / (height * shrink / 32),
        )
        patches = min(1536, math.ceil(width * shrink / 32) * math.ceil(height * shrink / 32))
    return math.ceil(patches * multiplier)


def anthropic_image_tokens(width: int, height: int) -> int:
    """Return Anthropic's count: width * height / 750 after scaling to a long edge of at
    most 1,568 px and about 1.15 megapixels (so at most about 1,600 tokens)."""
    scale = min(1.0, 1568 / max(width, height), math.sqrt(1_150_000 / (width * height)))
    return max(1, min(1600, math.ceil(width * scale * height * scale / 750)))


def gemini_image_tokens(width: int, height: int) -> int:
    """Return Gemini's count: 258 for an image within 384 px, else 258 per 768-px tile of
    the image scaled to fit 3,072 px square (Google scales large images; the bound is
    ours, as Google does not publish one)."""
    if width <= 384 and height <= 384:
        return 258
    scale = min(1.0, 3072 / max(width, height))
    return 258 * math.ceil(width * scale / 768) * math.ceil(height * scale / 768)


@dataclass(frozen=True, slots=True)
class Family:
    """How one family of models counts: its encoding and its vendor's formulas."""

    name: str
    encoding: str
    # Share of the encoding's count taken (1 where the encoding is the vendor's own).
    text_share: float
    # Tokens of an image of the given width and height, high detail.
    image: Callable[[int, int], int]
    # Tokens of a low-detail image, and of an image whose size is unknown (a URL, an
    # unreadable header): the smallest image this vendor counts.
    smallest_image: int
    audio_tokens_per_second: int = 10
    # Role markers of each message, and of the reply the prompt ends with.
    message_tokens: int = 3
    reply_tokens: int = 3
    # Whether roles and names count as text (in OpenAI's template they do; Anthropic's
    # template is not published, so its markers count nothing).
    counts_roles: bool = True


def _openai(name: str, encoding_name: str, base: int, per_tile: int) -> Family:
    return Family(
        name,
        encoding_name,
        1.0,
        functools.partial(openai_tile_tokens, base=base, per_tile=per_tile),
        base,
    )


def _openai_patches(name: str, multiplier: float) -> Family:
    return Family(
        name,
        "o200k_base",
        1.0,
        functools.partial(openai_patch_tokens, multiplier=multiplier),
        math.ceil(multiplier),
    )


GPT_4O = _openai("gpt-4o", "o200k_base", 85, 170)
# Families by the start of the model name (after any "vendor/" prefix); the longest
# matching prefix wins.
FAMILIES: dict[str, Family] = {
    "gpt-4o": GPT_4O,
    "chatgpt-4o": GPT_4O,
    "gpt-4.1": GPT_4O,
    "gpt-4.5": GPT_4O,
    "gpt-4o-mini": _openai("gpt-4o-mini", "o200k_base", 2833, 5667),
    "gpt-4.1-mini": _openai_patches("gpt-4.1-mini", 1.62),
    "gpt-4.1-nano": _openai_patches("gpt-4.1-nano", 2.46),
    "gpt-5": _openai("gpt-5", "o200k_base", 70, 140),
    "gpt-5-mini": _openai_patches("gpt-5-mini", 1.62),
    "gpt-5-nano": _openai_patches("gpt-5-nano", 2.46),
    "gpt-oss": GPT_4O,
    "o1": _openai("o1", "o200k_base", 75, 150),
    "o3": _openai("o3", "o200k_base", 75, 150),
    "o4-mini": _openai_patches("o4-mini", 1.72),
    "gpt-4": _openai("gpt-4", "cl100k_base", 85, 170),
    "gpt-3.5": _openai("gpt-3.5", "cl100k_base", 85, 170),
    "text-embedding": _openai("text-embedding", "cl100k_base", 85, 170),
    "claude": Family(
        "claude",
        "cl100k_base",
        1.0,
        anthropic_image_tokens,
        1,
        message_tokens=0,
        reply_tokens=0,
        counts_roles=False,
    ),
    "gemini": Family(
        "gemini", "o200k_base", 0.9, gemini_image_tokens, 258, audio_tokens_per_second=32
    ),
}
# Every other model: o200k_base at 90 % and OpenAI's tiles (what OpenAI-compatible
# vision models bill by, when they say).
OTHER = Family(
    "other", "o200k_base", 0.9, functools.partial(openai_tile_tokens, base=85, per_tile=170), 85
)
_PREFIXES = sorted(FAMILIES, key=len, reverse=True)


def family_of(model: str) -> Family:
    """Return the counting family of a model name."""
    name = model.lower().rsplit("/", 1)[-1]
    for prefix in _PREFIXES:
        if name.startswith(prefix):
            return FAMILIES[prefix]
    # Names that carry the family later ("us.anthropic.claude-...", "my-claude-proxy").
    if "claude" in name:
        return FAMILIES["claude"]
    if "gemini" in name:
        return FAMILIES["gemini"]
    return OTHER


def _b64_bytes(data: str, start: int, length: int) -> bytes:
    """Return bytes [start, start + length) of base64 `data` without decoding the rest."""
    first = (start // 3) * 4
    last = math.ceil((start + length) / 3) * 4
    piece = data[first:last]
    piece += "=" * (-len(piece) % 4)
    decoded = binascii.a2b_base64(piece)
    skip = start - (first // 4) * 3
    return decoded[skip : skip + length]


_JPEG_SIZE_MARKERS = frozenset(
    {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
)


def _jpeg_size(read: Callable[[int, int], bytes]) -> tuple[int, int] | None:
    position = 2
    for _segment in range(MAX_JPEG_SEGMENTS):
        head = read(position, 9)
        if len(head) < 4 or head[0] != 0xFF:
            return None
        marker = head[1]
        if marker == 0xFF:  # fill byte
            position += 1
            continue
        if marker in (0x01, 0xD8) or 0xD0 <= marker <= 0xD7:
            position += 2
            continue
        (length,) = struct.unpack(">H", head[2:4])
        if marker in _JPEG_SIZE_MARKERS:
            if len(head) < 9:
                return None
            height, width = struct.unpack(">HH", head[5:9])
            return width, height
        if length < 2 or marker == 0xDA:  # start of scan before any size: not a JPEG
            return None
        position += 2 + length
    return None


def image_size(read: Callable[[int, int], bytes]) -> tuple[int, int] | None:
    """Return (width, height) from an image's header bytes (`read(start, length)`), if it
    is a PNG, JPEG, GIF or WebP of a sensible size."""
    head = read(0, 32)
    size: tuple[int, int] | None = None
    if head.startswith(b"\x89PNG\r\n\x1a\n") and head[12:16] == b"IHDR":
        size = struct.unpack(">II", head[16:24])
    elif head[:6] in (b"GIF87a", b"GIF89a"):
        size = struct.unpack("<HH", head[6:10])
    elif head[:4] == b"RIFF" and head[8:12] == b"WEBP" and len(head) >= 30:
        chunk = head[12:16]
        if chunk == b"VP8 ":
            width, height = struct.unpack("<HH", head[26:30])
            size = width & 0x3FFF, height & 0x3FFF
        elif chunk == b"VP8L":
            bits = int.from_bytes(head[21:25], "little")
            size = (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
        elif chunk == b"VP8X":
            size = (
                int.from_bytes(head[24:27], "little") + 1,
                (int.from_bytes(head[27:30], "little") + 1),
            )
    elif head[:2] == b"\xff\xd8":
        size = _jpeg_size(read)
    if size is None or not (0 < size[0] <= 1 << 24 and 0 < size[1] <= 1 << 24):
        return None
    return size


def data_url_image_size(url: str) -> tuple[int, int] | None:
    """Return the dimensions of a `data:` URL's base64 image, reading its header only."""
    if not url.startswith("data:"):
        return None
    comma = url.find(",", 0, 256)
    if comma < 0 or not url[:comma].endswith(";base64"):
        return None
    return base64_image_size(url[comma + 1 :])


def base64_image_size(data: str) -> tuple[int, int] | None:
    """Return the dimensions of a base64 image, decoding its header bytes only."""
    if "\n" in data[:1024]:
        # Wrapped in lines (MIME style): offsets into the bytes need the text unwrapped.
        data = "".join(data.split())

    def read(start: int, length: int) -> bytes:
        return _b64_bytes(data, start, length) if 0 <= start < len(data) else b""

    try:
        return image_size(read)
    except (binascii.Error, ValueError, struct.error):
        return None


def _wav_seconds(data: str) -> float | None:
    try:
        head = _b64_bytes(data, 0, 4096)
    except (binascii.Error, ValueError):
        return None
    if head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        return None
    position, byte_rate = 12, 0
    while position + 8 <= len(head):
        chunk, size = (
            head[position : position + 4],
            int.from_bytes(head[position + 4 : position + 8], "little"),
        )
        if chunk == b"fmt " and position + 20 <= len(head):
            byte_rate = int.from_bytes(head[position + 16 : position + 20], "little")
        elif chunk == b"data":
            if byte_rate <= 0:
                return None
            available = len(data) * 3 // 4 - position - 8
            return max(0, min(size, available)) / byte_rate
        position += 8 + size + (size & 1)
    return None


# --- The count ---------------------------------------------------------------------------


class _Count:
    """The running count of one request: exact text within the budget, the rest tallied."""

    def __init__(self, family: Family) -> None:
        self.family = family
        self.encoding = encoding(family.encoding)
        self.exact_chars = 0
        self.text_tokens = 0
        self.exact_texts = 0
        self.skipped_chars = 0
        self.fixed_tokens = 0  # markers, images, audio: counted as the vendor counts them
        self.images = 0

    def text(self, value: Any) -> None:
        if not isinstance(value, str) or not value:
            return
        room = TEXT_BUDGET_CHARS - self.exact_chars
        if room <= 0 or self.exact_texts >= MAX_EXACT_TEXTS:
            self.skipped_chars += len(value)
            return
        if len(value) > room:
            self.skipped_chars += len(value) - room
            value = value[:room]
        self.exact_chars += len(value)
        self.exact_texts += 1
        if len(value) <= SHORT_TEXT_CHARS:
            self.text_tokens += _short_tokens(self.family.encoding, value)
        else:
            self.text_tokens += _tokens(self.encoding, value)

    def add(self, tokens: int) -> None:
        self.fixed_tokens += tokens

    def image(self, size: tuple[int, int] | None, *, detail: Any = None) -> None:
        self.images += 1
        if detail == "low" or size is None:
            self.add(self.family.smallest_image)
        else:
            self.add(self.family.image(*size))

    def measures_images(self) -> bool:
        return self.images < MAX_MEASURED_IMAGES

    def total(self) -> int:
        text = self.text_tokens
        if self.skipped_chars:
            rate = self.text_tokens / self.exact_chars if self.exact_chars else 0.25
            text += int(self.skipped_chars * rate * EXTRAPOLATED_SHARE)
        text = int(text * self.family.text_share)
        return max(1, min(MAX_PROMPT_TOKENS, text + self.fixed_tokens))


def _split_point(text: str, start: int, end: int) -> int:
    """Return where to cut `text` before `end` so that no token changes: before a space,
    a line break or a CJK comma or full stop that follows a letter."""
    low = start + (end - start) // 2
    for mark in (" ", "\n", "\u3002", "\uff0c"):  # ideographic full stop and comma
        position = text.rfind(mark, low, end)
        for _attempt in range(8):
            if position <= low:
                break
            if text[position - 1].isalpha():
                return position
            position = text.rfind(mark, low, position)
    return end


# Roles, names and other short strings recur in every request: their counts are cached.
SHORT_TEXT_CHARS = 24


@functools.lru_cache(maxsize=8192)
def _short_tokens(encoding_name: str, text: str) -> int:
    return _tokens(encoding(encoding_name), text)


def _tokens(encoder: tiktoken.Encoding, text: str) -> int:
    """Return the number of tokens of `text`, tokenized in bounded pieces."""
    count, start = 0, 0
    while start < len(text):
        end = start + CHUNK_CHARS
        if end < len(text):
            end = _split_point(text, start, end)
        count += _piece_tokens(encoder, text[start:end])
        start = end
    return count


def _piece_tokens(encoder: tiktoken.Encoding, piece: str) -> int:
    try:
        return len(encoder.encode_ordinary(piece))
    except BaseException as error:
        # A panic of the tokenizer's Rust core is a BaseException (pyo3's PanicException);
        # anything but that is not ours to swallow.
        if type(error).__name__ != "PanicException":
            raise
        return len(piece.encode("utf-8", "surrogatepass")) // 4


def _image_part(count: _Count, url: Any, detail: Any = None) -> None:
    if not count.measures_images():
        count.image(None)
        return
    count.image(data_url_image_size(url) if isinstance(url, str) else None, detail=detail)


def _audio(count: _Count, data: Any, audio_format: Any) -> None:
    if not isinstance(data, str):
        return
    seconds = _wav_seconds(data) if audio_format in ("wav", None) else None
    if seconds is None:
        seconds = len(data) * 3 / 4 / AUDIO_BYTES_PER_SECOND_AT_MOST
    count.add(math.ceil(seconds * count.family.audio_tokens_per_second))


def _openai_content(count: _Count, content: Any) -> None:
    if isinstance(content, str):
        count.text(content)
        return
    if not isinstance(content, list):
        return
    for part in content:
        if isinstance(part, str):
            count.text(part)
            continue
        if not isinstance(part, dict):
            continue
        kind = part.get("type")
        if kind == "image_url":
            image = part.get("image_url")
            if isinstance(image, str):
                _image_part(count, image)
            elif isinstance(image, dict):
                _image_part(count, image.get("url"), image.get("detail"))
        elif kind == "input_audio":
            audio = part.get("input_audio")
            if isinstance(audio, dict):
                _audio(count, audio.get("data"), audio.get("format"))
        else:
            count.text(part.get("text"))
            count.text(part.get("refusal"))


# Tool definitions reach the model rendered as text (OpenAI's, as a TypeScript-like
# namespace in the system message). They count as their names, descriptions, parameter
# names, types and enum values, plus the fewest tokens the rendering adds around them.
TOOLS_HEADER_TOKENS = 12
FUNCTION_TOKENS = 10
PARAMETER_TOKENS = 2


def _parameters(count: _Count, properties: Any, depth: int = 0) -> None:
    if not isinstance(properties, dict) or depth > 8:
        return
    for key, schema in properties.items():
        count.add(PARAMETER_TOKENS)
        count.text(str(key))
        if not isinstance(schema, dict):
            continue
        count.text(schema.get("description"))
        enum = schema.get("enum")
        if isinstance(enum, list):
            for item in enum:
                count.add(1)
                count.text(item if isinstance(item, str) else json.dumps(item))
        else:
            count.add(1)  # the type
        if isinstance(schema.get("properties"), dict):
            _parameters(count, schema["properties"], depth + 1)
        elif isinstance(schema.get("items"), dict):
            _parameters(count, schema["items"].get("properties"), depth + 1)


def _function_tokens(count: _Count, function: Any) -> None:
    if not isinstance(function, dict):
        return
    count.add(FUNCTION_TOKENS)
    count.text(function.get("name"))
    count.text(function.get("description"))
    parameters = function.get("parameters")
    if isinstance(parameters, dict):
        _parameters(count, parameters.get("properties"))


def _chat(count: _Count, body: dict[str, Any]) -> None:
    family = count.family
    messages = body.get("messages")
    for message in messages if isinstance(messages, list) else []:
        if not isinstance(message, dict):
            continue
        count.add(family.message_tokens)
        if family.counts_roles:
            count.text(message.get("role"))
            if isinstance(message.get("name"), str):
                count.text(message["name"])
                count.add(1)
        _openai_content(count, message.get("content"))
        calls = message.get("tool_calls")
        for call in calls if isinstance(calls, list) else []:
            if isinstance(call, dict) and isinstance(call.get("function"), dict):
                count.add(family.message_tokens)
                count.text(call["function"].get("name"))
                count.text(call["function"].get("arguments"))
        legacy_call = message.get("function_call")
        if isinstance(legacy_call, dict):
            count.text(legacy_call.get("name"))
            count.text(legacy_call.get("arguments"))
    count.add(family.reply_tokens)
    tools = body.get("tools")
    functions = [
        tool.get("function")
        for tool in (tools if isinstance(tools, list) else [])
        if isinstance(tool, dict)
    ]
    legacy = body.get("functions")
    functions += legacy if isinstance(legacy, list) else []
    if functions:
        count.add(TOOLS_HEADER_TOKENS)
    for function in functions:
        _function_tokens(count, function)


def _anthropic_blocks(count: _Count, content: Any) -> None:
    if isinstance(content, str):
        count.text(content)
        return
    if not isinstance(content, list):
        return
    for block in content:
        if not isinstance(block, dict):
            continue
        kind = block.get("type")
        if kind == "image":
            source = block.get("source")
            size = None
            if count.measures_images() and isinstance(source, dict):
                data = source.get("data")
                if source.get("type") == "base64" and isinstance(data, str):
                    size = base64_image_size(data)
            count.image(size)
        elif kind == "tool_use":
            count.text(block.get("name"))
            count.text(json.dumps(block.get("input"), ensure_ascii=False))
        elif kind == "tool_result":
            _anthropic_blocks(count, block.get("content"))
        else:
            count.text(block.get("text"))
            count.text(block.get("thinking"))


# Anthropic's documented system prompt for tool use (the smaller of its two figures).
ANTHROPIC_TOOL_PROMPT_TOKENS = 313


def _messages(count: _Count, body: dict[str, Any]) -> None:
    _anthropic_blocks(count, body.get("system"))
    messages = body.get("messages")
    for message in messages if isinstance(messages, list) else []:
        if isinstance(message, dict):
            count.add(count.family.message_tokens)
            _anthropic_blocks(count, message.get("content"))
    count.add(count.family.reply_tokens)
    tools = body.get("tools")
    if isinstance(tools, list) and tools:
        count.add(ANTHROPIC_TOOL_PROMPT_TOKENS)
        for tool in tools:
            if isinstance(tool, dict):
                count.text(tool.get("name"))
                count.text(tool.get("description"))
                count.text(json.dumps(tool.get("input_schema"), ensure_ascii=False))


def _response_content(count: _Count, content: Any) -> None:
    """Count a Responses message's content: text, or parts (input_text, output_text,
    refusal, input_image by data URL or file id)."""
    if isinstance(content, str):
        count.text(content)
        return
    for part in content if isinstance(content, list) else []:
        if not isinstance(part, dict):
            continue
        if part.get("type") == "input_image":
            _image_part(count, part.get("image_url"), part.get("detail"))
        else:
            count.text(part.get("text"))
            count.text(part.get("refusal"))


def _response_item(count: _Count, item: dict[str, Any]) -> None:
    """Count one item of a Responses `input`: a message (typed or not), a function call or
    its output, a reasoning summary; other items (references to stored ones) count nothing."""
    family = count.family
    kind = item.get("type", "message")
    if kind == "message":
        count.add(family.message_tokens)
        if family.counts_roles:
            count.text(item.get("role"))
        _response_content(count, item.get("content"))
    elif kind in ("function_call", "custom_tool_call"):
        count.add(family.message_tokens)
        count.text(item.get("name"))
        count.text(item.get("arguments"))
        count.text(item.get("input"))
    elif kind in ("function_call_output", "custom_tool_call_output"):
        count.add(family.message_tokens)
        _response_content(count, item.get("output"))
    elif kind == "reasoning":
        _response_content(count, item.get("summary"))


def _responses(count: _Count, body: dict[str, Any]) -> None:
    """Count a Responses request as chat's: `instructions` as a system message, `input`
    (text, or a list of items), the reply's markers, its function tools."""
    instructions = body.get("instructions")
    if isinstance(instructions, str):
        _response_item(count, {"role": "system", "content": instructions})
    items = body.get("input")
    if isinstance(items, str):
        _response_item(count, {"role": "user", "content": items})
    for item in items if isinstance(items, list) else []:
        if isinstance(item, dict):
            _response_item(count, item)
    count.add(count.family.reply_tokens)
    tools = body.get("tools")
    # Responses' function tools are flat: {type, name, description, parameters}.
    functions = [
        tool
        for tool in (tools if isinstance(tools, list) else [])
        if isinstance(tool, dict) and tool.get("type") == "function"
    ]
    if functions:
        count.add(TOOLS_HEADER_TOKENS)
    for function in functions:
        _function_tokens(count, function)


def _inputs(count: _Count, value: Any) -> None:
    """Count a completions prompt or an embeddings input: text, texts or token ids."""
    if isinstance(value, str):
        count.text(value)
    elif isinstance(value, list) and value:
        if isinstance(value[0], int):
            count.add(len(value))  # one prompt of token ids
            return
        for item in value:
            if isinstance(item, str):
                count.text(item)
            elif isinstance(item, list):
                count.add(len(item))


def prompt_tokens(*, endpoint: str, body: dict[str, Any], model: str) -> int:
    """Return the prompt tokens of a request to `endpoint` ("chat", "completions",
    "embeddings", "messages" or "responses") as the vendor of `model` counts them, or a
    little less."""
    count = _Count(family_of(model))
    if endpoint == "chat":
        _chat(count, body)
    elif endpoint == "responses":
        _responses(count, body)
    elif endpoint == "messages":
        _messages(count, body)
    elif endpoint == "completions":
        _inputs(count, body.get("prompt"))
        count.text(body.get("suffix"))
    else:
        _inputs(count, body.get("input"))
    return count.total()
