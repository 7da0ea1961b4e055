"""Languages (README, "Languages"): the Chinese catalog is complete, follows the glossary and
is compiled; the language is the user's saved one, else the switcher's cookie, else the
browser's, else English."""

import ast
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
from django.conf import settings
from django.urls import reverse

from accounts.models import User

ROOT = Path(__file__).resolve().parent.parent.parent
LOCALE = ROOT / "locale"
PO = LOCALE / "zh_Hans" / "LC_MESSAGES" / "django.po"
MO = PO.with_suffix(".mo")
GLOSSARY = LOCALE / "GLOSSARY.md"

# Msgids whose translation is the msgid itself: names and code read the same in Chinese.
SAME_IN_CHINESE = {
    "Comet",  # the brand
    "Python",
    "Node.js",
    "IP",
    "Base URL",  # the OpenAI SDKs' own name for the setting
    "Chat Completions",  # endpoint names, as in OpenAI's and Anthropic's documentation
    "Completions",
    "Embeddings",
}

# Msgids where "token" is what a model counts (kept as "tokens"), not an API token (令牌).
MODEL_TOKENS = {
    "No tokens were used: nothing to bill.",
    "Count tokens (Anthropic format)",
    "The input tokens of a Messages request, counted by Comet (may differ slightly from the "
    "vendor's count). Free: nothing is billed.",
    "The upstream reported no token counts, so they were estimated.",
    "%(price)s / 1M input tokens",
    "Input / 1M tokens",
    "Output / 1M tokens",
    "Cached input / 1M tokens",
    "Every call's tokens, cost and IP",
    "Tokens per minute",
    "Tokens per minute (TPM)",
    "Requests and tokens per minute",
    "First token",
    "%(tokens)s tokens of context",
    "Pay per token at these prices for your group, <strong>%(group)s</strong>.",
    "Pay per token at these prices (the %(group)s group; signed-in customers see their group's "
    "prices).",
    "A model ratio of 1 is $2 per 1M input tokens; output tokens cost the completion ratio times "
    "that.",
    # The admin's field names, help texts and totals (what a request counts).
    "prompt tokens",
    "completion tokens",
    "cached tokens",
    "first token ms",
    "Tokens; empty where it does not apply.",
    "Share of the input price paid for cached input tokens (e.g. 0.5).",
    "Per token: model ratio 1 = $2 per 1M input tokens; output tokens cost completion ratio "
    "times that. Per call, per image, per 1M characters and per minute: micro-USD (1 USD = "
    "1,000,000). Set exactly one unit.",
    "%(target)s: a model is priced in exactly one unit: per token (model ratio), per call, per "
    "image, per 1M characters or per minute.",
    "The model '%(model)s' is priced per token, which %(path)s cannot bill: an operator must "
    "price it per image, per 1M characters, per minute or per call.",
    "%(start)s – %(end)s (%(zone)s) · %(requests)s requests · %(prompt)s prompt + "  # noqa: RUF001
    "%(completion)s completion tokens · %(cost)s.",
    "%(start)s – %(end)s (%(zone)s) · ≥ %(requests)s requests · %(prompt)s prompt + "  # noqa: RUF001
    "%(completion)s completion tokens · %(cost)s (the newest %(requests)s matching requests "
    "only).",
    "Prices are USD per 1M tokens (or per call) for the default group.",
    # A line's TPM limit and the relay's refusals of it.
    "tokens per minute",
    "Tokens (prompt + completion) in any 60 seconds; empty: the line's.",
    "What the line's customers may call, and the limits of each of their accounts (an "
    "account's own limits, set on the user, replace these). An enterprise line: 30000000 "
    "tokens per minute.",
    "Tokens (prompt + completion) one account may use in any 60 seconds; empty for no limit. "
    "The enterprise line: 30000000.",
    "Completion tokens a request's hold assumes when it sets no max_tokens; empty for the "
    "relay's default (4,096). The answer is charged in full either way.",
    "This request may use %(requested)s tokens, more than this account may use in a minute "
    "(%(limit)s): lower max_tokens or shorten the prompt.",
    "Too many tokens per minute on this account (limit %(limit)s, %(left)s left; this "
    "request may use %(requested)s). Retry after the time in Retry-After, or contact support "
    "for a higher limit.",
}
# Other msgids that contain a glossary term in a sense the glossary row does not mean.
GLOSSARY_EXCEPTIONS = {
    ("key", "idempotency key"): "the ledger's once-only key (幂等键), not a secret",
}
GLOSSARY_EXCEPTIONS |= {
    ("token", msgid): "a model's tokens, kept as 'token'"
    for msgid in MODEL_TOKENS
    | {
        "Prompt tokens",
        "Completion tokens",
        "Each call holds what it may cost at most, then is charged what it actually cost; "
        'every call\'s tokens, cost and IP are in <a href="%(logs_url)s">Logs</a>.',
    }
}
GLOSSARY_EXCEPTIONS |= {
    ("token", msgid): "a model's tokens"
    for msgid in [
        "An approximation: this row is from before the price of cached prompt tokens was kept "
        "with each request. Its %(cached)s cached prompt tokens are counted here as input; they "
        "were charged at the model's lower cached-input price, which this row does not record."
    ]
}


