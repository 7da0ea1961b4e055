"""Settings shared by every environment; each value comes from the environment.

The modules beside this one (`local`, `production`, `test`) start from here and
change only what differs for them.
"""

from pathlib import Path
from typing import Any

import environ
from celery.schedules import crontab

BASE_DIR = Path(__file__).resolve().parent.parent.parent

env = environ.Env()

SECRET_KEY = env("SECRET_KEY", default="")
# Earlier signing keys, still accepted while SECRET_KEY is rotated: sessions,
# password-reset links and channel API keys made with them keep working until
# they are dropped (README, "Rotating SECRET_KEY"). Comma-separated.
SECRET_KEY_FALLBACKS = env.list("SECRET_KEY_FALLBACKS", default=[])
DEBUG = env.bool("DEBUG", default=False)
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=[])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])
# Proxies whose X-Forwarded-For (and X-Forwarded-Proto) is believed, as IPs or CIDRs;
# `*` makes every peer one. From anyone else the header is ignored and the socket's
# peer is the client. core/clientaddress.py decides the address once, for the site
# and the relay; uvicorn runs with --no-proxy-headers. Defaults to FORWARDED_ALLOW_IPS,
# the variable uvicorn reads for the same list.
TRUSTED_PROXIES = env.list("TRUSTED_PROXIES", default=env.list("FORWARDED_ALLOW_IPS", default=[]))

# --- Applications -----------------------------------------------------------

INSTALLED_APPS = [
    "comet.admin_site.CometAdminConfig",  # django.contrib.admin with one Accounts section
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_htmx",
    "csp",
    "allauth",
    "allauth.account",
    "allauth.mfa",
    "core",
    "comet",
    "accounts",
    "billing",
    "tokens",
    "models_catalog",
    "announcements",
    "logs",
    "relay",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "csp.middleware.CSPMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "comet.middleware.NulInUrlMiddleware",
    "allauth.account.middleware.AccountMiddleware",
    "accounts.middleware.StaffMFAMiddleware",
    "comet.middleware.DatabaseBusyMiddleware",
]

ROOT_URLCONF = "comet.urls"
WSGI_APPLICATION = "comet.wsgi.application"
ASGI_APPLICATION = "comet.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "comet.context_processors.site",
            ],
        },
    },
]

# --- Data stores ------------------------------------------------------------

# Without DATABASE_URL the embedded default is a SQLite file under var/.
DATABASES = {
    "default": env.db("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'var' / 'comet.sqlite3'}"),
}
DATABASES["default"]["ATOMIC_REQUESTS"] = False

# PostgreSQL connections (README, "Sizing max_connections"). Under ASGI a connection
# belongs to the thread that opened it, and Django serves each request on a thread of
# its own, so persistent connections pile up. Instead each process draws from ONE
# pool of at most DATABASE_POOL_MAX_SIZE connections, shared by console requests,
# the relay's database threads and the credit meter's writer; each gives its
# connection back when done (core.db). What waits DATABASE_POOL_TIMEOUT_SECONDS for
# one is answered 503. Idle connections above DATABASE_POOL_MIN_SIZE close after
# DATABASE_POOL_MAX_IDLE_SECONDS. 0 = no pool: a connection per request or task,
# closed after it (Celery workers, where each child runs one task at a time).
DATABASE_POOL_MIN_SIZE = env.int("DATABASE_POOL_MIN_SIZE", default=2)
DATABASE_POOL_MAX_SIZE = env.int("DATABASE_POOL_MAX_SIZE", default=10)
DATABASE_POOL_TIMEOUT_SECONDS = env.float("DATABASE_POOL_TIMEOUT_SECONDS", default=5)
DATABASE_POOL_MAX_IDLE_SECONDS = env.float("DATABASE_POOL_MAX_IDLE_SECONDS", default=60)


