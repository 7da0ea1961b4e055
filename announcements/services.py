"""Writes of announcements: every body is rendered and sanitised here, once."""

import contextlib
from datetime import datetime

import markdown  # type: ignore[import-untyped, unused-ignore]
import nh3
from django.db import IntegrityError
from django.utils import timezone

from accounts.models import User

from .models import Announcement, AnnouncementRead

# What a notice needs: text, lists, links, tables, code. No images (nothing is fetched
# from elsewhere under our CSP), no style, no script.
ALLOWED_TAGS = {
    "a", "abbr", "b", "blockquote", "br", "code", "del", "em", "h2", "h3", "h4", "hr", "i",
    "li", "ol", "p", "pre", "strong", "sub", "sup", "table", "tbody", "td", "th", "thead",
    "tr", "ul",
}  # fmt: skip
ALLOWED_ATTRIBUTES = {"a": {"href", "title"}, "abbr": {"title"}, "td": {"align"}, "th": {"align"}}


def announcement_render(*, body_markdown: str) -> str:
    """Return the sanitised HTML of a Markdown body."""
    html = markdown.markdown(body_markdown, extensions=["tables", "fenced_code", "sane_lists"])
    return nh3.clean(
        html,
        tags=ALLOWED_TAGS,
        attributes=ALLOWED_ATTRIBUTES,
        url_schemes={"http", "https", "mailto"},
        link_rel="noopener noreferrer nofollow",
    )


def announcement_create(
    *,
    title: str,
    body_markdown: str,
    category: str = Announcement.Category.PLATFORM,
    is_pinned: bool = False,
    published_at: datetime | None = None,
    expires_at: datetime | None = None,
    created_by: User | None = None,
) -> Announcement:
    """Create an announcement (published now unless `published_at` says otherwise)."""
    return Announcement.objects.create(
        title=title,
        body_markdown=body_markdown,
        body_html=announcement_render(body_markdown=body_markdown),
        category=category,
        is_pinned=is_pinned,
        published_at=published_at,
        expires_at=expires_at,
        created_by=created_by,
    )


def announcement_save(*, announcement: Announcement) -> Announcement:
    """Save an announcement edited in the admin, rendering its body again."""
    announcement.body_html = announcement_render(body_markdown=announcement.body_markdown)
    announcement.save()
    return announcement


def announcement_update_body(*, announcement: Announcement, title: str, body_markdown: str) -> None:
    """Replace an announcement's title and body (a price batch growing, say)."""
    announcement.title = title
    announcement.body_markdown = body_markdown
    announcement.body_html = announcement_render(body_markdown=body_markdown)
    announcement.save(update_fields=["title", "body_markdown", "body_html", "updated_at"])


def announcement_mark_read(*, announcement: Announcement, user: User) -> None:
    """Record that a user read an announcement (once; reading again changes nothing)."""
    # Two tabs at once: the other request recorded it, which is just as good.
    with contextlib.suppress(IntegrityError):
        AnnouncementRead.objects.get_or_create(user=user, announcement=announcement)


def announcements_mark_all_read(*, user: User, now: datetime | None = None) -> int:
    """Mark every announcement visible now as read; return how many were unread."""
    from .selectors import announcement_list

    unread = announcement_list(now=now or timezone.now()).exclude(reads__user=user)
    rows = [AnnouncementRead(user=user, announcement=item) for item in unread]
    AnnouncementRead.objects.bulk_create(rows, ignore_conflicts=True)
    return len(rows)
