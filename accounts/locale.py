"""What a person reads outside a page (an email) is in their language (README, "Languages")
and their time zone (README, "Time zones")."""

import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

from django.conf import settings
from django.utils import timezone, translation

from accounts.models import User
from accounts.timezones import user_time_zone

LANGUAGE_CODES = frozenset(code for code, _name in settings.LANGUAGES)


def user_language(user: User | None) -> str:
    """Return the language `user` saved, else the site's default."""
    if user is not None and user.language in LANGUAGE_CODES:
        return user.language
    return settings.LANGUAGE_CODE


@contextmanager
def recipient_locale(user: User | None) -> Iterator[None]:
    """Render what is sent to `user` (subject, text, HTML) in their language, with times
    in their time zone (templates show aware datetimes in the active zone)."""
    with translation.override(user_language(user)), timezone.override(user_time_zone(user)):
        yield


def text_for(user_id: int, message: str, **params: object) -> str:
    """Return `message` (a msgid marked with gettext_noop) in the language of user `user_id`,
    with `params` filled in: for text stored for a customer to read later (ledger notes)."""
    language = User.objects.filter(pk=user_id).values_list("language", flat=True).first()
    with translation.override(language if language in LANGUAGE_CODES else settings.LANGUAGE_CODE):
        return translation.gettext(message) % params


# Longest Accept-Language read, like Django's own (LocaleMiddleware reads 500 characters):
# a longer header is cut after its last whole entry in that length.
ACCEPT_LANGUAGE_MAX_LENGTH = 500
# RFC 9110 quality values: 0 to 1, at most three decimals. `float()` would also take
# "nan", "1e0" and non-ASCII digits.
_QUALITY = re.compile(r"(?:0(?:\.[0-9]{0,3})?|1(?:\.0{0,3})?)", re.ASCII)
# A language tag (RFC 5646): letters, digits and hyphens only.
_TAG = re.compile(r"[a-z]{1,8}(?:-[a-z0-9]{1,8})*", re.ASCII)


def program_language(accept_language: str | bytes | None) -> str:
    """Return the language of an error message for a program: "zh-hans" when the request's
    `Accept-Language` prefers some Chinese to English, else "en".

    Every Chinese tag counts as Simplified (zh, zh-CN, zh-Hans, zh-SG, and zh-TW,
    zh-Hant too: there is no Traditional catalog, and the console's pages make the
    same choice through Django's LocaleMiddleware). Of equal qualities the first one
    listed wins. Malformed entries are skipped; nothing in the header can raise.
    Called only on the error path of the relay and the APIs (README, "Languages").
    """
    if not accept_language:
        return "en"
    if isinstance(accept_language, bytes):
        accept_language = accept_language.decode("latin-1")
    if len(accept_language) > ACCEPT_LANGUAGE_MAX_LENGTH:
        accept_language = accept_language[:ACCEPT_LANGUAGE_MAX_LENGTH].rpartition(",")[0]
    best, best_quality = "en", 0.0
    for entry in accept_language.split(","):
        tag, _, parameters = entry.partition(";")
        tag = tag.strip().lower()
        if not _TAG.fullmatch(tag):
            continue
        if tag == "zh" or tag.startswith("zh-"):
            language = "zh-hans"
        elif tag == "en" or tag.startswith("en-"):
            language = "en"
        else:
            continue
        quality = 1.0
        if parameters:
            name, _, value = parameters.partition("=")
            value = value.strip()
            if name.strip().lower() != "q" or not _QUALITY.fullmatch(value):
                continue
            quality = float(value)
        if quality > best_quality:
            best, best_quality = language, quality
    return best


def message_in(language: str, message: str, params: Mapping[str, object] | None = None) -> str:
    """Return `message` (a msgid marked with gettext_noop) in `language`, `params` filled in.

    English is the msgid itself: no translation machinery runs for it.
    """
    if language != "en":
        with translation.override(language):
            message = translation.gettext(message)
    return message % params if params else message
