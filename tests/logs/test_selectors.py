"""Keyset pages, filters and totals against the raw rows they summarise."""

import itertools
import random
from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone

from logs.forms import Cursor, LogFilters
from logs.models import RequestLog
from logs.selectors import log_page, log_totals, range_pieces
from tests.factories import UserFactory
from tests.logs.helpers import funded_user_with_token, settle

pytestmark = pytest.mark.django_db

MODELS = ("gpt-4o-mini", "claude-3-5-haiku", "deepseek-chat")
IPS = ("203.0.113.7", "198.51.100.20", "2001:db8::5")
STATUSES = (200, 200, 200, 429, 502)


@pytest.fixture
def two_users_rows():
    """130 rows of one user over 3 days (timestamps shared by runs of 5 rows), 30 of another."""
    rng = random.Random(11)
    owner, other = UserFactory(), UserFactory()
    tokens = [funded_user_with_token(owner, name="a"), funded_user_with_token(owner, name="b")]
    stranger = funded_user_with_token(other, name="other")
    now = timezone.now()
    moment = now - timedelta(days=4)
    for index in range(130):
        if index % 5 == 0:
            moment = min(moment + timedelta(seconds=rng.randint(1, 19000)), now)
        status = rng.choice(STATUSES)
        settle(
            rng.choice(tokens),
            cost=0 if status >= 400 else rng.randint(1, 5000),
            created_at=moment,
            model=rng.choice(MODELS),
            client_ip=rng.choice(IPS),
            status_code=status,
            prompt_tokens=0 if status >= 400 else rng.randint(1, 900),
            completion_tokens=0 if status >= 400 else rng.randint(0, 400),
        )
        if index % 4 == 0:
            settle(stranger, cost=7, created_at=moment, model=MODELS[0], client_ip=IPS[0])
    return owner, tokens, other, now


def _expected(rows, **conditions):
    selected = [row for row in rows if all(check(row) for check in conditions.values())]
    return [
        row.pk for row in sorted(selected, key=lambda row: (row.created_at, row.pk), reverse=True)
    ]


def _walk(filters: LogFilters, size: int) -> list[list[int]]:
    pages, cursor = [], None
    while True:
        page = log_page(filters=filters, cursor=cursor, size=size)
        pages.append([row.pk for row in page.rows])
        if page.older is None:
            return pages
        cursor = Cursor.unsign(page.older)


def test_pages_cover_every_row_once_across_equal_timestamps(two_users_rows):
    owner, _tokens, _other, now = two_users_rows
    filters = LogFilters(
        start=now - timedelta(days=5), end=now + timedelta(seconds=1), user_id=owner.pk
    )
    rows = list(RequestLog.objects.filter(user_id=owner.pk))
    # Page size 7 splits the runs of 5 equal timestamps at many places
    pages = _walk(filters, size=7)
    assert [row_id for page in pages for row_id in page] == _expected(rows)
    assert all(len(page) == 7 for page in pages[:-1])
    assert len(pages) == 19


def test_newer_pages_walk_back_to_the_same_pages(two_users_rows):
    owner, _tokens, _other, now = two_users_rows
    filters = LogFilters(
        start=now - timedelta(days=5), end=now + timedelta(seconds=1), user_id=owner.pk
    )
    forward = _walk(filters, size=10)
    # From the third page, "newer" gives the second, then the first
    third = log_page(
        filters=filters,
        cursor=Cursor.unsign(
            log_page(
                filters=filters,
                cursor=Cursor.unsign(log_page(filters=filters, size=10).older),
                size=10,
            ).older
        ),
        size=10,
    )
    assert [row.pk for row in third.rows] == forward[2]
    second = log_page(filters=filters, cursor=Cursor.unsign(third.newer), size=10)
    assert [row.pk for row in second.rows] == forward[1]
    first = log_page(filters=filters, cursor=Cursor.unsign(second.newer), size=10)
    assert [row.pk for row in first.rows] == forward[0]
    assert first.newer is None


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("model", "claude-3-5-haiku"),
        ("client_ip", "2001:db8::5"),
        ("status", "ok"),
        ("status", "error"),
        ("status", "429"),
        ("token", 1),
    ],
)
def test_each_filter_pages_exactly_its_rows(two_users_rows, name, value):
    owner, tokens, _other, now = two_users_rows
    rows = list(RequestLog.objects.filter(user_id=owner.pk))
    checks = {
        "model": lambda row: row.model == value,
        "client_ip": lambda row: row.client_ip == value,
        "status": {
            "ok": lambda row: row.status_code < 400,
            "error": lambda row: row.status_code >= 400,
            "429": lambda row: row.status_code == 429,
        }.get(value),
        "token": lambda row: row.token_id == tokens[1].pk,
    }
    arguments = {"token_id": tokens[1].pk} if name == "token" else {name: value}
    filters = LogFilters(
        start=now - timedelta(days=5), end=now + timedelta(seconds=1), user_id=owner.pk, **arguments
    )
    expected = _expected(rows, only=checks[name])
    assert expected  # the filter selects something, and not everything
    assert len(expected) < len(rows)
    assert [row_id for page in _walk(filters, size=9) for row_id in page] == expected