@dataclass(frozen=True)
class Entry:
    msgctxt: str | None
    msgid: str
    msgid_plural: str | None
    msgstrs: tuple[str, ...]
    fuzzy: bool


def _unquote(line: str) -> str:
    return ast.literal_eval(line)


def read_po(path: Path) -> list[Entry]:
    """Return the entries of a .po file (without the header), in order.

    A small reader of what makemessages writes: comments, msgctxt, msgid, msgid_plural,
    msgstr or msgstr[n], each a quoted string continued on quoted lines.
    """
    entries: list[Entry] = []
    for block in path.read_text(encoding="utf-8").split("\n\n"):
        fields: dict[str, str] = {}
        flags: set[str] = set()
        key = None
        for line in block.splitlines():
            if line.startswith("#,"):
                flags.update(flag.strip() for flag in line[2:].split(","))
            elif line.startswith("#") or not line.strip():
                continue
            elif line.startswith('"'):
                assert key is not None, line
                fields[key] += _unquote(line)
            else:
                key, _, value = line.partition(" ")
                fields[key] = _unquote(value)
        if "msgid" not in fields or fields["msgid"] == "":
            continue  # the header, or an obsolete (#~) entry
        msgstrs = tuple(value for name, value in fields.items() if name.startswith("msgstr"))
        entries.append(
            Entry(
                msgctxt=fields.get("msgctxt"),
                msgid=fields["msgid"],
                msgid_plural=fields.get("msgid_plural"),
                msgstrs=msgstrs,
                fuzzy="fuzzy" in flags,
            )
        )
    return entries


def glossary() -> list[tuple[str, str]]:
    """Return (English term, Chinese term) of every row of locale/GLOSSARY.md's table."""
    rows = []
    for line in GLOSSARY.read_text(encoding="utf-8").splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) == 3 and cells[0] not in {"English", "---"}:
            rows.append((cells[0], cells[1]))
    return rows


def term_pattern(term: str) -> re.Pattern[str]:
    """Match `term` as words, any case, plural too, "-" and " " alike."""
    words = [re.escape(word) for word in re.split(r"[- ]", term)]
    return re.compile(r"\b" + "[- ]".join(words) + r"(s|es)?\b", re.IGNORECASE)


def prose(msgid: str) -> str:
    """Return a msgid without placeholders, code and tags: the words a translator translates."""
    text = re.sub(r"%\(\w+\)[sd]", " ", msgid)
    text = re.sub(r"<code>.*?</code>", " ", text)
    return re.sub(r"<[^>]+>", " ", text)


def test_the_po_reader_sees_fuzzy_untranslated_and_plural_entries(tmp_path):
    po = tmp_path / "x.po"
    po.write_text(
        'msgid ""\nmsgstr "Language: zh_Hans\\n"\n\n'
        '#, fuzzy, python-format\nmsgid "a %(n)s"\nmsgstr "甲 %(n)s"\n\n'
        'msgid "long "\n"line"\nmsgstr ""\n\n'
        'msgctxt "c"\nmsgid "one"\nmsgid_plural "many"\nmsgstr[0] "多"\n',
        encoding="utf-8",
    )
    assert read_po(po) == [
        Entry(None, "a %(n)s", None, ("甲 %(n)s",), fuzzy=True),
        Entry(None, "long line", None, ("",), fuzzy=False),
        Entry("c", "one", "many", ("多",), fuzzy=False),
    ]


