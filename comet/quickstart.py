"""The quickstart: copyable curl, Python and Node snippets that call the relay.

Shown in the key dialog (filled with the new key, the only time it exists) and on
the home page and the Relay API page (with a placeholder for the key). The base URL
is the site's real address (`comet.links.relay_base_url`).
"""

import json
from dataclasses import dataclass

from django.http import HttpRequest
from django.utils.translation import gettext_lazy as _

from comet.links import relay_base_url
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
