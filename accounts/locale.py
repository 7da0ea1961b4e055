"""What a person reads outside a page (an email) is in their language (README, "Languages")."""

from collections.abc import Iterator
from contextlib import contextmanager

from django.conf import settings
from django.utils import translation

from accounts.models import User

LANGUAGE_CODES = frozenset(code for code, _name in settings.LANGUAGES)


def user_language(user: User | None) -> str:
    """Return the language `user` saved, else the site's default."""
    if user is not None and user.language in LANGUAGE_CODES:
        return user.language
    return settings.LANGUAGE_CODE


@contextmanager
def recipient_locale(user: User | None) -> Iterator[None]:
    """Render what is sent to `user` (subject, text, HTML) in their language."""
    with translation.override(user_language(user)):
        yield


def text_for(user_id: int, message: str, **params: object) -> str:
    """Return `message` (a msgid marked with gettext_noop) in the language of user `user_id`,
    with `params` filled in: for text stored for a customer to read later (ledger notes)."""
    language = User.objects.filter(pk=user_id).values_list("language", flat=True).first()
    with translation.override(language if language in LANGUAGE_CODES else settings.LANGUAGE_CODE):
        return translation.gettext(message) % params
