"""Absolute links for emails: they start with COMET_PUBLIC_URL, never a request's Host."""

from urllib.parse import urlsplit

from django.conf import settings


def public_url(path: str) -> str:
    """Return the absolute URL of `path` (an absolute path, `/...`) on the public site."""
    return settings.COMET_PUBLIC_URL.rstrip("/") + path


def public_domain() -> str:
    """Return the host (and port) of the public site, e.g. `console.example.com`."""
    return urlsplit(settings.COMET_PUBLIC_URL).netloc
