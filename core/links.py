"""Absolute links for emails, the site's address to show, and the support contact.

Links in emails start with COMET_PUBLIC_URL, never a request's Host. Pages that show
the site's address to copy (the relay's base URL in the quickstart) use `site_root`:
COMET_PUBLIC_URL when it is set, else the address the page was asked on, so a local
server started on any port shows its own.
"""

from dataclasses import dataclass
from urllib.parse import urlsplit

from django.conf import settings
from django.http import HttpRequest


def public_url(path: str) -> str:
    """Return the absolute URL of `path` (an absolute path, `/...`) on the public site."""
    return settings.COMET_PUBLIC_URL.rstrip("/") + path


def site_root(request: HttpRequest) -> str:
    """Return the site's root URL as its users reach it, without a trailing slash.

    COMET_PUBLIC_URL when set (production requires it); otherwise the request's
    scheme and host, which Django checked against ALLOWED_HOSTS.
    """
    if settings.COMET_PUBLIC_URL_IS_SET:
        return settings.COMET_PUBLIC_URL.rstrip("/")
    return f"{request.scheme}://{request.get_host()}"


def relay_base_url(request: HttpRequest) -> str:
    """Return the base URL OpenAI-compatible clients call: the site's root + `/v1`."""
    return site_root(request) + "/v1"


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
