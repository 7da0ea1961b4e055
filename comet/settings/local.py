"""The embedded default behind `make run`: SQLite, tasks in-process, email on the terminal."""

from .base import *  # noqa: F403
from .base import BASE_DIR, env

DEBUG = env.bool("DEBUG", default=True)

(BASE_DIR / "var").mkdir(exist_ok=True)
SECRET_KEY = env("SECRET_KEY", default="django-insecure-local-only-never-use-in-production")
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "[::1]"])
COMET_REQUIRE_STAFF_MFA = env.bool("COMET_REQUIRE_STAFF_MFA", default=False)
# A newcomer's first token works against the mock channel without a recharge.
COMET_SIGNUP_CREDIT_USD = env("COMET_SIGNUP_CREDIT_USD", default="5")