def test_every_msgid_has_a_chinese_translation():
    entries = read_po(PO)
    assert len(entries) > 400
    problems = []
    for entry in entries:
        if entry.fuzzy:
            problems.append(f"fuzzy: {entry.msgid!r}")
        for msgstr in entry.msgstrs:
            if not msgstr.strip():
                problems.append(f"untranslated: {entry.msgid!r}")
            elif msgstr == entry.msgid and entry.msgid not in SAME_IN_CHINESE:
                problems.append(f"same as the English: {entry.msgid!r}")
    assert problems == []


def test_translations_keep_placeholders_and_tags():
    problems = []
    for entry in read_po(PO):
        source = entry.msgid_plural or entry.msgid
        for msgstr in entry.msgstrs:
            for pattern in (r"%\(\w+\)[sd]|%%", r"</?\w+[^>]*>", r"\{\{.*?\}\}"):
                if sorted(re.findall(pattern, source)) != sorted(re.findall(pattern, msgstr)):
                    problems.append(f"{entry.msgid!r} -> {msgstr!r}")
    assert problems == []


def test_chinese_sentences_use_full_width_punctuation():
    """No ASCII comma, colon, semicolon, ? or ! between Chinese characters, nor at the end of
    a translation that ends in Chinese."""
    han = r"[\u4e00-\u9fff]"
    problems = []
    for entry in read_po(PO):
        for msgstr in entry.msgstrs:
            text = prose(msgstr)
            if re.search(han + r"\s*[,;?!]\s*", text) or re.search(han + r":\s*$", text):
                problems.append(msgstr)
    assert problems == []


def test_the_glossary_is_followed():
    rows = glossary()
    assert ("model ratio", "模型倍率") in rows
    assert ("token", "令牌") in rows
    problems = []
    for entry in read_po(PO):
        english = prose(" ".join(filter(None, [entry.msgid, entry.msgid_plural])))
        for term, chinese in rows:
            if (term, entry.msgid) in GLOSSARY_EXCEPTIONS or not term_pattern(term).search(english):
                continue
            for msgstr in entry.msgstrs:
                if chinese not in msgstr:
                    problems.append(f"{term} -> {chinese}: {entry.msgid!r} -> {msgstr!r}")
    assert problems == []
    # A model's tokens stay "tokens" in Chinese.
    for entry in read_po(PO):
        if entry.msgid in MODEL_TOKENS:
            assert "token" in entry.msgstrs[0], entry.msgid


def test_the_glossary_check_can_fail():
    assert term_pattern("top up").search("Your first top-up")
    assert term_pattern("channel").search("Channels")
    assert not term_pattern("key").search(prose("<code>sk-your-key</code> %(key)s"))
    assert not term_pattern("quota").search("insufficient_quota")


def test_the_committed_mo_is_compiled_from_the_po(tmp_path):
    msgfmt = shutil.which("msgfmt")
    assert msgfmt, "gettext's msgfmt is needed (Debian: gettext)"
    # Django's compilemessages runs `msgfmt --check-format -o <mo> <po>`.
    compiled = tmp_path / "django.mo"
    subprocess.run([msgfmt, "--check-format", "-o", str(compiled), str(PO)], check=True)
    assert compiled.read_bytes() == MO.read_bytes(), "run `python manage.py compilemessages`"


@pytest.fixture
def english_and_chinese():
    assert settings.LANGUAGE_CODE == "en"
    assert dict(settings.LANGUAGES) == {"en": "English", "zh-hans": "简体中文"}


def page_language(response) -> str:
    """Return the <html lang> of a page, after checking the page is in that language."""
    html = response.content.decode()
    lang = re.search(r'<html lang="([^"]+)">', html).group(1)
    chinese = "跳到正文" in html
    english = "Skip to content" in html
    assert chinese != english, "the page is in one language"
    assert chinese == (lang == "zh-hans"), lang
    return lang


@pytest.mark.django_db
def test_the_default_is_english(client, english_and_chinese):
    assert page_language(client.get("/pricing")) == "en"
    assert page_language(client.get("/pricing", HTTP_ACCEPT_LANGUAGE="fr, de")) == "en"


@pytest.mark.django_db
def test_accept_language_chooses_chinese_when_signed_out(client):
    response = client.get("/pricing", HTTP_ACCEPT_LANGUAGE="zh-CN,zh;q=0.9,en;q=0.8")
    assert page_language(response) == "zh-hans"
    assert ">价格</a>" in response.content.decode()  # the header's "Pricing"
    assert page_language(client.get("/pricing", HTTP_ACCEPT_LANGUAGE="zh-Hans")) == "zh-hans"