def postgresql_connections(database: dict[str, Any], *, pool_max_size: int) -> None:
    """Give a PostgreSQL `database` short-lived connections, from a pool when one is sized."""
    if database["ENGINE"] != "django.db.backends.postgresql":
        return
    # Django refuses persistent connections with a pool; without one they pile up.
    database["CONN_MAX_AGE"] = 0
    if pool_max_size > 0:
        # The pool checks each connection before lending it (one empty query): one
        # that died idle (a database restart) is replaced instead of failing a request.
        database["CONN_HEALTH_CHECKS"] = True
        database.setdefault("OPTIONS", {})["pool"] = {
            "min_size": min(DATABASE_POOL_MIN_SIZE, pool_max_size),
            "max_size": pool_max_size,
            "timeout": DATABASE_POOL_TIMEOUT_SECONDS,
            "max_idle": DATABASE_POOL_MAX_IDLE_SECONDS,
        }


postgresql_connections(DATABASES["default"], pool_max_size=DATABASE_POOL_MAX_SIZE)

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = env("REDIS_URL", default="")

if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": env("CACHE_KEY_PREFIX", default="comet"),
        }
    }
else:
    # One process (the development server) has one memory: limits hold there.
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
            "LOCATION": "comet",
        }
    }

# --- Authentication ---------------------------------------------------------

AUTH_USER_MODEL = "accounts.User"

AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",
    "allauth.account.auth_backends.AuthenticationBackend",
]

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {
        "NAME": "django.contrib.auth.password_validation.MinimumLengthValidator",
        "OPTIONS": {"min_length": 10},
    },
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LOGIN_URL = "account_login"
LOGIN_REDIRECT_URL = "console:home"
LOGOUT_REDIRECT_URL = "account_login"

ACCOUNT_ADAPTER = "accounts.adapter.AccountAdapter"
ACCOUNT_USER_MODEL_USERNAME_FIELD = None
ACCOUNT_LOGIN_METHODS = {"email"}
ACCOUNT_SIGNUP_FIELDS = ["email*", "password1*", "password2*"]
ACCOUNT_UNIQUE_EMAIL = True
ACCOUNT_EMAIL_VERIFICATION = "mandatory"
ACCOUNT_CONFIRM_EMAIL_ON_GET = False
ACCOUNT_LOGIN_ON_EMAIL_CONFIRMATION = True
ACCOUNT_LOGOUT_ON_PASSWORD_CHANGE = False
ACCOUNT_EMAIL_SUBJECT_PREFIX = "[Comet] "
ACCOUNT_DEFAULT_HTTP_PROTOCOL = env("ACCOUNT_DEFAULT_HTTP_PROTOCOL", default="http")
# A taken email at sign-up is answered like a free one (and its owner is told by
# email), so the form cannot be used to find out who has an account.
ACCOUNT_PREVENT_ENUMERATION = True
# allauth counts these in the cache: Redis wherever REDIS_URL is set.
ACCOUNT_RATE_LIMITS = {
    "login": "30/m/ip",
    "login_failed": "10/m/ip,5/5m/key",
    "signup": "20/m/ip",
    "confirm_email": "1/3m/key",
    "reset_password": "20/m/ip,5/5m/key",
    "reset_password_from_key": "20/m/ip",
    "change_password": "5/m/user",
    "reauthenticate": "10/m/user",
}
ACCOUNT_REAUTHENTICATION_TIMEOUT = env.int("ACCOUNT_REAUTHENTICATION_TIMEOUT", default=300)

MFA_SUPPORTED_TYPES = ["totp", "recovery_codes"]
MFA_TOTP_ISSUER = "Comet"

# Staff must have used a second factor in this session to reach /admin/.
COMET_REQUIRE_STAFF_MFA = env.bool("COMET_REQUIRE_STAFF_MFA", default=False)

# --- Email ------------------------------------------------------------------

vars().update(env.email_url("EMAIL_URL", default="consolemail://"))
DEFAULT_FROM_EMAIL = env("DEFAULT_FROM_EMAIL", default="Comet <no-reply@comet.localhost>")
SERVER_EMAIL = env("SERVER_EMAIL", default=DEFAULT_FROM_EMAIL)

# --- Internationalisation ---------------------------------------------------

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# --- Static files -----------------------------------------------------------

STATIC_URL = "/static/"
# `collectstatic` writes here; WhiteNoise serves from here.
STATIC_ROOT = Path(env("STATIC_ROOT", default=str(BASE_DIR / "staticfiles")))
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}

# --- Security headers -------------------------------------------------------

SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_HTTPONLY = True
# Database sessions that ignore a cookie holding a key Django never issues (a NUL in it).
SESSION_ENGINE = "comet.sessions"
CSRF_COOKIE_HTTPONLY = False  # htmx reads the token from the page, not the cookie.

# No inline script anywhere: every script is a file under static/.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'", "data:"],
        "font-src": ["'self'"],
        "connect-src": ["'self'"],
        "form-action": ["'self'", "https://checkout.stripe.com"],
        "frame-ancestors": ["'none'"],
        "base-uri": ["'self'"],
        "object-src": ["'none'"],
    },
}

# --- API --------------------------------------------------------------------

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": [
        "rest_framework.permissions.IsAuthenticated",
    ],
    "DEFAULT_PARSER_CLASSES": [
        "comet.parsers.JSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "DEFAULT_RENDERER_CLASSES": [
        "rest_framework.renderers.JSONRenderer",
        "rest_framework.renderers.BrowsableAPIRenderer",
    ],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "core.api.exception_handler",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Comet console API",
    "DESCRIPTION": (
        "The API behind the Comet console: tokens, balances, ledger, logs and pricing. "
        "Console endpoints authenticate with the browser session. The relay's "
        "OpenAI-compatible `/v1/*` endpoints, called with a token's key, are described "
        "on the [Relay API](/relay-api/) page."
    ),
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
}

# --- Celery -----------------------------------------------------------------

CELERY_BROKER_URL = REDIS_URL or "memory://"
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
# Without Redis there is no worker: tasks run in the process that enqueues them.
CELERY_TASK_ALWAYS_EAGER = not REDIS_URL
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 3600}
CELERY_TIMEZONE = TIME_ZONE
CELERY_BEAT_SCHEDULE: dict[str, dict] = {
    "clear-expired-sessions": {
        "task": "comet.tasks.clear_expired_sessions_task",
        # In the 1-5 AM maintenance window the help pages announce.
        "schedule": crontab(hour=3, minute=10),
        "options": {"expires": 60 * 60},
    },
}

# --- Relay ------------------------------------------------------------------

RELAY_MAX_BODY_BYTES = env.int("RELAY_MAX_BODY_BYTES", default=8 * 1024 * 1024)
# A crashed process's concurrency slots free themselves after this many seconds.
RELAY_SLOT_LEASE_SECONDS = env.int("RELAY_SLOT_LEASE_SECONDS", default=60)
# Reservations assume this many completion tokens when a request sets no max_tokens.
RELAY_DEFAULT_MAX_TOKENS = env.int("RELAY_DEFAULT_MAX_TOKENS", default=4096)
RELAY_MAX_ATTEMPTS = env.int("RELAY_MAX_ATTEMPTS", default=3)
# Consecutive failures after which a channel is disabled until a probe succeeds.
RELAY_CHANNEL_FAILURE_THRESHOLD = env.int("RELAY_CHANNEL_FAILURE_THRESHOLD", default=5)
# Settle (the database write of cost + log row) after the response is sent, off the
# client's latency; shutdown waits for pending settlements. bench/relay compares both.
RELAY_SETTLE_AFTER_RESPONSE = env.bool("RELAY_SETTLE_AFTER_RESPONSE", default=True)
# Settlements after the response are written in batches of at most this many (one
# statement each, relay.settler); a batch waits this long for company first.
RELAY_SETTLE_BATCH_SIZE = env.int("RELAY_SETTLE_BATCH_SIZE", default=200)
RELAY_SETTLE_BATCH_WAIT_MS = env.float("RELAY_SETTLE_BATCH_WAIT_MS", default=20)
# PostgreSQL connections per relay process for reservations, on its event loop
# (billing.metering.ReservePool); 0 reserves on the database threads instead.
RELAY_RESERVE_CONNECTIONS = env.int("RELAY_RESERVE_CONNECTIONS", default=4)
# Reserve and settle in each relay process's memory against credit grants
# (billing.grants; PostgreSQL only): the hot account row is written once per batch
# instead of twice per request. Off: one reservation statement per request.
RELAY_CREDIT_GRANTS = env.bool("RELAY_CREDIT_GRANTS", default=True)
# Tokens and prices stay this long in each relay process's memory (revocation is
# promised within 1 s); 0 turns the memory off.
RELAY_LOCAL_CACHE_SECONDS = env.float("RELAY_LOCAL_CACHE_SECONDS", default=0.5)
CELERY_BEAT_SCHEDULE["relay-probe-disabled-channels"] = {
    "task": "relay.tasks.channel_probe_disabled_task",
    "schedule": 60.0,
    "options": {"expires": 55},
}

