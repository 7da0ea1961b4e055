"""Logging helpers: no API key or Stripe secret reaches a log line in full."""

import logging
import re

# `sk-` followed by the key body (accounts/tokens.py: base62; urlsafe characters
# too, to be safe); the last four characters stay visible so a support person can
# still tell two keys apart.
SECRET_KEY_PATTERN = re.compile(r"sk-[A-Za-z0-9_\-]{8,}([A-Za-z0-9]{4})")
# Stripe's secret and restricted keys and webhook signing secrets (STRIPE_* settings).
STRIPE_SECRET_PATTERN = re.compile(
    r"((?:sk|rk)_(?:live|test)_|whsec_)[A-Za-z0-9]{8,}([A-Za-z0-9]{4})"
)


def mask_secrets(text: str) -> str:
    """Return `text` with every API key shortened to `sk-…abcd` (Stripe's: `sk_live_…abcd`)."""
    text = SECRET_KEY_PATTERN.sub(r"sk-…\1", text)
    return STRIPE_SECRET_PATTERN.sub(r"\1…\2", text)


class MaskSecretsFormatter(logging.Formatter):
    """Format a record as usual, then mask the secrets in the whole text.

    The text is what a handler writes: the message with its arguments, the
    exception text and traceback, the stack, whatever the format adds (a `Host:`
    header in a DisallowedHost message, a key in an upstream error). Every handler
    in settings.LOGGING uses this formatter.
    """

    def format(self, record: logging.LogRecord) -> str:
        text = mask_secrets(super().format(record))
        # Formatter caches the traceback on the record for other handlers: mask it too.
        if record.exc_text:
            record.exc_text = mask_secrets(record.exc_text)
        return text


class MaskSecretsFilter(logging.Filter):
    """Rewrite a record's message so it carries no full API key.

    For whatever reads records rather than formatted text; handlers rely on
    `MaskSecretsFormatter`, which also covers exception text and tracebacks.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = mask_secrets(message)
        if masked != message:
            record.msg = masked
            record.args = None
        return True
