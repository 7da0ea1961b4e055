"""Database sessions that ignore a session cookie Django could not have issued."""

from django.contrib.sessions.backends.db import SessionStore as DatabaseSessionStore


class SessionStore(DatabaseSessionStore):
    """Django's database sessions, with keys limited to the letters and digits it issues.

    The stock check takes any key of 8 characters or more, and a cookie value such
    as `"\\000abcdefgh"` unquotes to one starting with NUL, which PostgreSQL refuses
    in the lookup: every page answered 500. A key Django never issues is no session.
    """

    def _validate_session_key(self, key: str | None) -> bool:
        # Django's own rule (8 characters or more), plus only ASCII letters and digits.
        return key is not None and len(key) >= 8 and key.isascii() and key.isalnum()
