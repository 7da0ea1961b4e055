"""Single-use nonces for the console forms that show a key once (new token, roll key).

A form carries `form_nonce_issue(user_id)`: a random nonce signed with the user's id
and the time it was issued. Posting it back is accepted once: the service that
creates the token (or rolls its key) records the nonce in the same transaction
(`accounts.models.TokenFormNonce`), so posting the same form again — a reload, a
double click, the back button — changes nothing. The key itself is never stored.
"""

import secrets

from django.core import signing

# A form older than this is refused ("reload the page"); consumed nonces older than
# this can no longer come back, so their rows are deleted.
FORM_NONCE_MAX_AGE_SECONDS = 24 * 60 * 60
_SALT = "accounts.form-nonce"
_NONCE_BYTES = 16  # 22 URL-safe characters


def form_nonce_issue(user_id: int) -> str:
    """Return a new signed nonce for a form shown to `user_id`."""
    nonce = secrets.token_urlsafe(_NONCE_BYTES)
    return signing.TimestampSigner(salt=_SALT).sign(f"{user_id}:{nonce}")


def form_nonce_check(value: str, user_id: int) -> str | None:
    """Return the nonce of a form `user_id` was given, or None if it is forged or stale."""
    try:
        unsigned = signing.TimestampSigner(salt=_SALT).unsign(
            value, max_age=FORM_NONCE_MAX_AGE_SECONDS
        )
    except signing.BadSignature:  # SignatureExpired included
        return None
    owner, _, nonce = unsigned.partition(":")
    if owner != str(user_id) or not nonce or len(nonce) > 32:
        return None
    return nonce
