"""Find English a Chinese reader would see on a page: visible text and the attributes browsers
show (title, placeholder, aria-label, alt, chart labels).

Not English: code (`<code>`, `<pre>`, `<kbd>`, `<samp>`, `<script>`, `<style>`), addresses,
numbers and money, and the names that read the same in Chinese (ALLOWED: the brand, model and
vendor names, units and protocol names). `english_left(html)` returns the English phrases.
"""

import re
from html.parser import HTMLParser

# Words that are not translated: names, units, protocols. Compared case-sensitively.
ALLOWED = {
    # The brand and the names of things customers type or read in their tools.
    "Comet",
    "English",  # a language's name is shown in that language
    "Stripe",
    "OpenAI",
    "Anthropic",
    "Claude",
    "Gemini",
    "Google",
    "Azure",
    "Python",
    "Node.js",
    "Node",
    "js",
    "SDK",
    "SDKs",
    "curl",
    "Markdown",
    "ceil",  # the price formula's function, as written in code
    "Authenticator",  # app names: Google Authenticator, 1Password, Authy
    "Password",
    "Authy",
    "Atom",
    "RSS",
    # Units and formats.
    "USD",
    "CNY",
    "API",
    "APIs",
    "URL",
    "IP",
    "IPs",
    "IPv4",
    "IPv6",
    "IPv",  # what the word pattern reads of IPv4 and IPv6 (a word stops at a digit)
    "CSV",
    "JSON",
    "HTTP",
    "HTTPS",
    "RPM",
    "TPM",
    "TOTP",
    "ID",
    "UTC",
    "GMT",
    "AM",
    "PM",
    "tokens",
    "token",  # a model's token: the glossary keeps it ("输入 tokens")
    "Token",
    "Tokens",
    "Base",  # "Base URL", the SDKs' own name for the setting
    "Chat",
    "Completions",
    "Embeddings",
    "Messages",
    "Responses",
    "Bearer",
    "Authorization",
    "Content",
    "Type",
    "ok",  # the values typed in the logs' status filter
    "error",
    "refused",
    "Enter",
    "Esc",
    "Tab",
    "Ctrl",
    "Cmd",
    "Control",  # the admin's "hold down Control, or Command on a Mac" (key names)
    "Command",
    "Mac",
    "one-api",  # the relay projects whose ratio files the admin imports
    "new-api",
    "WebAuthn",  # a protocol's name, an authenticator type in the admin
    # The alt text of Django admin's yes / no / unknown icons: Python's values, which Django
    # writes as they are (django.contrib.admin.templatetags.admin_list._boolean_icon).
    "True",
    "False",
    "None",
}

_IGNORED_ELEMENTS = {"code", "pre", "kbd", "samp", "script", "style", "template", "svg"}
_VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source"}
_SHOWN_ATTRIBUTES = {"title", "placeholder", "aria-label", "alt", "data-label", "data-labels"}
_WORD = re.compile(r"[A-Za-z][A-Za-z'\u2019.-]*[A-Za-z]")  # one letter alone is not a word here
_NOT_PROSE = re.compile(
    r"https?://\S+|\"\w+\":\s*\w+|\bx-[\w-]+|[\w.+-]+@[\w-]+\.[\w.]+|sk-[\w-]+|\b[\w-]+\.(?:json|csv|atom|svg|py)\b"
    r"|/[\w/.{}-]+|\b\w+_\w+\b|\$[\d,.]+|\d[\d,.:]*"
    # IANA time zone names (Asia/Shanghai, America/Argentina/Buenos_Aires, UTC): names, like
    # a model's, shown as they are in every language (the profile's list, "(Asia/Shanghai)").
    r"|\b(?:Africa|America|Antarctica|Arctic|Asia|Atlantic|Australia|Europe|Indian|Pacific|Etc)"
    r"/[\w/+-]+"
)


class _Collector(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.ignored = 0
        self.texts: list[str] = []
        self.ignoring: list[bool] = []  # per open element: is its content not shown?

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        hidden = "hidden" in attributes or attributes.get("aria-hidden") == "true"
        for name, value in attrs:
            if name in _SHOWN_ATTRIBUTES and value and not self.ignored:
                self.texts.append(value)
        if tag == "input" and attributes.get("type") in {"submit", "button"}:
            self.texts.append(attributes.get("value") or "")
        if tag in _VOID:
            return
        ignore = tag in _IGNORED_ELEMENTS or (hidden and tag == "span" and not attrs)
        self.stack.append(tag)
        self.ignored += ignore
        self.ignoring.append(ignore)

    def handle_endtag(self, tag):
        if tag in _VOID or tag not in self.stack:
            return
        while self.stack:
            opened = self.stack.pop()
            self.ignored -= self.ignoring.pop()
            if opened == tag:
                break

    def handle_data(self, data):
        if not self.ignored and data.strip():
            self.texts.append(data)


def english_words(text: str, allowed: set[str]) -> list[str]:
    """Return the English words of `text` that are not names, code or numbers."""
    text = _NOT_PROSE.sub(" ", text)
    return [
        word
        for word in _WORD.findall(text)
        if word not in ALLOWED and word not in allowed and not (word.isupper() and len(word) <= 5)
    ]


def english_left(html: str, allowed: set[str] = frozenset()) -> list[str]:
    """Return each piece of visible text of `html` that still has English words in it."""
    collector = _Collector()
    collector.feed(html)
    left = []
    for text in collector.texts:
        if english_words(text, allowed):
            left.append(" ".join(text.split()))
    return left
