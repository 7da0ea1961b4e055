"""The test suite: PostgreSQL and Redis, as in production, with fast hashing."""

from .base import *  # noqa: F403
from .base import env, postgresql_connections

SECRET_KEY = env("SECRET_KEY", default="test-only-secret-key-not-for-any-real-deployment")
DEBUG = False
ALLOWED_HOSTS = ["testserver", "localhost", "127.0.0.1"]

DATABASES = {
    "default": env.db("DATABASE_URL", default="postgres://postgres@127.0.0.1:5432/comet"),
}
DATABASES["default"]["ATOMIC_REQUESTS"] = False
# The suite runs on plain connections (pytest-django: the test database, a connection
# per test thread). Tests that serve Comet in a subprocess give it a pool, as
# deployments have, through a settings module of their own (tests/settings_module.py,
# tests/comet/test_connections.py).
DATABASE_POOL_MAX_SIZE = 0
postgresql_connections(DATABASES["default"], pool_max_size=DATABASE_POOL_MAX_SIZE)

REDIS_URL = env("REDIS_URL", default="redis://127.0.0.1:6379/15")
CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": "comet-test",
    }
}
CELERY_BROKER_URL = REDIS_URL
# Unit tests run tasks in-process; tests that need a real worker start one.
CELERY_TASK_ALWAYS_EAGER = True

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
COMET_REQUIRE_STAFF_MFA = False
COMET_SUPPORT_EMAIL = "support@example.com"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