@pytest.mark.django_db
def test_the_switcher_sets_a_cookie_that_beats_accept_language(client):
    response = client.post("/i18n/setlang/", {"language": "en", "next": "/pricing?q=gpt"})
    assert response.status_code == 302
    assert response["Location"] == "/pricing?q=gpt"
    assert response.cookies[settings.LANGUAGE_COOKIE_NAME].value == "en"
    assert page_language(client.get("/pricing", HTTP_ACCEPT_LANGUAGE="zh-Hans")) == "en"
    client.post("/i18n/setlang/", {"language": "zh-hans", "next": "/pricing"})
    assert page_language(client.get("/pricing", HTTP_ACCEPT_LANGUAGE="en")) == "zh-hans"


@pytest.mark.django_db
def test_the_header_switcher_offers_the_other_language_and_returns_here(client):
    html = client.get("/pricing?q=gpt").content.decode()
    form = re.search(r'<form method="post" action="/i18n/setlang/".*?</form>', html, re.S)
    assert form, "the header has the switcher"
    assert 'name="next" value="/pricing?q=gpt"' in form.group(0)
    assert 'value="zh-hans"' in form.group(0)
    assert 'value="en"' not in form.group(0)
    assert "Language:" in form.group(0)  # the button's name says what it does


@pytest.mark.django_db
def test_a_saved_preference_beats_the_cookie(user_client, user):
    user_client.cookies[settings.LANGUAGE_COOKIE_NAME] = "en"
    assert page_language(user_client.get("/pricing")) == "en"
    user.language = "zh-hans"
    user.save(update_fields=["language"])
    assert page_language(user_client.get("/pricing", HTTP_ACCEPT_LANGUAGE="en")) == "zh-hans"
    assert page_language(user_client.get("/profile/")) == "zh-hans"


@pytest.mark.django_db
def test_the_profile_form_saves_the_language_and_the_cookie(user_client, user):
    response = user_client.post("/profile/language/", {"language": "zh-hans"})
    assert response.status_code == 302
    assert response.cookies[settings.LANGUAGE_COOKIE_NAME].value == "zh-hans"
    user.refresh_from_db()
    assert user.language == "zh-hans"
    page = user_client.get("/profile/")
    assert page_language(page) == "zh-hans"
    assert "语言已保存。" in page.content.decode()
    # Empty: follow the browser again, and forget the cookie.
    response = user_client.post("/profile/language/", {"language": ""})
    assert response.cookies[settings.LANGUAGE_COOKIE_NAME].value == ""
    user.refresh_from_db()
    assert user.language == ""
    assert page_language(user_client.get("/profile/", HTTP_ACCEPT_LANGUAGE="en")) == "en"
    assert user_client.post("/profile/language/", {"language": "xx"}).status_code == 400
    assert User.objects.get(pk=user.pk).language == ""


@pytest.mark.django_db
def test_switching_while_signed_in_saves_the_preference(user_client, user):
    user.language = "zh-hans"
    user.save(update_fields=["language"])
    user_client.post("/i18n/setlang/", {"language": "en", "next": "/profile/"})
    user.refresh_from_db()
    assert user.language == "en"
    assert page_language(user_client.get("/profile/", HTTP_ACCEPT_LANGUAGE="zh-Hans")) == "en"


HOSTILE_LANGUAGES = ["", "\x00", "zh-hans\x00", "\uff17", "x" * 5000, "1e309", "en\u202e"]
HOSTILE_NEXT = [
    "/\x00",
    "//evil.example",
    "https://evil.example/",
    "\uff0f\uff0f",
    "/" + "a" * 5000,
]


@pytest.mark.django_db
@pytest.mark.parametrize("language", HOSTILE_LANGUAGES)
@pytest.mark.parametrize("next_url", HOSTILE_NEXT)
def test_hostile_switches_are_refused_or_ignored_and_change_nothing(
    user_client, user, language, next_url
):
    signed_out = user_client.__class__()
    for client in (signed_out, user_client):
        response = client.post(reverse("set_language"), {"language": language, "next": next_url})
        assert response.status_code < 500
        location = response.headers.get("Location", "")
        assert not location.startswith(("//", "http"))
    response = user_client.post(reverse("accounts:language"), {"language": language})
    assert response.status_code in (302, 400)
    user.refresh_from_db()
    assert user.language in ("", "en", "zh-hans")
