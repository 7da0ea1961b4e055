"""The embedded default behind `make run`: SQLite, tasks in-process, email on the terminal."""

from .base import *  # noqa: F403
from .base import BASE_DIR, DATABASES, env

DEBUG = env.bool("DEBUG", default=True)

(BASE_DIR / "var").mkdir(exist_ok=True)
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # The server and the beat process both write: wait for the lock, take it up front.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {"timeout": 20, "transaction_mode": "IMMEDIATE"}
    )
SECRET_KEY = env("SECRET_KEY", default="django-insecure-local-only-never-use-in-production")
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "[::1]"])
# A newcomer's first token works against the mock channel without a recharge.
COMET_SIGNUP_CREDIT_USD = env("COMET_SIGNUP_CREDIT_USD", default="5")
# `make run` serves on PORT: links in emails lead back to the server that sent them.
port = env.int("PORT", default=8000)
COMET_PUBLIC_URL = env("COMET_PUBLIC_URL", default=f"http://127.0.0.1:{port}")
COMET_SUPPORT_EMAIL = env("COMET_SUPPORT_EMAIL", default="support@example.com")
