"""Announcements: public list, detail and feed; read marks for signed-in users."""

from django.contrib.auth.decorators import login_required
from django.contrib.syndication.views import Feed
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.utils.feedgenerator import Atom1Feed
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_GET, require_POST

from . import selectors, services
from .models import Announcement


@require_GET
def announcement_list(request: HttpRequest) -> HttpResponse:
    """List visible announcements (pinned first), optionally one category."""
    category = request.GET.get("category", "")
    if category not in Announcement.Category.values:
        category = ""
    items = selectors.announcement_list_for(user=request.user, category=category)
    return render(
        request,
        "announcements/list.html",
        {
            "announcements": items[:100],
            "category": category,
            "categories": Announcement.Category.choices,
        },
    )


@require_GET
def announcement_detail(request: HttpRequest, pk: int) -> HttpResponse:
    """Show one announcement and mark it read for a signed-in reader."""
    announcement = get_object_or_404(selectors.announcement_list(), pk=pk)
    if request.user.is_authenticated:
        services.announcement_mark_read(announcement=announcement, user=request.user)
    return render(request, "announcements/detail.html", {"announcement": announcement})


@login_required
@require_POST
def mark_all_read(request: HttpRequest) -> HttpResponse:
    """Mark every visible announcement read (clears the badge)."""
    services.announcements_mark_all_read(user=request.user)  # type: ignore[arg-type]
    # Back to the page the form was on: a path of this site, never a view name
    # (redirect() reversed any other text and answered 500) nor another site.
    target = request.POST.get("next", "")
    if not target.startswith("/") or not url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        target = reverse("announcements")
    return HttpResponseRedirect(target)


class AnnouncementFeed(Feed):
    """An Atom feed of the latest 50 announcements."""

    feed_type = Atom1Feed
    title = "Comet announcements"
    subtitle = "New models, price adjustments and maintenance."

    def link(self) -> str:
        return reverse("announcements")

    def items(self):
        return selectors.announcement_list().order_by("-published_at", "-pk")[:50]

    def item_title(self, item: Announcement) -> str:
        return item.title

    def item_description(self, item: Announcement) -> str:
        return item.body_html  # sanitised when saved

    def item_link(self, item: Announcement) -> str:
        return reverse("announcements:detail", args=[item.pk])

    def item_pubdate(self, item: Announcement):
        return item.published_at

    def item_updateddate(self, item: Announcement):
        return item.updated_at

    def item_categories(self, item: Announcement):
        return [item.get_category_display()]
