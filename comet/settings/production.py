"""Production: refuses to start without a real secret key, PostgreSQL, Redis and a public URL."""

from django.core.exceptions import ImproperlyConfigured

from core.links import is_site_root_url

from .base import *  # noqa: F403
from .base import DATABASES, REDIS_URL, SECRET_KEY, STORAGES, env

DEBUG = env.bool("DEBUG", default=False)

_INSECURE_KEY_MARKERS = ("django-insecure", "change-me", "changeme", "secret")
if len(SECRET_KEY) < 50 or any(marker in SECRET_KEY.lower() for marker in _INSECURE_KEY_MARKERS):
    raise ImproperlyConfigured(
        "SECRET_KEY must be set to a random value of at least 50 characters in production."
    )
if DATABASES["default"]["ENGINE"] != "django.db.backends.postgresql":
    raise ImproperlyConfigured("DATABASE_URL must point to PostgreSQL in production.")
if not REDIS_URL:
    raise ImproperlyConfigured("REDIS_URL must be set in production (cache, broker, limits).")


# Links in emails start with it (core.links); no default, since a wrong one would
# send every recipient elsewhere.
COMET_PUBLIC_URL = env("COMET_PUBLIC_URL", default="")
if not COMET_PUBLIC_URL:
    raise ImproperlyConfigured(
        "COMET_PUBLIC_URL must be set in production to the site's public base URL, "
        "e.g. https://console.example.com (links in emails start with it)."
    )
if not is_site_root_url(COMET_PUBLIC_URL):
    # (The value is not repeated: it may hold credentials.)
    raise ImproperlyConfigured(
        "COMET_PUBLIC_URL must be the absolute http(s) URL of the site's root, without "
        "credentials, path, query or fragment, e.g. https://console.example.com."
    )

# A form posted from the public address is the site's own, even when the proxy in
# front passes another Host on.
CSRF_TRUSTED_ORIGINS = [COMET_PUBLIC_URL.rstrip("/")]
# The TLS proxy the Procfile expects runs on the same host (README, "Running in
# production"); TRUSTED_PROXIES names others.
TRUSTED_PROXIES = env.list("TRUSTED_PROXIES", default=["127.0.0.1"])

ACCOUNT_DEFAULT_HTTP_PROTOCOL = "https"
# Staff reach /admin/ only with a second factor used in the session: not configurable,
# since the admin moves money.
COMET_REQUIRE_STAFF_MFA = True

# HTTPS only: plain HTTP is redirected, and browsers are told (HSTS, one year, the
# value preload lists require) never to try it again.
SECURE_SSL_REDIRECT = True
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_HSTS_SECONDS = 60 * 60 * 24 * 365
SECURE_HSTS_INCLUDE_SUBDOMAINS = True
SECURE_HSTS_PRELOAD = True
SESSION_COOKIE_SECURE = True
CSRF_COOKIE_SECURE = True
SESSION_COOKIE_NAME = "__Secure-sessionid"
CSRF_COOKIE_NAME = "__Secure-csrftoken"

STORAGES = {
    **STORAGES,
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}
