from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from announcements.models import Announcement, AnnouncementRead
from announcements.services import announcement_create, announcement_render

pytestmark = pytest.mark.django_db


def publish(title="Maintenance tonight", **fields):
    fields.setdefault("published_at", timezone.now() - timedelta(minutes=1))
    return announcement_create(title=title, body_markdown=fields.pop("body", "Details."), **fields)


def test_markdown_is_rendered_and_sanitised():
    html = announcement_render(
        body_markdown=(
            "**Bold** and [a link](https://example.com)\n\n"
            "<script>alert(1)</script>\n\n"
            '[bad](javascript:alert(1)) <img src="https://evil.example/x.png" onerror="x()">'
        )
    )

    assert "<strong>Bold</strong>" in html
    assert 'href="https://example.com"' in html
    assert 'rel="noopener noreferrer nofollow"' in html
    assert "<script" not in html
    assert "javascript:" not in html
    assert "<img" not in html
    assert "onerror" not in html


def test_public_list_shows_published_unexpired_pinned_first(client):
    publish("Old news")
    publish("Pinned notice", is_pinned=True, published_at=timezone.now() - timedelta(days=3))
    publish("Draft", published_at=None)
    publish("Tomorrow", published_at=timezone.now() + timedelta(days=1))
    publish(
        "Expired",
        published_at=timezone.now() - timedelta(days=2),
        expires_at=timezone.now() - timedelta(days=1),
    )

    html = client.get(reverse("announcements")).content.decode()

    assert html.index("Pinned notice") < html.index("Old news")
    for hidden in ["Draft", "Tomorrow", "Expired"]:
        assert hidden not in html


def test_category_filter(client):
    publish("Price cut", category=Announcement.Category.PRICE_ADJUSTMENT)
    publish("New model", category=Announcement.Category.NEW_MODEL)

    html = client.get(reverse("announcements"), {"category": "price_adjustment"}).content.decode()

    assert "Price cut" in html
    assert "<strong>New model</strong>" not in html


def test_detail_marks_read_and_the_home_badge_counts_unread(user_client, user):
    first = publish("First")
    publish("Second", is_pinned=True)

    home = user_client.get(reverse("console:home")).content.decode()
    assert "2 unread" in home
    assert home.index("Second") < home.index("First")

    detail = user_client.get(reverse("announcements:detail", args=[first.pk]))
    assert detail.status_code == 200
    assert "1 unread" in user_client.get(reverse("console:home")).content.decode()

    user_client.post(reverse("announcements:mark_all_read"), {"next": "/"})
    assert "unread" not in user_client.get(reverse("console:home")).content.decode()
    assert AnnouncementRead.objects.filter(user=user).count() == 2


@pytest.mark.parametrize(
    ("next_url", "location"),
    [
        ("/", "/"),
        ("/announcements/?category=maintenance", "/announcements/?category=maintenance"),
        ("", "/announcements/"),
        # Each of these was taken for a view name to reverse (500) or led off the site.
        ("²", "/announcements/"),
        ("①", "/announcements/"),
        ("٣", "/announcements/"),
        ("1e309", "/announcements/"),
        ("\x00", "/announcements/"),
        ("announcements:detail", "/announcements/"),
        ("https://evil.example/", "/announcements/"),
        ("//evil.example/", "/announcements/"),
        ("/\\evil.example/", "/announcements/"),
    ],
)
def test_mark_all_read_goes_back_only_to_a_path_of_this_site(user_client, next_url, location):
    publish()
    response = user_client.post(reverse("announcements:mark_all_read"), {"next": next_url})
    assert response.status_code == 302
    assert response["Location"] == location
    assert AnnouncementRead.objects.count() == 1


def test_anonymous_reader_marks_nothing(client):
    item = publish()

    assert client.get(reverse("announcements:detail", args=[item.pk])).status_code == 200
    assert not AnnouncementRead.objects.exists()


def test_unpublished_detail_is_not_found(client):
    draft = publish(published_at=None)

    assert client.get(reverse("announcements:detail", args=[draft.pk])).status_code == 404


def test_atom_feed_lists_published_announcements(client):
    publish("In the feed", body="Read **this**")
    publish("Not yet", published_at=None)

    response = client.get(reverse("announcements:feed"))

    body = response.content.decode()
    assert response["Content-Type"].startswith("application/atom+xml")
    assert "<title>In the feed</title>" in body
    assert "Not yet" not in body


def test_home_card_query_count(user_client, django_assert_max_num_queries):
    for number in range(8):
        publish(f"Notice {number}")

    with django_assert_max_num_queries(12):
        response = user_client.get(reverse("console:home"))

    assert response.status_code == 200


def test_list_query_count_does_not_grow_with_announcements(
    user_client, django_assert_max_num_queries
):
    for number in range(15):
        publish(f"Notice {number}")

    with django_assert_max_num_queries(6):
        response = user_client.get(reverse("announcements"))

    assert response.content.decode().count("Notice ") == 15


@pytest.mark.parametrize(
    "next_url", ["https://evil.example/", "//evil.example", "/\\evil.example", "http:evil.example"]
)
def test_mark_all_read_never_redirects_off_site(user_client, user, next_url):
    publish()

    response = user_client.post(reverse("announcements:mark_all_read"), {"next": next_url})

    assert response.status_code == 302
    assert response["Location"] == reverse("announcements")
    assert AnnouncementRead.objects.filter(user=user).count() == 1


def test_mark_all_read_over_https_never_redirects_to_plain_http(user_client):
    response = user_client.post(
        reverse("announcements:mark_all_read"),
        {"next": "http://testserver/announcements/"},
        secure=True,
    )

    assert response["Location"] == reverse("announcements")


def test_mark_all_read_returns_to_a_local_page(user_client, user):
    publish()
    back = reverse("announcements") + "?category=maintenance"

    response = user_client.post(reverse("announcements:mark_all_read"), {"next": back})

    assert response.status_code == 302
    assert response["Location"] == back
    assert AnnouncementRead.objects.filter(user=user).count() == 1


def test_mark_all_read_without_next_returns_to_the_list(user_client):
    response = user_client.post(reverse("announcements:mark_all_read"))

    assert response["Location"] == reverse("announcements")
