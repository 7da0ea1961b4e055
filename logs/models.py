from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from core.money import format_usd_exact
from logs.data import RequestLogData

__all__ = [
    "AccountDay",
    "ChannelHour",
    "PlatformDay",
    "PrunedTokenUsage",
    "Refusal",
    "RequestLog",
    "RequestLogData",
    "TokenIp",
    "UsageDay",
    "UsageHour",
    "UsageIpHour",
    "UsageMinute",
]


class RequestLog(models.Model):
    """One relayed request: who, which model, how many tokens, what it cost.

    This table is also the usage journal of the books: an account's balance is
    the sum of its ledger entries minus the costs of the rows written since its
    last usage settlement entry. Rows are written by `billing.settlement.settle_many`
    in the same transaction that charges the cost, and never changed afterwards.
    Request and response content is never stored here.

    Built for 100M rows: every console filter has an index that ends in
    (-created_at, -id), so each page is one index range read in keyset order; on
    PostgreSQL a BRIN index on created_at (migration 0003) serves time-range scans;
    charts and totals read the rollup tables below. See logs/README.md.
    """

    created_at = models.DateTimeField(_("created at"))
    request_id = models.CharField(_("request id"), max_length=64, unique=True)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("user"),
        on_delete=models.PROTECT,
        related_name="request_logs",
    )
    token = models.ForeignKey(
        "accounts.Token",
        verbose_name=_("token"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="request_logs",
    )
    # Kept so the log still says which token it was after the token is deleted.
    token_name = models.CharField(_("token name"), max_length=100, blank=True)
    model = models.CharField(_("model"), max_length=200)
    # The relay's Channel lives in relay/; a plain integer keeps this journal
    # independent of channel deletions.
    channel_id = models.BigIntegerField(_("channel id"), null=True, blank=True)
    prompt_tokens = models.PositiveIntegerField(_("prompt tokens"), default=0)
    completion_tokens = models.PositiveIntegerField(_("completion tokens"), default=0)
    cached_tokens = models.PositiveIntegerField(_("cached tokens"), default=0)
    cost = models.BigIntegerField(_("cost"), help_text=_("Micro-USD charged for this request."))
    model_ratio = models.DecimalField(_("model ratio"), max_digits=12, decimal_places=6, default=1)
    completion_ratio = models.DecimalField(
        _("completion ratio"), max_digits=12, decimal_places=6, default=1
    )
    group_ratio = models.DecimalField(_("group ratio"), max_digits=12, decimal_places=6, default=1)
    # What each cached prompt token was billed at, as a share of an input token (1 when
    # the model has no cached price): with it a cached request's breakdown is exact.
    # NULL for a per-call price, and on rows written before it was recorded.
    cached_ratio = models.DecimalField(
        _("cached ratio"), max_digits=12, decimal_places=6, null=True, blank=True
    )
    price_per_call = models.BigIntegerField(_("price per call"), null=True, blank=True)
    # A price per unit (images, characters spoken, seconds of audio transcribed): what was
    # counted, in which unit, and the micro-USD per image / 1M characters / minute it was
    # billed at (`models_catalog.pricing.unit_cost`). Empty for tokens and calls.
    # Defaults in the database too: writers that name their columns (the log generator's
    # COPY) need not know these.
    unit = models.CharField(_("unit"), max_length=16, blank=True, default="", db_default="")
    unit_count = models.PositiveBigIntegerField(_("units"), default=0, db_default=0)
    unit_price = models.BigIntegerField(_("unit price"), null=True, blank=True)
    client_ip = models.GenericIPAddressField(_("client ip"))
    status_code = models.PositiveSmallIntegerField(_("status code"), default=200)
    error_code = models.CharField(_("error code"), max_length=64, blank=True)
    latency_ms = models.PositiveIntegerField(_("latency ms"), default=0)
    first_token_ms = models.PositiveIntegerField(_("first token ms"), null=True, blank=True)
    is_stream = models.BooleanField(_("is stream"), default=False)
    usage_estimated = models.BooleanField(_("usage estimated"), default=False)

    class Meta:
        verbose_name = _("request log")
        verbose_name_plural = _("request logs")
        indexes = [
            models.Index(fields=["user", "-created_at", "-id"], name="logs_requestlog_user_recent"),
            models.Index(
                fields=["user", "token", "-created_at", "-id"], name="logs_requestlog_user_token"
            ),
            models.Index(
                fields=["user", "model", "-created_at", "-id"], name="logs_requestlog_user_model"
            ),
            models.Index(
                fields=["user", "client_ip", "-created_at", "-id"], name="logs_requestlog_user_ip"
            ),
            models.Index(
                fields=["user", "status_code", "-created_at", "-id"],
                name="logs_requestlog_user_status",
            ),
            # Errors are rare: "status: error" reads this small index in page order.
            models.Index(
                fields=["user", "-created_at", "-id"],
                condition=Q(status_code__gte=400),
                name="logs_requestlog_user_errors",
            ),
            # The admin's view of everyone, newest first, and its channel filter.
            models.Index(fields=["-created_at", "-id"], name="logs_requestlog_recent"),
            models.Index(
                fields=["channel_id", "-created_at", "-id"], name="logs_requestlog_channel"
            ),
            models.Index(fields=["token", "id"], name="logs_requestlog_token"),
        ]
        constraints = [
            models.CheckConstraint(condition=Q(cost__gte=0), name="logs_requestlog_cost_nonneg"),
        ]

    def __str__(self) -> str:
        return f"{self.request_id} {self.model} {format_usd_exact(self.cost)}"


class Refusal(models.Model):
    """Requests of one token refused with one error code within one second.

    A request the relay refuses after it knows the token (unknown model, model not
    allowed, quota or balance exhausted, rate limited, bad body) is never forwarded
    and charges nothing; it is counted here so that a customer debugging a 429 sees
    it. One row per (token, error code, second) carries how many refusals it stands
    for, so a flood adds at most one row per second and code. These are not requests:
    balances, `request_count`, the request log and the usage rollups never see them.
    Never any content: the model name asked for is the only part of the body kept.
    """

    second = models.DateTimeField(_("second"))
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("user"),
        on_delete=models.CASCADE,
        related_name="refusals",
    )
    token = models.ForeignKey(
        "accounts.Token",
        verbose_name=_("token"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    token_name = models.CharField(_("token name"), max_length=100, blank=True)
    status_code = models.PositiveSmallIntegerField(_("status code"))
    error_code = models.CharField(_("error code"), max_length=64)
    # The last model asked for in this second, as the client spelled it (cut short).
    model = models.CharField(_("model"), max_length=200, blank=True)
    client_ip = models.GenericIPAddressField(_("client ip"))
    count = models.PositiveIntegerField(_("count"), default=1)

    class Meta:
        verbose_name = _("refusal")
        verbose_name_plural = _("refusals")
        indexes = [
            models.Index(fields=["user", "-second", "-id"], name="logs_refusal_user_recent"),
            models.Index(fields=["second"], name="logs_refusal_second"),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["token", "error_code", "second"], name="logs_refusal_one_per_second"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.second:%Y-%m-%d %H:%M:%S} {self.error_code} x{self.count}"


class UsageBucket(models.Model):
    """Requests, tokens and cost of one (user, token, model, status code) per time bucket.

    Rows are upserted (`requests = requests + 1`, ...) in the same statement that
    settles a request, so they always equal the aggregates of the raw rows; charts
    and totals read them instead of scanning the log. `token_id` is a plain integer
    (0 for none) so a deleted token neither breaks the key nor merges buckets.
    """

    user_id = models.BigIntegerField(_("user id"))
    token_id = models.BigIntegerField(_("token id"), default=0)
    model = models.CharField(_("model"), max_length=200)
    status_code = models.PositiveSmallIntegerField(_("status code"), default=200)
    bucket = models.DateTimeField(_("bucket"))
    requests = models.BigIntegerField(_("requests"), default=0)
    prompt_tokens = models.BigIntegerField(_("prompt tokens"), default=0)
    completion_tokens = models.BigIntegerField(_("completion tokens"), default=0)
    cost = models.BigIntegerField(_("cost"), default=0)

    class Meta:
        abstract = True

    def __str__(self) -> str:
        return f"{self.user_id} {self.model} {self.bucket:%Y-%m-%d %H:%M}"


def _bucket_index(table: str) -> list[models.Index]:
    # Retention deletes old buckets in batches by time.
    return [models.Index(fields=["bucket"], name=f"{table}_bucket")]


def _bucket_key(table: str) -> list[models.BaseConstraint]:
    # user_id, bucket first: every reader asks for one user's time range.
    return [
        models.UniqueConstraint(
            fields=["user_id", "bucket", "token_id", "model", "status_code"], name=f"{table}_key"
        )
    ]


class UsageMinute(UsageBucket):
    """Per-minute usage: RPM / TPM charts and the edges of a filtered range's totals."""

    class Meta:
        verbose_name = _("usage minute")
        verbose_name_plural = _("usage minutes")
        constraints = _bucket_key("logs_usageminute")
        indexes = _bucket_index("logs_usageminute")


class UsageHour(UsageBucket):
    """Per-hour usage: totals of long ranges."""

    class Meta:
        verbose_name = _("usage hour")
        verbose_name_plural = _("usage hours")
        constraints = _bucket_key("logs_usagehour")
        indexes = _bucket_index("logs_usagehour")


class UsageDay(UsageBucket):
    """Per-day (UTC) usage, kept after retention prunes the hours (the charts' local days
    are summed from hours: logs.selectors.usage_per_local_day)."""

    class Meta:
        verbose_name = _("usage day")
        verbose_name_plural = _("usage days")
        constraints = _bucket_key("logs_usageday")
        indexes = _bucket_index("logs_usageday")


class UsageIpHour(models.Model):
    """Requests, tokens and cost of one user's requests from one IP address per hour.

    Keyed like the other buckets plus the address (user, IP, hour, token, model,
    status code), so the totals of an IP filter combined with token, model or status
    read these rows too (an address can carry millions of rows). The key starts with
    (user_id, client_ip, bucket): every reader asks for one address's time range.
    Upserted in the settle statement like the other rollups.
    """

    user_id = models.BigIntegerField(_("user id"))
    client_ip = models.GenericIPAddressField(_("client ip"))
    bucket = models.DateTimeField(_("bucket"))
    token_id = models.BigIntegerField(_("token id"), default=0)
    model = models.CharField(_("model"), max_length=200)
    status_code = models.PositiveSmallIntegerField(_("status code"), default=200)
    requests = models.BigIntegerField(_("requests"), default=0)
    prompt_tokens = models.BigIntegerField(_("prompt tokens"), default=0)
    completion_tokens = models.BigIntegerField(_("completion tokens"), default=0)
    cost = models.BigIntegerField(_("cost"), default=0)

    class Meta:
        verbose_name = _("usage ip hour")
        verbose_name_plural = _("usage ip hours")
        constraints = [
            models.UniqueConstraint(
                fields=["user_id", "client_ip", "bucket", "token_id", "model", "status_code"],
                name="logs_usageiphour_key",
            ),
        ]
        indexes = _bucket_index("logs_usageiphour")

    def __str__(self) -> str:
        return f"{self.user_id} from {self.client_ip} {self.model} {self.bucket:%Y-%m-%d %H:00}"


class TokenIp(models.Model):
    """Each IP address a token was used from, and the log row of its first use.

    The console highlights the row whose id is `first_log_id` when the address is
    new on a token that was used before (a leaked key shows up as one).
    """

    token_id = models.BigIntegerField(_("token id"))
    client_ip = models.GenericIPAddressField(_("client ip"))
    first_log_id = models.BigIntegerField(_("first log id"), unique=True)
    first_seen = models.DateTimeField(_("first seen"))
    last_seen = models.DateTimeField(_("last seen"))
    requests = models.BigIntegerField(_("requests"), default=0)
    # False for a token's very first address: only later new addresses are news.
    is_new_on_token = models.BooleanField(_("is new on token"), default=True)
    # Set when the "new IP" email is claimed for sending, so it goes out once.
    notified_at = models.DateTimeField(_("notified at"), null=True, blank=True)

    class Meta:
        verbose_name = _("token ip")
        verbose_name_plural = _("token ips")
        constraints = [
            models.UniqueConstraint(fields=["token_id", "client_ip"], name="logs_tokenip_key"),
        ]

    def __str__(self) -> str:
        return f"token {self.token_id} from {self.client_ip}"


class ChannelHour(models.Model):
    """Attempts and failed attempts of one relay channel per hour (admin error rates).

    A settled request counts one attempt on its channel; an attempt that failed and
    made the relay move on counts one attempt and one failure.
    """

    channel_id = models.BigIntegerField(_("channel id"))
    bucket = models.DateTimeField(_("bucket"))
    requests = models.BigIntegerField(_("requests"), default=0)
    failures = models.BigIntegerField(_("failures"), default=0)

    class Meta:
        verbose_name = _("channel hour")
        verbose_name_plural = _("channel hours")
        constraints = [
            models.UniqueConstraint(fields=["channel_id", "bucket"], name="logs_channelhour_key"),
        ]

    def __str__(self) -> str:
        return f"channel {self.channel_id} {self.bucket:%Y-%m-%d %H:00}"


class PlatformDay(models.Model):
    """Requests, errors, tokens and cost of one model on one channel for one pricing group
    per UTC day: the operator's dashboard (spend by day, model, channel and group).

    The user rollups are keyed by user first, so a platform-wide sum over them reads every
    account's rows; this table has a few hundred rows a day in all. `channel_id` 0 is a
    request no channel answered (every channel failed); `pricing_group_id` 0 the default
    group (a user without one): both plain integers, like the other rollups, so deleting a
    channel or a group changes no key. The group is the user's when the request settled.
    Upserted in the settle statement like the other rollups; kept like the day rollups.
    """

    bucket = models.DateTimeField(_("bucket"))
    model = models.CharField(_("model"), max_length=200)
    channel_id = models.BigIntegerField(_("channel id"), default=0)
    pricing_group_id = models.BigIntegerField(_("pricing group id"), default=0)
    requests = models.BigIntegerField(_("requests"), default=0)
    # Requests answered with a status of 400 or more (the relay's or the upstream's).
    errors = models.BigIntegerField(_("errors"), default=0)
    prompt_tokens = models.BigIntegerField(_("prompt tokens"), default=0)
    completion_tokens = models.BigIntegerField(_("completion tokens"), default=0)
    cost = models.BigIntegerField(_("cost"), default=0)

    class Meta:
        verbose_name = _("platform day")
        verbose_name_plural = _("platform days")
        constraints = [
            # bucket first: every reader asks for a range of days.
            models.UniqueConstraint(
                fields=["bucket", "model", "channel_id", "pricing_group_id"],
                name="logs_platformday_key",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.bucket:%Y-%m-%d} {self.model} channel {self.channel_id}"


class AccountDay(models.Model):
    """Requests, errors, tokens and cost of one account per UTC day (the top accounts).

    `UsageDay` has the same sums split by token, model and status code; the dashboard's
    ranking of every account over 90 days reads this, one row per account and day.
    Upserted in the settle statement like the other rollups; kept like the day rollups.
    """

    bucket = models.DateTimeField(_("bucket"))
    user_id = models.BigIntegerField(_("user id"))
    requests = models.BigIntegerField(_("requests"), default=0)
    errors = models.BigIntegerField(_("errors"), default=0)
    prompt_tokens = models.BigIntegerField(_("prompt tokens"), default=0)
    completion_tokens = models.BigIntegerField(_("completion tokens"), default=0)
    cost = models.BigIntegerField(_("cost"), default=0)

    class Meta:
        verbose_name = _("account day")
        verbose_name_plural = _("account days")
        constraints = [
            models.UniqueConstraint(fields=["bucket", "user_id"], name="logs_accountday_key"),
        ]

    def __str__(self) -> str:
        return f"{self.user_id} {self.bucket:%Y-%m-%d}"


class PrunedTokenUsage(models.Model):
    """What a token spent in request log rows that retention deleted.

    `Token.used` must still equal the token's request costs once old rows are gone,
    so retention adds each deleted batch's costs here in the same transaction as the
    DELETE; `billing.selectors.books_drift` counts both.
    """

    token_id = models.BigIntegerField(_("token id"), unique=True)
    requests = models.BigIntegerField(_("requests"), default=0)
    cost = models.BigIntegerField(_("cost"), default=0)

    class Meta:
        verbose_name = _("pruned token usage")
        verbose_name_plural = _("pruned token usages")

    def __str__(self) -> str:
        return f"token {self.token_id}: {self.cost} pruned"
