"""The quickstart: copyable curl, Python and Node snippets that call the relay.

Shown in the key dialog (filled with the new key, the only time it exists) and on
the home page and the Relay API page (with a placeholder for the key). The base URL
is the site's real address (`core.links.relay_base_url`).
"""

import json
from dataclasses import dataclass

from django.http import HttpRequest
from django.utils.translation import gettext_lazy as _

from core.links import relay_base_url
from models_catalog.selectors import enabled_model_names

# What the snippets put where the key goes when the key is not shown.
KEY_PLACEHOLDER = "sk-your-key"
# The model the snippets call, when the catalog has it; else the catalog's first.
PREFERRED_MODEL = "gpt-4o-mini"


@dataclass(frozen=True)
class Snippet:
    id: str
    label: str
    language: str
    code: str


def quickstart_model() -> str:
    """Return the model the snippets call: one the catalog serves, if it has any."""
    names = enabled_model_names()
    if PREFERRED_MODEL in names or not names:
        return PREFERRED_MODEL
    return names[0]


def _json(value: object) -> str:
    return json.dumps(value, ensure_ascii=False)


def quickstart_snippets(*, base_url: str, key: str, model: str) -> list[Snippet]:
    """Return the curl, Python (`openai`) and Node (`openai` npm) snippets."""
    body = _json({"model": model, "messages": [{"role": "user", "content": "Hello"}]})
    curl = (
        f"curl {base_url}/chat/completions \\\n"
        f'  -H "Authorization: Bearer {key}" \\\n'
        '  -H "Content-Type: application/json" \\\n'
        f"  -d '{body}'"
    )
    python = (
        "from openai import OpenAI\n"
        "\n"
        f"client = OpenAI(base_url={_json(base_url)}, api_key={_json(key)})\n"
        "reply = client.chat.completions.create(\n"
        f"    model={_json(model)},\n"
        '    messages=[{"role": "user", "content": "Hello"}],\n'
        ")\n"
        "print(reply.choices[0].message.content)"
    )
    node = (
        'import OpenAI from "openai";\n'
        "\n"
        f"const client = new OpenAI({{ baseURL: {_json(base_url)}, apiKey: {_json(key)} }});\n"
        "const reply = await client.chat.completions.create({\n"
        f"  model: {_json(model)},\n"
        '  messages: [{ role: "user", content: "Hello" }],\n'
        "});\n"
        "console.log(reply.choices[0].message.content);"
    )
    return [
        Snippet("curl", "curl", "shell", curl),
        Snippet("python", str(_("Python")), "python", python),
        Snippet("node", str(_("Node.js")), "javascript", node),
    ]


def quickstart_context(request: HttpRequest, *, key: str | None = None) -> dict[str, object]:
    """Return what `console/_quickstart.html` shows: base URL, model, snippets."""
    base_url = relay_base_url(request)
    model = quickstart_model()
    return {
        "base_url": base_url,
        "model": model,
        "has_key": key is not None,
        "snippets": quickstart_snippets(base_url=base_url, key=key or KEY_PLACEHOLDER, model=model),
    }


@dataclass(frozen=True)
class RelayEndpoint:
    method: str
    path: str
    title: str
    description: str
    example: str


def relay_endpoints(*, base_url: str, key: str, model: str) -> list[RelayEndpoint]:
    """Return the `/v1/*` routes the relay serves (relay.app), each with a curl example."""
    auth = f'  -H "Authorization: Bearer {key}"'

    def post(path: str, body: dict[str, object], *headers: str) -> str:
        lines = [
            f"curl {base_url}{path}",
            auth,
            *headers,
            '  -H "Content-Type: application/json"',
            f"  -d '{_json(body)}'",
        ]
        return " \\\n".join(lines)

    hello = [{"role": "user", "content": "Hello"}]
    return [
        RelayEndpoint(
            "POST",
            "/chat/completions",
            str(_("Chat completions")),
            str(
                _(
                    "OpenAI's Chat Completions format, for every model of the catalog. "
                    'With "stream": true the answer arrives as server-sent events.'
                )
            ),
            post("/chat/completions", {"model": model, "messages": hello}),
        ),
        RelayEndpoint(
            "POST",
            "/completions",
            str(_("Completions")),
            str(_("OpenAI's legacy text completions: a prompt in, text out. Streams too.")),
            post("/completions", {"model": model, "prompt": "Say hello", "max_tokens": 20}),
        ),
        RelayEndpoint(
            "POST",
            "/embeddings",
            str(_("Embeddings")),
            str(_("Vectors for one text or a list of texts, from an embedding model.")),
            post("/embeddings", {"model": "text-embedding-3-small", "input": "Hello"}),
        ),
        RelayEndpoint(
            "POST",
            "/messages",
            str(_("Messages (Anthropic format)")),
            str(
                _(
                    "Anthropic's Messages format, for every model: the key may also go in "
                    "an x-api-key header, as Anthropic's SDKs send it. Streams too."
                )
            ),
            post(
                "/messages",
                {"model": model, "max_tokens": 256, "messages": hello},
                '  -H "anthropic-version: 2023-06-01"',
            ),
        ),
        RelayEndpoint(
            "POST",
            "/messages/count_tokens",
            str(_("Count tokens (Anthropic format)")),
            str(
                _(
                    "The input tokens of a Messages request, counted by Comet (may differ "
                    "slightly from the vendor's count). Free: nothing is billed."
                )
            ),
            post(
                "/messages/count_tokens",
                {"model": model, "messages": hello},
                '  -H "anthropic-version: 2023-06-01"',
            ),
        ),
        RelayEndpoint(
            "POST",
            "/responses",
            str(_("Responses")),
            str(
                _(
                    "OpenAI's Responses format, for models served by OpenAI-compatible "
                    "channels. Streams too; previous_response_id continues a conversation "
                    "this account started."
                )
            ),
            post("/responses", {"model": model, "input": "Hello"}),
        ),
        RelayEndpoint(
            "POST",
            "/images/generations",
            str(_("Image generation")),
            str(_("Images from a prompt, billed per image by size and quality.")),
            post("/images/generations", {"model": "dall-e-3", "prompt": "A red fox in snow"}),
        ),
        RelayEndpoint(
            "POST",
            "/images/edits",
            str(_("Image edits")),
            str(_("A changed image from an uploaded one and a prompt (multipart form).")),
            " \\\n".join(
                [
                    f"curl {base_url}/images/edits",
                    auth,
                    '  -F model="gpt-image-1"',
                    '  -F image="@photo.png"',
                    '  -F prompt="Add a hat"',
                ]
            ),
        ),
        RelayEndpoint(
            "POST",
            "/audio/speech",
            str(_("Speech")),
            str(_("Spoken audio from text, billed per 1M characters; the file streams back.")),
            post("/audio/speech", {"model": "tts-1", "voice": "alloy", "input": "Hello"})
            + " \\\n  --output hello.mp3",
        ),
        RelayEndpoint(
            "POST",
            "/audio/transcriptions",
            str(_("Transcription")),
            str(
                _(
                    "Text from a recording up to 25 MB (multipart form), billed per minute "
                    "of audio. /v1/audio/translations translates it into English the same way."
                )
            ),
            " \\\n".join(
                [
                    f"curl {base_url}/audio/transcriptions",
                    auth,
                    '  -F model="whisper-1"',
                    '  -F file="@meeting.m4a"',
                ]
            ),
        ),
        RelayEndpoint(
            "GET",
            "/models",
            str(_("Models")),
            str(
                _("The models this key may call (all of the catalog unless the token limits them).")
            ),
            f"curl {base_url}/models \\\n{auth}",
        ),
    ]