def test_another_users_rows_never_appear(two_users_rows):
    owner, _tokens, other, now = two_users_rows
    filters = LogFilters(
        start=now - timedelta(days=5), end=now + timedelta(seconds=1), user_id=owner.pk
    )
    seen = {row_id for page in _walk(filters, size=50) for row_id in page}
    assert not seen & set(RequestLog.objects.filter(user_id=other.pk).values_list("id", flat=True))


@pytest.mark.parametrize(
    "filter_name", ["none", "model", "token", "ok", "error", "ip", "code", "ip_and_model"]
)
def test_totals_equal_the_sum_of_the_rows(two_users_rows, filter_name):
    owner, tokens, _other, now = two_users_rows
    arguments = {
        "none": {},
        "model": {"model": "gpt-4o-mini"},
        "token": {"token_id": tokens[0].pk},
        "ok": {"status": "ok"},
        "error": {"status": "error"},
        "ip": {"client_ip": "198.51.100.20"},
        "code": {"status": "502"},
        "ip_and_model": {"client_ip": "203.0.113.7", "model": "gpt-4o-mini"},
    }[filter_name]
    # A range that starts and ends inside minutes, hours and days: every kind of piece
    start = now - timedelta(days=2, hours=5, minutes=7, seconds=13)
    end = now - timedelta(hours=3, minutes=2, seconds=41)
    filters = LogFilters(start=start, end=end, user_id=owner.pk, **arguments)
    page_rows = [row for page in _walk(filters, size=50) for row in page]
    rows = RequestLog.objects.filter(pk__in=page_rows)
    totals = log_totals(filters=filters)
    assert totals.is_exact
    assert totals.requests == len(page_rows) > 0
    assert totals.prompt_tokens == sum(row.prompt_tokens for row in rows)
    assert totals.completion_tokens == sum(row.completion_tokens for row in rows)
    assert totals.cost == sum(row.cost for row in rows)


def test_raw_totals_say_when_they_are_bounded(two_users_rows, monkeypatch):
    # The admin's channel filter has no rollup: a bounded read of the newest rows
    owner, tokens, _other, now = two_users_rows
    for index in range(14):
        settle(
            tokens[0],
            cost=20 + index,
            created_at=now - timedelta(minutes=index),
            channel_id=4,
        )
    monkeypatch.setattr("logs.selectors.RAW_TOTALS_LIMIT", 10)
    filters = LogFilters(
        start=now - timedelta(days=5),
        end=now + timedelta(seconds=1),
        user_id=owner.pk,
        channel_id=4,
    )
    totals = log_totals(filters=filters)
    newest = list(
        RequestLog.objects.filter(user_id=owner.pk, channel_id=4).order_by("-created_at", "-id")[
            :10
        ]
    )
    assert not totals.is_exact
    assert totals.requests == 10
    assert totals.cost == sum(row.cost for row in newest)


HOUR = datetime(2026, 11, 20, 6, tzinfo=UTC)
# Offsets inside each hour: on the hour (a bucket boundary), on minute boundaries,
# mid-minute, and the last microsecond of the hour.
OFFSETS = (
    timedelta(0),
    timedelta(microseconds=1),
    timedelta(minutes=17),
    timedelta(minutes=29, seconds=31, microseconds=250_000),
    timedelta(minutes=45),
    timedelta(minutes=59, seconds=59, microseconds=999_999),
)


@pytest.fixture
def ip_rows():
    """Rows of one user over 10 hours at every kind of boundary; a stranger on the same IP."""
    rng = random.Random(23)
    owner, other = UserFactory(), UserFactory()
    tokens = [funded_user_with_token(owner, name="a"), funded_user_with_token(owner, name="b")]
    stranger = funded_user_with_token(other, name="other")
    for hour in range(10):
        for offset in OFFSETS:
            for _ in range(2):
                status = rng.choice(STATUSES)
                settle(
                    rng.choice(tokens),
                    cost=0 if status >= 400 else rng.randint(1, 5000),
                    created_at=HOUR + timedelta(hours=hour) + offset,
                    model=rng.choice(MODELS),
                    client_ip=rng.choice(IPS[:2]),
                    status_code=status,
                    prompt_tokens=rng.randint(0, 900),
                    completion_tokens=rng.randint(0, 400),
                )
        settle(stranger, cost=9, created_at=HOUR + timedelta(hours=hour), client_ip=IPS[0])
    return owner, tokens


