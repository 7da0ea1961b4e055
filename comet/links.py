"""Absolute links for emails: they start with COMET_PUBLIC_URL, never a request's Host."""

from urllib.parse import urlsplit

from django.conf import settings


def public_url(path: str) -> str:
    """Return the absolute URL of `path` (an absolute path, `/...`) on the public site."""
    return settings.COMET_PUBLIC_URL.rstrip("/") + path


def public_domain() -> str:
    """Return the host (and port) of the public site, e.g. `console.example.com`."""
    return urlsplit(settings.COMET_PUBLIC_URL).netloc


def is_site_root_url(url: str) -> bool:
    """Return whether `url` is an absolute http(s) URL of a site's root.

    No credentials, path, query or fragment: links are made by appending a path.
    """
    try:
        parts = urlsplit(url)
        hostname = parts.hostname
    except ValueError:  # e.g. an unclosed IPv6 bracket
        return False
    return (
        parts.scheme in {"http", "https"}
        and bool(hostname)
        and parts.username is None
        and parts.path in {"", "/"}
        and not parts.query
        and not parts.fragment
        and not any(character.isspace() for character in url)
    )
