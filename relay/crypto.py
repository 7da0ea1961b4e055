"""Channel API keys at rest: Fernet with a key derived from SECRET_KEY.

Changing SECRET_KEY makes stored channel keys unreadable; the admin then enters
them again (the relay treats an unreadable key as a channel failure, never a 500).
"""

import base64
import functools

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings


@functools.cache
def _fernet(secret_key: str) -> Fernet:
    derived = HKDF(
        algorithm=hashes.SHA256(),
        length=32,
        salt=b"comet.relay.channel",
        info=b"channel api key encryption",
    ).derive(secret_key.encode())
    return Fernet(base64.urlsafe_b64encode(derived))


def encrypt_secret(plaintext: str) -> str:
    """Return `plaintext` encrypted for storage."""
    return _fernet(settings.SECRET_KEY).encrypt(plaintext.encode()).decode()


def decrypt_secret(ciphertext: str) -> str | None:
    """Return the plaintext of a stored secret, or None when it cannot be read."""
    if not ciphertext:
        return ""
    try:
        return _fernet(settings.SECRET_KEY).decrypt(ciphertext.encode()).decode()
    except InvalidToken:
        return None
