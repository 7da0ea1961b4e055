from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _


class Announcement(models.Model):
    """A platform notice: new models, price adjustments, maintenance.

    `body_html` is rendered from `body_markdown` and sanitised by
    `services.announcement_render` whenever the body is written, so pages never
    render untrusted Markdown themselves.
    """

    class Category(models.TextChoices):
        PLATFORM = "platform", _("Platform")
        NEW_MODEL = "new_model", _("New model")
        PRICE_ADJUSTMENT = "price_adjustment", _("Price adjustment")
        MAINTENANCE = "maintenance", _("Maintenance")

    title = models.CharField(_("title"), max_length=200)
    body_markdown = models.TextField(
        _("body markdown"), help_text=_("Markdown; HTML is sanitised.")
    )
    body_html = models.TextField(_("body html"), editable=False, blank=True)
    category = models.CharField(
        _("category"), max_length=32, choices=Category.choices, default=Category.PLATFORM
    )
    is_pinned = models.BooleanField(_("is pinned"), default=False)
    published_at = models.DateTimeField(
        _("published at"),
        null=True,
        blank=True,
        help_text=_("Empty = draft; a future time = scheduled."),
    )
    expires_at = models.DateTimeField(_("expires at"), null=True, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("created by"),
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)

    class Meta:
        verbose_name = _("announcement")
        verbose_name_plural = _("announcements")
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

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, verbose_name=_("user"), on_delete=models.CASCADE, related_name="+"
    )
    announcement = models.ForeignKey(
        Announcement, verbose_name=_("announcement"), on_delete=models.CASCADE, related_name="reads"
    )
    read_at = models.DateTimeField(_("read at"), auto_now_add=True)

    class Meta:
        verbose_name = _("announcement read")
        verbose_name_plural = _("announcement reads")
        constraints = [
            models.UniqueConstraint(
                fields=["user", "announcement"], name="announcements_one_read_per_user"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.user_id} read {self.announcement_id}"