# (start, end) as offsets from HOUR: both ends inside hours (mid-minute); both ends
# exactly on hours that hold rows (the start row counts, the end row does not); both
# ends on a row's timestamp inside an hour; one partial hour only.
IP_RANGES = (
    (timedelta(hours=1, minutes=12, seconds=7), timedelta(hours=8, minutes=31, seconds=3)),
    (timedelta(hours=2), timedelta(hours=7)),
    (timedelta(hours=1, minutes=17), timedelta(hours=8, minutes=45)),
    (timedelta(hours=3, minutes=17), timedelta(hours=3, minutes=59, seconds=59)),
    (timedelta(hours=3), timedelta(hours=3, minutes=59, seconds=59, microseconds=999_999)),
)


@pytest.mark.parametrize(
    "mix",
    [
        "ip+token",
        "ip+model",
        "ip+ok",
        "ip+error",
        "ip+429",
        "ip+token+model+ok",
        "ip+token+model+200",
    ],
)
def test_ip_mixed_totals_are_exact_from_the_ip_hours(ip_rows, mix, monkeypatch):
    owner, tokens = ip_rows
    ip, token, model = IPS[1], tokens[1], MODELS[0]
    arguments: dict = {"client_ip": ip}
    checks = [lambda row: row.client_ip == ip]
    if "token" in mix:
        arguments["token_id"] = token.pk
        checks.append(lambda row: row.token_id == token.pk)
    if "model" in mix:
        arguments["model"] = model
        checks.append(lambda row: row.model == model)
    status = mix.rsplit("+", 1)[1]
    if status in ("ok", "error", "429", "200"):
        arguments["status"] = status
        checks.append(
            {
                "ok": lambda row: row.status_code < 400,
                "error": lambda row: row.status_code >= 400,
                "429": lambda row: row.status_code == 429,
                "200": lambda row: row.status_code == 200,
            }[status]
        )

    def no_raw_totals(filters):
        raise AssertionError("answered by the bounded raw read")

    # The rollups answer: the bounded raw read is never used
    monkeypatch.setattr("logs.selectors._raw_totals", no_raw_totals)
    rows = list(RequestLog.objects.filter(user_id=owner.pk))
    for low, high in IP_RANGES:
        start, end = HOUR + low, HOUR + high
        expected = [
            row
            for row in rows
            if start <= row.created_at < end and all(check(row) for check in checks)
        ]
        filters = LogFilters(start=start, end=end, user_id=owner.pk, **arguments)
        totals = log_totals(filters=filters)
        assert totals.is_exact
        assert totals.requests == len(expected), (low, high)
        assert totals.prompt_tokens == sum(row.prompt_tokens for row in expected)
        assert totals.completion_tokens == sum(row.completion_tokens for row in expected)
        assert totals.cost == sum(row.cost for row in expected)
    # Over the widest range the mix selects some rows of the IP, not all of them
    widest = LogFilters(start=HOUR, end=HOUR + timedelta(hours=10), user_id=owner.pk, **arguments)
    every_ip_row = [row for row in rows if row.client_ip == ip]
    assert 0 < log_totals(filters=widest).requests < len(every_ip_row)
    # Rows exactly on the range's hour boundaries are in the data
    assert any(row.created_at == HOUR + IP_RANGES[1][0] for row in rows)
    assert any(row.created_at == HOUR + IP_RANGES[1][1] for row in rows)


def test_ip_totals_without_a_user_sum_every_users_rows(ip_rows):
    # The admin's view (no user): the stranger's rows on the same IP count too
    filters = LogFilters(
        start=HOUR + timedelta(minutes=30), end=HOUR + timedelta(hours=9), client_ip=IPS[0]
    )
    expected = RequestLog.objects.filter(
        client_ip=IPS[0], created_at__gte=filters.start, created_at__lt=filters.end
    )
    totals = log_totals(filters=filters)
    assert totals.requests == expected.count()
    assert totals.cost == sum(expected.values_list("cost", flat=True))
    assert expected.exclude(user_id=ip_rows[0].pk).exists()


def test_range_pieces_tile_the_range_with_the_coarsest_buckets():
    start = datetime(2026, 11, 3, 22, 58, 30, tzinfo=UTC)
    end = datetime(2026, 11, 6, 1, 2, 5, tzinfo=UTC)
    pieces = range_pieces(start, end)
    # Contiguous, in order, covering [start, end) exactly
    assert pieces[0][1] == start
    assert pieces[-1][2] == end
    assert all(a[2] == b[1] for a, b in itertools.pairwise(pieces))
    units = [unit for unit, _, _ in pieces]
    assert units == ["raw", "minute", "hour", "day", "hour", "minute", "raw"]
    assert pieces[3][1:] == (datetime(2026, 11, 4, tzinfo=UTC), datetime(2026, 11, 6, tzinfo=UTC))
