import json
import logging
import os
import re
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings
from django.contrib.sessions.models import Session
from django.utils import timezone

from comet.logging import MaskSecretsFilter, MaskSecretsFormatter, mask_secrets
from comet.tasks import clear_expired_sessions_task
from core.links import is_site_root_url, public_domain, public_url
from tests.settings_module import settings_environment

PROJECT_ROOT = Path(__file__).resolve().parents[2]
KEY = "sk-" + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8"


def test_api_keys_are_masked_to_their_last_four_characters():
    line = f'"GET /user/quota?key={KEY} HTTP/1.1" 200'

    assert mask_secrets(line) == '"GET /user/quota?key=sk-…Q7r8 HTTP/1.1" 200'


def test_log_records_pass_through_the_mask_before_they_are_written():
    record = logging.LogRecord("django.server", logging.INFO, __file__, 1, "%s", (KEY,), None)

    MaskSecretsFilter().filter(record)

    assert KEY not in record.getMessage()
    assert record.getMessage() == "sk-…Q7r8"


def test_the_formatter_masks_arguments_exception_text_and_traceback():
    try:
        raise RuntimeError(f"upstream refused {KEY}")
    except RuntimeError:
        exc_info = sys.exc_info()
    record = logging.LogRecord(
        "relay", logging.ERROR, __file__, 1, "call with %s failed", (KEY,), exc_info
    )

    text = MaskSecretsFormatter("%(levelname)s %(message)s").format(record)

    assert text.startswith("ERROR call with sk-…Q7r8 failed\nTraceback (most recent call last):")
    assert text.endswith("RuntimeError: upstream refused sk-…Q7r8")
    assert KEY not in text
    assert KEY not in (record.exc_text or "")


def test_stripe_secrets_are_masked_to_their_last_four_characters():
    text = "sk_live_51AbCdEfGhIjKlMnOp rk_test_51QrStUvWxYz0123 whsec_A1b2C3d4E5f6G7h8"

    assert mask_secrets(text) == "sk_live_…MnOp rk_test_…0123 whsec_…G7h8"


def test_every_handler_and_server_logger_writes_through_the_masking_formatter():
    formatters = settings.LOGGING["formatters"]
    for handler in settings.LOGGING["handlers"].values():
        assert formatters[handler["formatter"]]["class"] == "comet.logging.MaskSecretsFormatter"
    # Loggers Django and uvicorn give handlers of their own write through ours instead.
    for name in ["django", "django.server", "uvicorn", "uvicorn.access"]:
        logger = settings.LOGGING["loggers"][name]
        assert logger["handlers"] == ["console"]
        assert logger["propagate"] is False


@pytest.mark.django_db
def test_expired_sessions_are_cleared_and_live_ones_kept():
    now = timezone.now()
    Session.objects.create(session_key="expired", session_data="", expire_date=now - timedelta(1))
    Session.objects.create(session_key="live", session_data="", expire_date=now + timedelta(1))

    clear_expired_sessions_task.delay()

    assert list(Session.objects.values_list("session_key", flat=True)) == ["live"]


def production_manage(*args: str, **overrides: str) -> subprocess.CompletedProcess:
    """Run `manage.py *args` under production settings with only `overrides` configured."""
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"SECRET_KEY", "DATABASE_URL", "REDIS_URL", "COMET_PUBLIC_URL"}
    }
    env.update(DJANGO_SETTINGS_MODULE="comet.settings.production", ALLOWED_HOSTS="example.com")
    env.update(overrides)
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def production_check(**overrides: str) -> subprocess.CompletedProcess:
    return production_manage("check", **overrides)


