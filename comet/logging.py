"""Logging helpers: no API key reaches a log line in full."""

import logging
import re

# `sk-` followed by the key body; the last four characters stay visible so a
# support person can still tell two keys apart.
SECRET_KEY_PATTERN = re.compile(r"sk-[A-Za-z0-9_\-]{8,}([A-Za-z0-9]{4})")


def mask_secrets(text: str) -> str:
    """Return `text` with every API key shortened to `sk-…abcd`."""
    return SECRET_KEY_PATTERN.sub(r"sk-…\1", text)


class MaskSecretsFilter(logging.Filter):
    """Rewrite a record's message so it carries no full API key."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = mask_secrets(message)
        if masked != message:
            record.msg = masked
            record.args = None
        return True
