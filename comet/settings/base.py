"""Settings shared by every environment.

Only the variables of the README's "Configuration" table are read from the
environment: what an operator has a reason to change. Every other value is fixed,
here or as a constant beside the code it bounds, with the reason for its value;
tests/comet/test_settings_documented.py holds the code and the table to each other.
The modules beside this one (`local`, `production`, `test`) start from here and
change only what differs for them.
"""

from pathlib import Path
from typing import Any

import environ
from celery.schedules import crontab

BASE_DIR = Path(__file__).resolve().parent.parent.parent

env = environ.Env()

# The product's name: page titles, the header, every email's subject, greeting and
# signature, and the issuer an authenticator app shows. A rebranded deployment edits it here.
COMET_SITE_NAME = "Comet"

SECRET_KEY = env("SECRET_KEY", default="")
# Earlier signing keys, still accepted while SECRET_KEY is rotated: sessions,
# password-reset links and channel API keys made with them keep working until
# they are dropped (README, "Rotating SECRET_KEY"). Comma-separated.
SECRET_KEY_FALLBACKS = env.list("SECRET_KEY_FALLBACKS", default=[])
DEBUG = env.bool("DEBUG", default=False)
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=[])
# Proxies whose X-Forwarded-For (and X-Forwarded-Proto) is believed, as IPs or CIDRs;
# `*` makes every peer one. From anyone else the header is ignored and the socket's
# peer is the client. core/clientaddress.py decides the address once, for the site
# and the relay; uvicorn runs with --no-proxy-headers. Production trusts 127.0.0.1
# (a TLS proxy on the same host) unless this is set.
TRUSTED_PROXIES = env.list("TRUSTED_PROXIES", default=[])

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
    # The language from the `django_language` cookie, else Accept-Language (README, "Languages").
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # A signed-in user's saved language beats the cookie and Accept-Language.
    "accounts.middleware.UserLanguageMiddleware",
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
                "django.template.context_processors.i18n",
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
# connection back when done (core.db). 0 = no pool: a connection per request or
# task, closed after it (Celery workers, where each child runs one task at a time).
DATABASE_POOL_MAX_SIZE = env.int("DATABASE_POOL_MAX_SIZE", default=10)
# Connections the pool keeps open while idle, so the first requests after a quiet
# spell do not each pay for a new connection.
DATABASE_POOL_MIN_SIZE = 2
# How long a request waits for a free connection before it is answered 503 with
# Retry-After: long enough to ride out a burst, short enough that a client retries
# sooner than a proxy's own timeout would end the request.
DATABASE_POOL_TIMEOUT_SECONDS = 5.0
# An idle connection above DATABASE_POOL_MIN_SIZE is closed after this long, giving
# PostgreSQL its connection slot back after a burst.
DATABASE_POOL_MAX_IDLE_SECONDS = 60.0


def postgresql_connections(
    database: dict[str, Any],
    *,
    pool_max_size: int,
    pool_min_size: int = DATABASE_POOL_MIN_SIZE,
    pool_timeout_seconds: float = DATABASE_POOL_TIMEOUT_SECONDS,
) -> None:
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
            "min_size": min(pool_min_size, pool_max_size),
            "max_size": pool_max_size,
            "timeout": pool_timeout_seconds,
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
            "KEY_PREFIX": "comet",
            # A stalled Redis fails a read after 2 s (the relay answers 503) instead of
            # holding requests until it comes back: relay/README.md.
            "OPTIONS": {"socket_timeout": 2, "socket_connect_timeout": 2},
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
ACCOUNT_EMAIL_SUBJECT_PREFIX = f"[{COMET_SITE_NAME}] "
ACCOUNT_DEFAULT_HTTP_PROTOCOL = "http"  # production: https
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
# Seconds a sign-in (or a password entered again) counts as recent: the token pages
# and allauth's sensitive actions ask for the password again past it. Five minutes,
# allauth's default: long enough for one task, short for an unattended browser.
ACCOUNT_REAUTHENTICATION_TIMEOUT = 300

MFA_SUPPORTED_TYPES = ["totp", "recovery_codes"]
MFA_TOTP_ISSUER = COMET_SITE_NAME

# Staff must have used a second factor in this session to reach /admin/. Always on in
# production (production.py); off here and locally, where there is no second factor yet.
COMET_REQUIRE_STAFF_MFA = False

# --- Email ------------------------------------------------------------------

