from typing import Any

from django.contrib import admin
from django.http import HttpRequest
from django.utils.safestring import SafeString, mark_safe
from django.utils.translation import gettext_lazy as _

from . import services
from .models import Announcement


@admin.register(Announcement)
class AnnouncementAdmin(admin.ModelAdmin):
    list_display = ["title", "category", "is_pinned", "published_at", "expires_at"]
    list_editable = ["is_pinned"]
    list_filter = ["category", "is_pinned"]
    search_fields = ["title", "body_markdown"]
    date_hierarchy = "published_at"
    fields = [
        "title", "category", "body_markdown", "rendered_body", "is_pinned", "published_at",
        "expires_at",
    ]  # fmt: skip
    readonly_fields = ["rendered_body"]

    @admin.display(description=_("As readers see it"))
    def rendered_body(self, announcement: Announcement) -> SafeString:
        # body_html was sanitised with nh3 when it was saved.
        return mark_safe(announcement.body_html)  # noqa: S308

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        if not change:
            obj.created_by = request.user
        services.announcement_save(announcement=obj)
