"""Realistic request log rows in bulk, for benchmarks and demos.

Rows are written with PostgreSQL's COPY (psycopg's `cursor.copy`), or
`bulk_create` on SQLite, in time order (ids grow with time, as in production).
The books stay closed: each user gets one ledger credit of exactly what their
generated rows cost, and their account and tokens are charged that amount, so
`reconcile` finds no drift. The rollups are then rebuilt from the raw rows.
"""

import random
import secrets
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F
from django.utils import timezone
from django.utils.translation import gettext_noop

from accounts.locale import text_for
from accounts.models import Token, User
from accounts.tokens import key_display_parts, key_generate, key_hash
from billing.models import Account, LedgerEntry
from billing.services import account_credit
from logs.models import RequestLog
from logs.rollups import rollup_rebuild
from models_catalog.pricing import billed_cached_ratio, request_cost


@dataclass(frozen=True)
class GeneratedModel:
    """A model of the demo logs and its price (a `pricing.Price`, in the default group)."""

    name: str
    model_ratio: Decimal | None
    completion_ratio: Decimal
    weight: int
    price_per_call: int | None = None
    is_chat: bool = True
    cached_ratio: Decimal | None = None
    group_ratio: Decimal = Decimal(1)


MODELS = [
    GeneratedModel("gpt-4o-mini", Decimal("0.075"), Decimal("4"), 30, cached_ratio=Decimal("0.5")),
    GeneratedModel("gpt-4o", Decimal("1.25"), Decimal("4"), 12, cached_ratio=Decimal("0.5")),
    GeneratedModel(
        "claude-3-5-sonnet", Decimal("1.5"), Decimal("5"), 10, cached_ratio=Decimal("0.1")
    ),
    GeneratedModel("claude-3-5-haiku", Decimal("0.4"), Decimal("5"), 10),
    GeneratedModel("gemini-1.5-flash", Decimal("0.0375"), Decimal("4"), 12),
    GeneratedModel("deepseek-chat", Decimal("0.135"), Decimal("2"), 14),
    GeneratedModel("text-embedding-3-small", Decimal("0.01"), Decimal("1"), 10, is_chat=False),
    GeneratedModel("dall-e-3", None, Decimal("1"), 2, price_per_call=40_000),
]
# The share of a cached-priced model's answered requests that reuse a cached prompt.
CACHED_SHARE = 0.3
# Status codes with their weights: mostly answered, a few refusals and upstream errors.
STATUSES = [(200, 9600), (400, 80), (401, 20), (429, 150), (500, 50), (502, 70), (504, 30)]
ERROR_CODES = {
    400: "invalid_request",
    401: "invalid_api_key",
    429: "rate_limit_exceeded",
    500: "upstream_error",
    502: "upstream_error",
    504: "upstream_timeout",
}
COLUMNS = (
    "created_at",
    "request_id",
    "user_id",
    "token_id",
    "token_name",
    "model",
    "channel_id",
    "prompt_tokens",
    "completion_tokens",
    "cached_tokens",
    "cost",
    "model_ratio",
    "completion_ratio",
    "group_ratio",
    "cached_ratio",
    "price_per_call",
    "client_ip",
    "status_code",
    "error_code",
    "latency_ms",
    "first_token_ms",
    "is_stream",
    "usage_estimated",
)


@dataclass
class GeneratedTotals:
    rows: int = 0
    cost_by_user: dict[int, int] = field(default_factory=lambda: defaultdict(int))
    rows_by_user: dict[int, int] = field(default_factory=lambda: defaultdict(int))
    cost_by_token: dict[int, int] = field(default_factory=lambda: defaultdict(int))
    rows_by_token: dict[int, int] = field(default_factory=lambda: defaultdict(int))


@dataclass(frozen=True)
class _Tokenset:
    user_id: int
    tokens: list[tuple[int, str, list[str]]]  # (id, name, usual IPs)


def _random_ip(rng: random.Random) -> str:
    if rng.random() < 0.1:
        return f"2001:db8:{rng.randrange(65536):x}::{rng.randrange(1, 65536):x}"
    first = rng.choice((198, 203, 100, 172))
    return f"{first}.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"


def _token_create(*, user: User, name: str) -> Token:
    """A token for generated rows; its key is never shown (`tokens.services.token_create`,
    which checks the console's limits, is above billing)."""
    raw_key = key_generate()
    prefix, last4 = key_display_parts(raw_key)
    return Token.objects.create(
        user=user, name=name, key_hash=key_hash(raw_key), key_prefix=prefix, key_last4=last4
    )


def _tokens_for(user: User, *, count: int, rng: random.Random) -> _Tokenset:
    existing = list(Token.objects.filter(user=user).order_by("id")[:count])
    for index in range(len(existing), count):
        existing.append(_token_create(user=user, name=f"generated-{index + 1}"))
    tokens = [
        (token.pk, token.name, [_random_ip(rng) for _ in range(rng.randint(1, 3))])
        for token in existing
    ]
    return _Tokenset(user_id=user.pk, tokens=tokens)