vars().update(env.email_url("EMAIL_URL", default="consolemail://"))
DEFAULT_FROM_EMAIL = env("DEFAULT_FROM_EMAIL", default="Comet <no-reply@comet.localhost>")
SERVER_EMAIL = DEFAULT_FROM_EMAIL

# --- Internationalisation ---------------------------------------------------

# The site's default language, for visitors whose browser asks for none of LANGUAGES.
LANGUAGE_CODE = "en"
LANGUAGES = [("en", "English"), ("zh-hans", "简体中文")]
# The Chinese catalog and the glossary it follows live here (locale/GLOSSARY.md).
LOCALE_PATHS = [BASE_DIR / "locale"]
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# --- Static files -----------------------------------------------------------

STATIC_URL = "/static/"
# `collectstatic` writes here; WhiteNoise serves from here.
STATIC_ROOT = BASE_DIR / "staticfiles"
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

# A crashed process's concurrency slots free themselves after this many seconds: the
# longest a request may hold a slot without renewing it (relay.limits). A setting,
# not a constant, because a test gives a relay process of its own a short one.
RELAY_SLOT_LEASE_SECONDS = 60
CELERY_BEAT_SCHEDULE["relay-probe-disabled-channels"] = {
    "task": "relay.tasks.channel_probe_disabled_task",
    "schedule": 60.0,
    "options": {"expires": 55},
}

# --- Billing ----------------------------------------------------------------

# USD credited (a "bonus" ledger entry) to every new account; 0 turns it off.
COMET_SIGNUP_CREDIT_USD = env("COMET_SIGNUP_CREDIT_USD", default="0")
# Public sign-up (allauth, accounts.adapter). A deployment that admits only invited
# customers sets this to False in its settings module; accounts are then made by admins.
COMET_SIGNUP_OPEN = True
CELERY_BEAT_SCHEDULE["billing-release-expired-grants"] = {
    "task": "billing.tasks.grant_release_expired_task",
    "schedule": 30.0,
    "options": {"expires": 25},
}

# --- Recharge (Stripe Checkout) ---------------------------------------------

# Without both keys the recharge page says online payment is not configured.
STRIPE_SECRET_KEY = env("STRIPE_SECRET_KEY", default="")
STRIPE_WEBHOOK_SECRET = env("STRIPE_WEBHOOK_SECRET", default="")
# Points the `stripe` library at another host (the tests' fake Stripe API).
STRIPE_API_BASE = env("STRIPE_API_BASE", default="")
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
# Price-change emails are sent by tasks of this many recipients each: one task's
# SMTP work stays well under a minute, and a worker that dies resends at most one
# chunk's worth (models_catalog.emails).
PRICE_CHANGE_EMAIL_CHUNK_SIZE = 250
# An email claimed by a worker that died is sent again after this many seconds:
# longer than a chunk takes to send, so a live worker's claims are never taken over.
PRICE_CHANGE_EMAIL_LEASE_SECONDS = 600
# (Both are settings, not constants, because a test's own worker process uses a
# short lease and small chunks: tests/models_catalog/test_worker_kill.py.)
# Celery's own default queue; tests and benchmarks give their workers queues of their own.
CELERY_TASK_DEFAULT_QUEUE = "celery"
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
    "root": {"handlers": ["console"], "level": "INFO"},
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

# Where customers reach the platform's support: an address, a help-desk URL, or both.
# Shown in the footer, on error pages, on slow orders and in every email; unset, nowhere.
COMET_SUPPORT_EMAIL = env("COMET_SUPPORT_EMAIL", default="")
COMET_SUPPORT_URL = env("COMET_SUPPORT_URL", default="")

# --- /metrics for Prometheus (comet/metrics.py) -------------------------------------
# Who may scrape: a bearer token, addresses (IPs or CIDRs, as the client's address is
# decided behind TRUSTED_PROXIES), or both (then both must match). Neither set: 404.
METRICS_TOKEN = env("METRICS_TOKEN", default="")
METRICS_ALLOWED_ADDRESSES = env.list("METRICS_ALLOWED_ADDRESSES", default=[])
# prometheus-client's multiprocess mode: every web process writes its metrics in files
# here and a scrape of any one of them sums them all. Read by the library itself at
# start-up; an empty directory, emptied before the web processes start.
PROMETHEUS_MULTIPROC_DIR = env("PROMETHEUS_MULTIPROC_DIR", default="")
