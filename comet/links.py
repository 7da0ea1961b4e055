"""Absolute links for emails (they start with COMET_PUBLIC_URL, never a request's Host),
and the platform's support contact."""

from dataclasses import dataclass
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


@dataclass(frozen=True)
class SupportContact:
    """How customers reach the platform's support (COMET_SUPPORT_EMAIL, COMET_SUPPORT_URL)."""

    email: str
    url: str

    @property
    def href(self) -> str:
        """The help desk when there is one, else a mail to the support address."""
        return self.url or f"mailto:{self.email}"

    @property
    def label(self) -> str:
        """What a page shows: the address people can copy, else the help desk's URL."""
        return self.email or self.url

    @property
    def text(self) -> str:
        """Both ways, for plain-text emails."""
        return " · ".join(part for part in (self.email, self.url) if part)


def support_contact() -> SupportContact | None:
    """Return the platform's support contact, or None when none is configured."""
    email = settings.COMET_SUPPORT_EMAIL.strip()
    url = settings.COMET_SUPPORT_URL.strip()
    if not email and not url:
        return None
    return SupportContact(email=email, url=url)