def _rows(
    *,
    count: int,
    tokensets: list[_Tokenset],
    weights: list[float],
    start: datetime,
    end: datetime,
    rng: random.Random,
    totals: GeneratedTotals,
) -> Iterator[tuple]:
    run = secrets.token_hex(4)
    span = (end - start).total_seconds()
    models = MODELS
    model_weights = [model.weight for model in models]
    codes = [code for code, _ in STATUSES]
    code_weights = [weight for _, weight in STATUSES]
    moment = 0.0
    for index in range(count):
        # Poisson arrivals whose mean gap is what is left over the rows left: the last
        # row lands near `end`.
        mean_gap = max((span - moment) / (count - index), 1e-6)
        moment = min(moment + rng.expovariate(1 / mean_gap), span)
        # Milliseconds, like many upstream clocks: some rows share a timestamp.
        created_at = start + timedelta(milliseconds=int(moment * 1000))
        tokenset = rng.choices(tokensets, weights)[0]
        token_id, token_name, usual_ips = rng.choice(tokenset.tokens)
        ip = rng.choice(usual_ips) if rng.random() > 0.0005 else _random_ip(rng)
        model = rng.choices(models, model_weights)[0]
        status = rng.choices(codes, code_weights)[0]
        is_stream = model.is_chat and rng.random() < 0.6
        prompt = completion = cached = cost = 0
        latency = rng.randint(5, 400)
        first_token = None
        if status == 200:
            prompt = int(rng.lognormvariate(6.5, 1.1)) + 1
            completion = int(rng.lognormvariate(5.5, 1.0)) if model.is_chat else 0
            if model.price_per_call is not None:
                prompt = completion = 0
            if model.cached_ratio is not None and rng.random() < CACHED_SHARE:
                cached = int(prompt * rng.uniform(0.5, 0.95))
            cost = request_cost(
                model, prompt_tokens=prompt, completion_tokens=completion, cached_tokens=cached
            )
            latency = rng.randint(200, 2000) + completion * rng.randint(5, 25)
            first_token = rng.randint(150, 900) if is_stream else None
        totals.rows += 1
        totals.cost_by_user[tokenset.user_id] += cost
        totals.rows_by_user[tokenset.user_id] += 1
        totals.cost_by_token[token_id] += cost
        totals.rows_by_token[token_id] += 1
        yield (
            created_at,
            f"gen-{run}-{index}",
            tokenset.user_id,
            token_id,
            token_name,
            model.name,
            rng.randint(1, 4),
            prompt,
            completion,
            cached,
            cost,
            model.model_ratio or Decimal(0),
            model.completion_ratio,
            model.group_ratio,
            billed_cached_ratio(model),
            model.price_per_call,
            ip,
            status,
            ERROR_CODES.get(status, ""),
            latency,
            first_token,
            is_stream,
            False,
        )


def request_logs_generate(
    *,
    count: int,
    user: User,
    days: int = 30,
    tokens: int = 5,
    others: list[User] | None = None,
    other_share: float = 0.0,
    seed: int | None = None,
    end: datetime | None = None,
) -> GeneratedTotals:
    """Write `count` log rows over the last `days` days: `user`'s, and `others`' share.

    The rows' costs are credited to each user first, then charged, so balances end
    where they started and `reconcile` stays clean; the rollups are rebuilt after.
    """
    if days > settings.LOG_RETENTION_DAYS:
        raise ValueError(
            f"Rows older than LOG_RETENTION_DAYS ({settings.LOG_RETENTION_DAYS}) would be "
            "pruned at once; generate over fewer days."
        )
    rng = random.Random(seed)
    end = end or timezone.now()
    start = end - timedelta(days=days)
    tokensets = [_tokens_for(user, count=tokens, rng=rng)]
    weights = [1.0 - other_share if others else 1.0]
    for other in others or []:
        tokensets.append(_tokens_for(other, count=2, rng=rng))
        weights.append(other_share / len(others or [1]))
    totals = GeneratedTotals()
    rows = _rows(
        count=count,
        tokensets=tokensets,
        weights=weights,
        start=start,
        end=end,
        rng=rng,
        totals=totals,
    )
    if connection.vendor == "postgresql":
        _copy(rows)
    else:
        _bulk_create(rows)
    _books_close(totals)
    rollup_rebuild(since=start)
    return totals


def _copy(rows: Iterator[tuple]) -> None:
    table = RequestLog._meta.db_table
    with connection.cursor() as cursor:
        raw = cursor.cursor  # the psycopg cursor under Django's wrapper
        with raw.copy(f"COPY {table} ({', '.join(COLUMNS)}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)


def _bulk_create(rows: Iterator[tuple], batch_size: int = 2000) -> None:
    batch: list[RequestLog] = []
    for row in rows:
        batch.append(RequestLog(**dict(zip(COLUMNS, row, strict=True))))
        if len(batch) == batch_size:
            RequestLog.objects.bulk_create(batch)
            batch = []
    if batch:
        RequestLog.objects.bulk_create(batch)


def _books_close(totals: GeneratedTotals) -> None:
    """Credit each user what their generated rows cost, then charge it (net zero)."""
    run = secrets.token_hex(6)
    for user_id in sorted(totals.cost_by_user):
        cost = totals.cost_by_user[user_id]
        with transaction.atomic():
            if cost:
                account_credit(
                    user_id=user_id,
                    amount=cost,
                    kind=LedgerEntry.Kind.BONUS,
                    idempotency_key=f"generated-logs:{run}:{user_id}",
                    reason=text_for(user_id, gettext_noop("Covers generated demo request logs")),
                )
            # Account first, then tokens: the lock order of billing.services.
            Account.objects.filter(pk=user_id).update(
                balance=F("balance") - cost,
                used=F("used") + cost,
                request_count=F("request_count") + totals.rows_by_user[user_id],
            )
            for token in Token.objects.filter(user_id=user_id).order_by("pk"):
                if token.pk in totals.rows_by_token:
                    Token.objects.filter(pk=token.pk).update(
                        used=F("used") + totals.cost_by_token[token.pk],
                        request_count=F("request_count") + totals.rows_by_token[token.pk],
                    )
