"""Reads of announcements: what is visible now, what a user has not read."""

from datetime import datetime

from django.contrib.auth.models import AnonymousUser
from django.db.models import Exists, OuterRef, Q, QuerySet
from django.utils import timezone

from accounts.models import User

from .models import Announcement, AnnouncementRead


def announcement_list(*, now: datetime | None = None, category: str = "") -> QuerySet[Announcement]:
    """Return published, unexpired announcements, pinned first, newest first."""
    now = now or timezone.now()
    items = Announcement.objects.filter(published_at__lte=now).filter(
        Q(expires_at__isnull=True) | Q(expires_at__gt=now)
    )
    if category:
        items = items.filter(category=category)
    return items.order_by("-is_pinned", "-published_at", "-pk")


def announcement_list_for(
    *, user: User | AnonymousUser, category: str = ""
) -> QuerySet[Announcement]:
    """Return visible announcements, each with `is_read` for a signed-in user."""
    items = announcement_list(category=category)
    if user.is_authenticated:
        reads = AnnouncementRead.objects.filter(announcement=OuterRef("pk"), user=user)
        return items.annotate(is_read=Exists(reads))
    return items


def unread_count(*, user: User) -> int:
    """Return how many visible announcements the user has not read."""
    return announcement_list().exclude(reads__user=user).count()


def console_announcements(*, user: User, limit: int = 5) -> list[Announcement]:
    """Return the pinned and latest announcements for the console home."""
    return list(announcement_list_for(user=user)[:limit])