# --- Billing and API tokens -------------------------------------------------

COMET_TOKENS_PER_USER = env.int("COMET_TOKENS_PER_USER", default=50)
# Balance queries (`/user/quota`) one client address may make per minute; 0 = no limit.
COMET_QUOTA_QUERIES_PER_MINUTE = env.int("COMET_QUOTA_QUERIES_PER_MINUTE", default=60)
# USD credited (a "bonus" ledger entry) to every new account; 0 turns it off.
COMET_SIGNUP_CREDIT_USD = env("COMET_SIGNUP_CREDIT_USD", default="0")
# A reservation never settled or released is released after this many seconds.
COMET_RESERVATION_LEASE_SECONDS = env.int("COMET_RESERVATION_LEASE_SECONDS", default=900)
# Credit grants (billing.grants): each relay process holds a block of an account's
# money and admits requests against it in memory. A grant holds at most this much
# (micro-USD), takes new requests for at most this long, and is written back every
# COMET_GRANT_FLUSH_MS; requests wait when this many settled ones are unwritten. A
# grant not renewed for COMET_GRANT_LEASE_SECONDS (its process died) is released.
COMET_GRANT_MAX_MICRO_USD = env.int("COMET_GRANT_MAX_MICRO_USD", default=10_000_000)
COMET_GRANT_MAX_AGE_SECONDS = env.float("COMET_GRANT_MAX_AGE_SECONDS", default=1.0)
COMET_GRANT_FLUSH_MS = env.float("COMET_GRANT_FLUSH_MS", default=20)
COMET_GRANT_MAX_PENDING = env.int("COMET_GRANT_MAX_PENDING", default=5000)
COMET_GRANT_LEASE_SECONDS = env.int("COMET_GRANT_LEASE_SECONDS", default=60)
CELERY_BEAT_SCHEDULE["billing-release-expired-reservations"] = {
    "task": "billing.tasks.reservation_release_expired_task",
    "schedule": 30.0,
    "options": {"expires": 25},
}

# --- Recharge (Stripe Checkout) ---------------------------------------------

# Without both keys the recharge page says online payment is not configured.
STRIPE_SECRET_KEY = env("STRIPE_SECRET_KEY", default="")
STRIPE_WEBHOOK_SECRET = env("STRIPE_WEBHOOK_SECRET", default="")
# Points the `stripe` library at another host (the tests' fake Stripe API).
STRIPE_API_BASE = env("STRIPE_API_BASE", default="")
# Webhook signatures older than this many seconds are refused (replays).
STRIPE_WEBHOOK_TOLERANCE_SECONDS = env.int("STRIPE_WEBHOOK_TOLERANCE_SECONDS", default=300)
# Seconds between a verified payment and its crediting task running.
COMET_RECHARGE_HOLD_SECONDS = env.int("COMET_RECHARGE_HOLD_SECONDS", default=0)
# A paid order still uncredited this long after payment needs attention (admins emailed).
COMET_RECHARGE_ATTENTION_SECONDS = env.int("COMET_RECHARGE_ATTENTION_SECONDS", default=600)
# Redemption codes one user may try per hour (429 past it); 0 = no limit.
COMET_REDEEM_ATTEMPTS_PER_HOUR = env.int("COMET_REDEEM_ATTEMPTS_PER_HOUR", default=20)
CELERY_BEAT_SCHEDULE["billing-sweep-recharge-orders"] = {
    "task": "billing.tasks.recharge_orders_sweep_task",
    "schedule": 60.0,
    "options": {"expires": 55},
}

# --- Request logs -------------------------------------------------------------

# Request log rows older than this many days are settled into the ledger and deleted
# (charts keep their per-day rollups).
LOG_RETENTION_DAYS = env.int("LOG_RETENTION_DAYS", default=90)
CELERY_BEAT_SCHEDULE["logs-retention"] = {
    "task": "billing.tasks.log_retention_task",
    # In the 1-5 AM maintenance window.
    "schedule": crontab(hour=3, minute=30),
    "options": {"expires": 60 * 60},
}