REAL_SECRET = "x7Gq2mVt9Lp4Rz8Nw1Kc6Hy3Bd5Fs0Je2Ua7Oi4Xe9Tr1Wn6Ym3Qb8Pl5Zk0Mv2"
REAL_SERVICES = {
    "SECRET_KEY": REAL_SECRET,
    "DATABASE_URL": "postgres://postgres@127.0.0.1/comet",
    "REDIS_URL": "redis://127.0.0.1:6379/15",
}
PUBLIC_URL = "https://console.example.com"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({}, "SECRET_KEY must be set"),
        (
            {"SECRET_KEY": "django-insecure-" + "x" * 60},
            "SECRET_KEY must be set",
        ),
        ({"SECRET_KEY": REAL_SECRET}, "DATABASE_URL must point to PostgreSQL"),
        (
            {"SECRET_KEY": REAL_SECRET, "DATABASE_URL": "postgres://postgres@127.0.0.1/comet"},
            "REDIS_URL must be set",
        ),
        (REAL_SERVICES, "COMET_PUBLIC_URL must be set in production"),
        ({**REAL_SERVICES, "COMET_PUBLIC_URL": ""}, "COMET_PUBLIC_URL must be set"),
    ],
)
def test_production_settings_refuse_to_start_without_real_secrets(overrides, message):
    result = production_check(**overrides)

    assert result.returncode != 0
    assert message in result.stderr


@pytest.mark.parametrize(
    ("url", "valid"),
    [
        ("https://console.example.com", True),
        ("https://console.example.com/", True),
        ("http://127.0.0.1:8000", True),
        ("https://[::1]:8443", True),
        ("console.example.com", False),
        ("//console.example.com", False),
        ("ftp://console.example.com", False),
        ("javascript:alert(1)", False),
        ("https://", False),
        ("https://user:password@console.example.com", False),
        ("https://console.example.com/comet/", False),
        ("https://console.example.com/?next=x", False),
        ("https://console.example.com/#top", False),
        ("https://console example.com", False),
        ("http://[::1", False),
    ],
)
def test_a_public_url_must_be_the_absolute_http_url_of_a_site_root(url, valid):
    assert is_site_root_url(url) is valid


def test_public_links_start_with_the_public_url_whatever_its_trailing_slash(settings):
    settings.COMET_PUBLIC_URL = "https://console.example.com:8443/"

    assert public_url("/tokens/") == "https://console.example.com:8443/tokens/"
    assert public_domain() == "console.example.com:8443"


@pytest.mark.parametrize(
    "url", ["ftp://console.example.com", "https://user:password@console.example.com"]
)
def test_production_settings_refuse_a_public_url_that_is_not_an_absolute_http_url(url):
    result = production_check(**REAL_SERVICES, COMET_PUBLIC_URL=url)

    assert result.returncode != 0
    assert "COMET_PUBLIC_URL must be the absolute http(s) URL of the site's root" in result.stderr
    assert "password" not in result.stderr


def test_production_settings_start_with_real_secrets():
    result = production_check(**REAL_SERVICES, COMET_PUBLIC_URL=PUBLIC_URL)

    assert result.returncode == 0, result.stderr


def test_release_collectstatic_succeeds_under_production_settings(tmp_path):
    # Given production settings (WhiteNoise's manifest storage, which refuses a file
    # that names a missing one) and a fresh STATIC_ROOT,
    static_root = tmp_path / "staticfiles"
    production = settings_environment(
        tmp_path, "comet.settings.production", STATIC_ROOT=str(static_root)
    )

    # when the release step collects the static files,
    result = production_manage(
        "collectstatic", "--noinput", **REAL_SERVICES, COMET_PUBLIC_URL=PUBLIC_URL, **production
    )

    # then it finishes and the vendored scripts are in the manifest, compressed.
    assert result.returncode == 0, result.stderr[-3000:]
    manifest = json.loads((static_root / "staticfiles.json").read_text())
    hashed_chart = manifest["paths"]["vendor/chartjs/chart.umd.min.js"]
    assert (static_root / hashed_chart).exists()
    assert (static_root / f"{hashed_chart}.gz").exists()


SOURCE_MAP_COMMENT = re.compile(rb"[#@] source(?:Mapping)?URL=([^\s*]+)")


def test_vendored_files_name_no_source_map_that_is_not_vendored():
    # WhiteNoise's manifest storage follows these comments: a missing target fails the release.
    dangling = []
    for path in sorted((PROJECT_ROOT / "static").rglob("*")):
        if path.suffix not in {".js", ".css"}:
            continue
        for target in SOURCE_MAP_COMMENT.findall(path.read_bytes()):
            if target.startswith(b"data:"):
                continue
            if not (path.parent / target.decode()).exists():
                dangling.append(f"{path.relative_to(PROJECT_ROOT)} -> {target.decode()}")

    assert dangling == []
