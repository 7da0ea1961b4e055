"""Channel API keys at rest: Fernet, with keys derived from SECRET_KEY and its fallbacks.

A secret is encrypted with the key derived from SECRET_KEY and read with that key
or the one derived from any of SECRET_KEY_FALLBACKS (MultiFernet), so SECRET_KEY
can be rotated: the old key becomes a fallback, `channel_keys_reencrypt` moves
every stored key to the new one, then the fallback is dropped (README, "Rotating
SECRET_KEY"). A secret no configured key opens is unreadable: the relay treats
its channel as failing, never as a 500.
"""

import base64
import functools

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings


class UnreadableSecret(Exception):
    """No configured key opens a stored secret (the message never contains it)."""


@functools.cache
def _fernet(secret_key: str) -> Fernet:
    derived = HKDF(
        algorithm=hashes.SHA256(),
        length=32,
        salt=b"comet.relay.channel",
        info=b"channel api key encryption",
    ).derive(secret_key.encode())
    return Fernet(base64.urlsafe_b64encode(derived))


def _current() -> Fernet:
    return _fernet(settings.SECRET_KEY)


def _all_keys() -> MultiFernet:
    """The current key first (it encrypts), then each fallback (they only decrypt)."""
    secret_keys = [settings.SECRET_KEY, *settings.SECRET_KEY_FALLBACKS]
    return MultiFernet([_fernet(secret_key) for secret_key in secret_keys])


def encrypt_secret(plaintext: str) -> str:
    """Return `plaintext` encrypted for storage with the current SECRET_KEY."""
    return _current().encrypt(plaintext.encode()).decode()


def decrypt_secret(ciphertext: str) -> str | None:
    """Return the plaintext of a stored secret, or None when no configured key opens it."""
    if not ciphertext:
        return ""
    try:
        return _all_keys().decrypt(ciphertext.encode()).decode()
    except InvalidToken:
        return None


def is_encrypted_with_current_key(ciphertext: str) -> bool:
    """Return whether the current SECRET_KEY alone opens a stored secret."""
    try:
        _current().decrypt(ciphertext.encode())
    except InvalidToken:
        return False
    return True


def reencrypt_secret(ciphertext: str) -> str:
    """Return a stored secret encrypted again with the current SECRET_KEY.

    Raise UnreadableSecret when neither SECRET_KEY nor a fallback opens it.
    """
    try:
        return _all_keys().rotate(ciphertext.encode()).decode()
    except InvalidToken:
        raise UnreadableSecret("No configured SECRET_KEY opens this secret.") from None