# --- Prices, announcements and price-change emails ---------------------------

# Absolute links in emails (unsubscribe) start with this.
COMET_PUBLIC_URL = env("COMET_PUBLIC_URL", default="http://127.0.0.1:8000")
# Unset, pages that show the relay's address (quickstart snippets) use the address the
# page was asked on: a local server on another PORT shows its own (core.links.site_root).
COMET_PUBLIC_URL_IS_SET = bool(env("COMET_PUBLIC_URL", default=""))
# Price changes within this window go out as one email per subscriber.
PRICE_CHANGE_BATCH_WINDOW_SECONDS = env.int("PRICE_CHANGE_BATCH_WINDOW_SECONDS", default=600)
PRICE_CHANGE_EMAIL_CHUNK_SIZE = env.int("PRICE_CHANGE_EMAIL_CHUNK_SIZE", default=250)
# An email claimed by a worker that died is sent again after this many seconds.
PRICE_CHANGE_EMAIL_LEASE_SECONDS = env.int("PRICE_CHANGE_EMAIL_LEASE_SECONDS", default=600)
# Tests and benchmarks point their own worker at their own queue.
CELERY_TASK_DEFAULT_QUEUE = env("CELERY_TASK_DEFAULT_QUEUE", default="celery")
CELERY_BEAT_SCHEDULE["models-catalog-apply-scheduled-prices"] = {
    "task": "models_catalog.tasks.price_changes_apply_due_task",
    "schedule": 30.0,
    "options": {"expires": 25},
}
CELERY_BEAT_SCHEDULE["models-catalog-close-price-batches"] = {
    "task": "models_catalog.tasks.price_change_batches_close_task",
    "schedule": 30.0,
    "options": {"expires": 25},
}
CELERY_BEAT_SCHEDULE["models-catalog-resume-price-emails"] = {
    "task": "models_catalog.tasks.price_change_emails_resume_task",
    "schedule": 300.0,
    "options": {"expires": 290},
}

# --- Logging ----------------------------------------------------------------

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    # Secrets reach log text in many ways: query strings (`/user/quota?key=sk-...`), a
    # `Host:` header in a DisallowedHost message, an upstream's error, a traceback.
    # The formatter masks API keys and Stripe secrets in the final text of every
    # entry; every handler here uses it, and every logger that would otherwise write
    # through a handler of Django's, uvicorn's or Celery's is sent to these.
    "formatters": {
        "plain": {
            "class": "comet.logging.MaskSecretsFormatter",
            "format": "%(asctime)s %(levelname)s %(name)s %(message)s",
        },
    },
    "filters": {
        "mask_secrets": {"()": "comet.logging.MaskSecretsFilter"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "plain",
            "filters": ["mask_secrets"],
        },
    },
    "root": {"handlers": ["console"], "level": env("LOG_LEVEL", default="INFO")},
    "loggers": {
        # Django's own handlers (a debug-only console, mail_admins, runserver's lines)
        # do not mask: its loggers write through ours instead.
        "django": {"handlers": ["console"], "level": "INFO", "propagate": False},
        "django.server": {"handlers": ["console"], "level": "INFO", "propagate": False},
        # httpx logs every upstream call of the relay at INFO: one line per request, for nothing.
        "httpx": {"level": "WARNING"},
        # The stripe library logs every API call at INFO.
        "stripe": {"level": "WARNING"},
        # uvicorn's handlers do not mask: its server log (errors of the ASGI app, bad
        # requests) and its access log, which prints query strings, write through ours.
        "uvicorn": {"handlers": ["console"], "level": "INFO", "propagate": False},
        "uvicorn.access": {"handlers": ["console"], "level": "INFO", "propagate": False},
    },
}

# The product's name: page titles, the header, and every email's greeting and signature.
COMET_SITE_NAME = env("COMET_SITE_NAME", default="Comet")
# Where customers reach the platform's support: an address, a help-desk URL, or both.
# Shown in the footer, on error pages, on slow orders and in every email; unset, nowhere.
COMET_SUPPORT_EMAIL = env("COMET_SUPPORT_EMAIL", default="")
COMET_SUPPORT_URL = env("COMET_SUPPORT_URL", default="")
