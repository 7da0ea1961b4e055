"""A seeded corpus of realistic relay requests: what the hold is measured on.

Each call is (endpoint, model, body) plus what the mock upstream needs to play the vendor
(the sizes of images given by URL, as the vendor would fetch them). Kinds: short chats,
long chats, tool calls, images of many sizes and formats, audio, embeddings batches,
several choices (`n`), Anthropic-style messages.
"""

import base64
import random
import struct
import zlib
from dataclasses import dataclass, field
from typing import Any

_WORD_TEXT = (
    "the of and to in is you that it he was for on are as with his they at be this have "
    "from or one had by word but not what all were we when your can said there use an each "
    "which she do how their if will up other about out many then them these so some her "
    "would make like him into time has look two more write go see number no way could people "
    "my than first water been call who oil its now find long down day did get come made may "
    "part over new sound take only little work know place year live me back give most very "
    "after thing our just name good sentence man think say great where help through much "
    "before line right too mean old any same tell boy follow came want show also around form "
    "three small set put end does another well large must big even such because turn here "
    "why ask went men read need land different home us move try kind hand picture again "
    "change off play spell air away animal house point page letter mother answer found study "
    "still learn should America world invoice database migration latency throughput customer "
    "refund balance token relay Kubernetes PostgreSQL configuration deployment rollback"
)
WORDS = _WORD_TEXT.split()
CHINESE = (
    "的一是在不了有和人这中大为上个国我以要他时来用们生到作地于出就分对成会可主发年动同工也能下过子"
    "说产种面而方后多定行学法所民得经十三之进着等部度家电力里如水化高自二理起小物现实加量都两体制机"
    "当使点从业本去把性好应开它合还因由其些然前外天政四日那社义事平形相全表间样与关各重新线内数正心"
    "反你明看原又么利比或但质气第向道命此变条只没结解问意建月公无系军很情者最立代想已通并提直题党程"
    "展五果料象员革位入常文总次品式活设及管特件长求老头基资边流路级少图山统接知较将组见计别她手角期"
)
CODE = [
    "def handler(event, context):\n    items = [x for x in event['items'] if x]\n"
    "    return {'count': len(items), 'ok': True}\n",
    "SELECT account_id, sum(cost) FROM logs WHERE created_at > now() - interval '1 day'"
    " GROUP BY 1 ORDER BY 2 DESC LIMIT 20;",
    "const res = await fetch(url, { method: 'POST', headers, body: JSON.stringify(data) });\n"
    "if (!res.ok) throw new Error(`HTTP ${res.status}`);\n",
]

CHAT_MODELS = [
    "gpt-4o",
    "gpt-4o-mini",
    "gpt-4.1",
    "gpt-4.1-mini",
    "gpt-4.1-nano",
    "o3",
    "o4-mini",
    "claude-3-5-haiku-20241022",
    "claude-sonnet-4-20250514",
    "claude-opus-4-20250514",
    "gemini-2.5-pro",
    "gemini-2.5-flash",
    "deepseek-chat",
    "qwen-plus",
    "grok-3",
    "mistral-large-latest",
    "llama-3.3-70b-instruct",
]
VISION_MODELS = [
    "gpt-4o",
    "gpt-4o-mini",
    "gpt-4.1",
    "gpt-4.1-mini",
    "o4-mini",
    "claude-sonnet-4-20250514",
    "claude-3-5-haiku-20241022",
    "gemini-2.5-flash",
    "qwen-plus",
]
EMBEDDING_MODELS = ["text-embedding-3-small", "text-embedding-3-large", "gemini-embedding-001"]
IMAGE_SIZES = [
    (64, 64),
    (200, 150),
    (384, 384),
    (512, 512),
    (800, 600),
    (1024, 768),
    (1024, 1024),
    (1280, 720),
    (1920, 1080),
    (2048, 1536),
    (3024, 4032),
    (4000, 3000),
    (600, 4000),
    (7680, 4320),
]


@dataclass
class CorpusCall:
    kind: str
    endpoint: str  # "chat", "messages" or "embeddings"
    model: str
    body: dict[str, Any]
    # What the vendor finds when it fetches an image URL: url -> (width, height).
    fetched: dict[str, tuple[int, int]] = field(default_factory=dict)


def sentence(rng: random.Random, words: int) -> str:
    chosen = [rng.choice(WORDS) for _ in range(words)]
    chosen[0] = chosen[0].capitalize()
    return " ".join(chosen) + rng.choice([".", ".", "?", "!"])


