from django.conf import settings
from django.db import models
from django.db.models import Q


class Announcement(models.Model):
    """A platform notice: new models, price adjustments, maintenance.

    `body_html` is rendered from `body_markdown` and sanitised by
    `services.announcement_render` whenever the body is written, so pages never
    render untrusted Markdown themselves.
    """

    class Category(models.TextChoices):
        PLATFORM = "platform", "Platform"
        NEW_MODEL = "new_model", "New model"
        PRICE_ADJUSTMENT = "price_adjustment", "Price adjustment"
        MAINTENANCE = "maintenance", "Maintenance"

    title = models.CharField(max_length=200)
    body_markdown = models.TextField(help_text="Markdown; HTML is sanitised.")
    body_html = models.TextField(editable=False, blank=True)
    category = models.CharField(max_length=32, choices=Category.choices, default=Category.PLATFORM)
    is_pinned = models.BooleanField(default=False)
    published_at = models.DateTimeField(
        null=True, blank=True, help_text="Empty = draft; a future time = scheduled."
    )
    expires_at = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-published_at", "-pk"]
        indexes = [models.Index(fields=["published_at", "expires_at"])]
        constraints = [
            models.CheckConstraint(
                condition=Q(expires_at__isnull=True)
                | Q(published_at__isnull=True)
                | Q(expires_at__gt=models.F("published_at")),
                name="announcements_expires_after_publication",
            ),
        ]

    def __str__(self) -> str:
        return self.title


class AnnouncementRead(models.Model):
    """That a user has read an announcement: what the unread badge counts against."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    announcement = models.ForeignKey(Announcement, on_delete=models.CASCADE, related_name="reads")
    read_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["user", "announcement"], name="announcements_one_read_per_user"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.user_id} read {self.announcement_id}"