def paragraph(rng: random.Random, sentences: int) -> str:
    if rng.random() < 0.15:
        return "".join(rng.choice(CHINESE) for _ in range(sentences * 25)) + "。"
    if rng.random() < 0.1:
        return rng.choice(CODE) * max(1, sentences // 3)
    return " ".join(sentence(rng, rng.randint(5, 20)) for _ in range(sentences))


def png(width: int, height: int, rng: random.Random, *, noisy: bool = False) -> bytes:
    """Return a real PNG (8-bit grey), flat or noisy (noisy ones weigh what photos weigh)."""
    if noisy:
        row_bytes = [b"\x00" + rng.randbytes(width) for _ in range(min(height, 64))]
        raw = b"".join(row_bytes[y % len(row_bytes)] for y in range(height))
    else:
        raw = (b"\x00" + bytes([rng.randrange(256)]) * width) * height

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw, 1))
        + chunk(b"IEND", b"")
    )


def jpeg(width: int, height: int, rng: random.Random) -> bytes:
    """Return a JPEG's marker structure (EXIF of a camera's size, tables, frame, scan)."""

    def segment(marker: int, data: bytes) -> bytes:
        return bytes([0xFF, marker]) + struct.pack(">H", len(data) + 2) + data

    exif = b"Exif\x00\x00" + rng.randbytes(rng.choice([200, 8_000, 30_000]))
    frame = struct.pack(">BHHB", 8, height, width, 3) + b"\x01\x22\x00\x02\x11\x01\x03\x11\x01"
    return (
        b"\xff\xd8"
        + segment(0xE0, b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00")
        + segment(0xE1, exif)
        + segment(0xDB, b"\x00" + bytes(64))
        + segment(0xC0, frame)
        + segment(0xC4, b"\x00" + bytes(16) + bytes(12))
        + segment(0xDA, b"\x03\x01\x00\x02\x11\x03\x11\x00\x3f\x00")
        + rng.randbytes(rng.randint(2_000, 60_000)).replace(b"\xff", b"\xfe")
        + b"\xff\xd9"
    )


def gif(width: int, height: int) -> bytes:
    screen = struct.pack("<HHBBB", width, height, 0, 0, 0)
    image = b"\x2c" + struct.pack("<HHHHB", 0, 0, width, height, 0)
    return b"GIF89a" + screen + image + b"\x02\x02\x44\x01\x00\x3b"


def webp(width: int, height: int) -> bytes:
    bits = (width - 1) | ((height - 1) << 14)
    payload = b"VP8L" + struct.pack("<I", 5) + b"\x2f" + struct.pack("<I", bits) + b"\x00"
    return b"RIFF" + struct.pack("<I", 4 + len(payload)) + b"WEBP" + payload


def wav(seconds: float, rng: random.Random) -> bytes:
    rate = 16_000
    data = rng.randbytes(int(seconds * rate) * 2)
    fmt = struct.pack("<HHIIHH", 1, 1, rate, rate * 2, 2, 16)
    return (
        b"RIFF"
        + struct.pack("<I", 36 + len(data))
        + b"WAVEfmt "
        + struct.pack("<I", 16)
        + fmt
        + b"data"
        + struct.pack("<I", len(data))
        + data
    )


def data_url(kind: str, data: bytes) -> str:
    return f"data:image/{kind};base64,{base64.b64encode(data).decode()}"


def image_part(rng: random.Random, call: CorpusCall) -> dict[str, Any]:
    width, height = rng.choice(IMAGE_SIZES)
    if rng.random() < 0.3:
        width, height = height, width
    form = rng.choices(["png", "jpeg", "gif", "webp", "url"], [4, 4, 1, 1, 2])[0]
    detail = rng.choices([None, "auto", "high", "low"], [5, 2, 2, 1])[0]
    if form == "url":
        url = f"https://images.invalid/{rng.getrandbits(64):x}.jpg"
        call.fetched[url] = (width, height)
    elif form == "png":
        noisy = width * height <= 1_100_000 and rng.random() < 0.5
        url = data_url("png", png(width, height, rng, noisy=noisy))
    elif form == "jpeg":
        url = data_url("jpeg", jpeg(width, height, rng))
    elif form == "gif":
        url = data_url("gif", gif(min(width, 65535), min(height, 65535)))
    else:
        url = data_url("webp", webp(min(width, 16384), min(height, 16384)))
    image: dict[str, Any] = {"url": url}
    if detail:
        image["detail"] = detail
    return {"type": "image_url", "image_url": image}


def completion_limit(rng: random.Random, body: dict[str, Any]) -> None:
    roll = rng.random()
    if roll < 0.35:
        body["max_tokens"] = rng.choice([64, 256, 512, 1024, 2048, 4096])
    elif roll < 0.5:
        body["max_completion_tokens"] = rng.choice([256, 1024, 8192])


def chat(rng: random.Random, kind: str) -> CorpusCall:
    model = rng.choice(VISION_MODELS if kind == "image" else CHAT_MODELS)
    call = CorpusCall(kind, "chat", model, {"model": model})
    messages: list[dict[str, Any]] = []
    if rng.random() < 0.6:
        messages.append({"role": "system", "content": paragraph(rng, rng.randint(1, 6))})
    turns = {"short": rng.randint(1, 3), "long": rng.randint(10, 60)}.get(kind, rng.randint(1, 4))
    for turn in range(turns):
        size = rng.randint(1, 4) if kind != "long" else rng.randint(2, 40)
        messages.append({"role": "user", "content": paragraph(rng, size)})
        if turn < turns - 1:
            messages.append({"role": "assistant", "content": paragraph(rng, size * 2)})
    if kind == "image":
        parts: list[dict[str, Any]] = [{"type": "text", "text": sentence(rng, 12)}]
        parts += [image_part(rng, call) for _ in range(rng.choice([1, 1, 1, 2, 3, 5]))]
        messages.append({"role": "user", "content": parts})
    if kind == "audio":
        seconds = rng.choice([2, 10, 30, 90])
        data = base64.b64encode(wav(seconds, rng)).decode()
        messages.append(
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Transcribe and summarise."},
                    {"type": "input_audio", "input_audio": {"data": data, "format": "wav"}},
                ],
            }
        )
        call.model = call.body["model"] = rng.choice(["gpt-4o", "gemini-2.5-flash"])
    if kind == "tools":
        call.body["tools"] = tools(rng)
        name = call.body["tools"][0]["function"]["name"]
        messages.append(
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": name, "arguments": '{"city": "Paris", "days": 3}'},
                    }
                ],
            }
        )
        messages.append({"role": "tool", "tool_call_id": "call_1", "content": paragraph(rng, 3)})
    if kind == "choices":
        call.body["n"] = rng.choice([2, 3, 4, 8])
    if rng.random() < 0.1:
        messages[-1]["name"] = rng.choice(["alice", "bob_2"])
    call.body["messages"] = messages
    completion_limit(rng, call.body)
    return call


def tools(rng: random.Random) -> list[dict[str, Any]]:
    found = []
    for index in range(rng.randint(1, 6)):
        properties: dict[str, Any] = {
            "city": {"type": "string", "description": "The city, e.g. San Francisco"},
            "days": {"type": "integer", "description": "How many days ahead"},
        }
        if rng.random() < 0.5:
            properties["unit"] = {"type": "string", "enum": ["celsius", "fahrenheit"]}
        if rng.random() < 0.3:
            properties["filters"] = {
                "type": "object",
                "description": "Optional filters",
                "properties": {"min": {"type": "number"}, "max": {"type": "number"}},
            }
        found.append(
            {
                "type": "function",
                "function": {
                    "name": f"get_{rng.choice(WORDS).lower()}_{index}",
                    "description": sentence(rng, rng.randint(4, 25)),
                    "parameters": {
                        "type": "object",
                        "properties": properties,
                        "required": ["city"],
                    },
                },
            }
        )
    return found


def anthropic_message(rng: random.Random) -> CorpusCall:
    model = rng.choice([m for m in CHAT_MODELS if m.startswith("claude")])
    call = CorpusCall("messages", "messages", model, {"model": model})
    body = call.body
    body["max_tokens"] = rng.choice([256, 1024, 4096])
    if rng.random() < 0.5:
        body["system"] = paragraph(rng, rng.randint(1, 5))
    content: list[dict[str, Any]] = [{"type": "text", "text": paragraph(rng, rng.randint(1, 5))}]
    if rng.random() < 0.4:
        width, height = rng.choice(IMAGE_SIZES)
        data = base64.b64encode(png(width, height, rng)).decode()
        content.append(
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": data}}
        )
    body["messages"] = [{"role": "user", "content": content}]
    if rng.random() < 0.3:
        body["tools"] = [
            {
                "name": tool["function"]["name"],
                "description": tool["function"]["description"],
                "input_schema": tool["function"]["parameters"],
            }
            for tool in tools(rng)
        ]
    return call


def embeddings(rng: random.Random) -> CorpusCall:
    model = rng.choice(EMBEDDING_MODELS)
    count = rng.choice([1, 1, 8, 32, 128])
    texts = [paragraph(rng, rng.randint(1, 4)) for _ in range(count)]
    body = {"model": model, "input": texts[0] if count == 1 else texts}
    return CorpusCall("embeddings", "embeddings", model, body)


KINDS = {
    "short": 30,
    "long": 10,
    "tools": 12,
    "image": 18,
    "audio": 4,
    "choices": 6,
    "messages": 8,
    "embeddings": 12,
}


def generate(count: int, *, seed: int = 17) -> list[CorpusCall]:
    """Return `count` calls drawn with the kinds' weights, the same for the same seed."""
    rng = random.Random(seed)
    calls = []
    for _ in range(count):
        kind = rng.choices(list(KINDS), list(KINDS.values()))[0]
        if kind == "embeddings":
            calls.append(embeddings(rng))
        elif kind == "messages":
            calls.append(anthropic_message(rng))
        else:
            calls.append(chat(rng, kind))
    return calls
