from decimal import Decimal
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MinValueValidator
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from core.times import format_in_zone

from .pricing import image_price_table_problem


def RatioField(**options: Any) -> models.DecimalField:
    """Return a ratio field: an exact decimal with 6 places, as one-api's tables have."""
    return models.DecimalField(max_digits=12, decimal_places=6, **options)


# An account's requests in flight on a line that sets nothing else: the help pages' "100
# concurrent by default, contact support for higher".
DEFAULT_CONCURRENCY_LIMIT = 100


def _exactly_one_set(*fields: str) -> Q:
    """Return the condition that exactly one of `fields` is not NULL."""
    condition = Q()
    for chosen in fields:
        one = Q(**{f"{chosen}__isnull": False})
        for other in fields:
            if other != chosen:
                one &= Q(**{f"{other}__isnull": True})
        condition |= one
    return condition


class PricingGroup(models.Model):
    """A line (what the help pages call default, training, enterprise): a set of customers who
    pay the same `group_ratio` on top of model prices, may call the same models, and
    share default account limits.

    Exactly one group is the default: users without a group, and anonymous
    visitors of the pricing page, are priced by it. `group_ratio` changes only
    through `services.price_change_record`, which keeps its history. A line allows
    every model (`allows_all_models`) or only its `catalog_models`. Its limits are each
    account's, not shared by the line's accounts: `concurrency_limit` requests in
    flight, `rpm_limit` requests and `tpm_limit` tokens in any 60 seconds (empty: no
    limit). An admin may override them per account (`accounts.User`); the relay
    enforces them in `relay.limits`.
    """

    name = models.SlugField(_("name"), max_length=64, unique=True)
    display_name = models.CharField(_("display name"), max_length=100)
    description = models.CharField(_("description"), max_length=300, blank=True)
    group_ratio = models.DecimalField(_("group ratio"), max_digits=12, decimal_places=6, default=1)
    is_default = models.BooleanField(_("is default"), default=False)
    allows_all_models = models.BooleanField(
        _("allows every model"),
        default=True,
        help_text=_("Unticked, the line's customers may call only the models chosen below."),
    )
    catalog_models: "models.ManyToManyField[CatalogModel, Any]" = models.ManyToManyField(
        "CatalogModel",
        verbose_name=_("models"),
        blank=True,
        related_name="lines",
        help_text=_("The models the line may call when it does not allow every model."),
    )
    concurrency_limit = models.PositiveIntegerField(
        _("concurrency limit"),
        default=DEFAULT_CONCURRENCY_LIMIT,
        validators=[MinValueValidator(1)],
        help_text=_("Requests one account may have in flight at once."),
    )
    rpm_limit = models.PositiveIntegerField(
        _("requests per minute"),
        null=True,
        blank=True,
        validators=[MinValueValidator(1)],
        help_text=_("Requests one account may start in any 60 seconds; empty for no limit."),
    )
    tpm_limit = models.PositiveIntegerField(
        _("tokens per minute"),
        null=True,
        blank=True,
        validators=[MinValueValidator(1)],
        help_text=_(
            "Tokens (prompt + completion) one account may use in any 60 seconds; "
            "empty for no limit. The enterprise line: 30000000."
        ),
    )
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)

    class Meta:
        verbose_name = _("pricing group")
        verbose_name_plural = _("pricing groups")
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(
                fields=["is_default"],
                condition=Q(is_default=True),
                name="models_catalog_one_default_group",
            ),
            models.CheckConstraint(
                condition=Q(group_ratio__gt=0), name="models_catalog_group_ratio_positive"
            ),
            models.CheckConstraint(
                condition=Q(concurrency_limit__gte=1)
                & (Q(rpm_limit__isnull=True) | Q(rpm_limit__gte=1))
                & (Q(tpm_limit__isnull=True) | Q(tpm_limit__gte=1)),
                name="models_catalog_line_limits_positive",
            ),
        ]

    def __str__(self) -> str:
        return self.display_name or self.name


class Vendor(models.Model):
    """Who makes a model (OpenAI, Anthropic, ...): a filter on the pricing page and a scope
    of price-change subscriptions."""

    name = models.SlugField(_("name"), max_length=64, unique=True)
    display_name = models.CharField(_("display name"), max_length=100)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)

    class Meta:
        verbose_name = _("vendor")
        verbose_name_plural = _("vendors")
        ordering = ["display_name"]

    def __str__(self) -> str:
        return self.display_name


class CatalogModel(models.Model):
    """A model customers can call, priced in exactly one unit.

    Per-token models have `model_ratio` (1.0 = $2 per 1M input tokens), a
    `completion_ratio` for output tokens and an optional `cached_ratio` for cached
    input tokens; per-call models have `price_per_call` in micro-USD instead; image
    models may have `price_per_image` (a table by size and quality), speech models
    `price_per_million_characters` and transcription models `price_per_minute`
    (`models_catalog.pricing`). Prices change only through
    `services.price_change_record`, never `.save()`.
    """

    class Kind(models.TextChoices):
        CHAT = "chat", _("Chat")
        EMBEDDING = "embedding", _("Embedding")
        IMAGE = "image", _("Image")
        AUDIO = "audio", _("Audio")
        VIDEO = "video", _("Video")
        MUSIC = "music", _("Music")

    # Kinds served through the vendors' asynchronous task APIs, which the relay does not
    # offer yet: such models are neither listed in `/v1/models` nor callable, and the
    # pricing page marks them "coming soon".
    COMING_SOON_KINDS = frozenset({Kind.VIDEO.value, Kind.MUSIC.value})

    # The field whose price makes a model's unit: exactly one of them is set.
    UNIT_FIELDS = (
        "model_ratio",
        "price_per_call",
        "price_per_image",
        "price_per_million_characters",
        "price_per_minute",
    )
    PRICE_FIELDS = (
        "model_ratio",
        "completion_ratio",
        "cached_ratio",
        "price_per_call",
        "price_per_image",
        "price_per_million_characters",
        "price_per_minute",
    )

    name = models.CharField(_("name"), max_length=128, unique=True)
    vendor = models.ForeignKey(
        Vendor, verbose_name=_("vendor"), on_delete=models.PROTECT, related_name="models"
    )
    kind = models.CharField(
        _("kind"),
        max_length=16,
        choices=Kind.choices,
        default=Kind.CHAT,
        help_text=_(
            "What the model makes, which decides the endpoint it is called at. Video and "
            "music models are shown as coming soon and cannot be called yet."
        ),
    )
    context_window = models.PositiveIntegerField(
        _("context window"),
        null=True,
        blank=True,
        help_text=_("Tokens; empty where it does not apply."),
    )
    description = models.CharField(_("description"), max_length=300, blank=True)
    is_enabled = models.BooleanField(_("is enabled"), default=True)
    model_ratio = RatioField(verbose_name=_("model ratio"), null=True, blank=True)
    completion_ratio = models.DecimalField(
        _("completion ratio"), max_digits=12, decimal_places=6, default=Decimal(1)
    )
    completion_reserve = models.PositiveIntegerField(
        _("completion reserve"),
        null=True,
        blank=True,
        help_text=_(
            "Completion tokens a request's hold assumes when it sets no max_tokens; "
            "empty for the relay's default (4,096). The answer is charged in full either way."
        ),
    )
    cached_ratio = models.DecimalField(
        _("cached ratio"),
        max_digits=12,
        decimal_places=6,
        null=True,
        blank=True,
        help_text=_("Share of the input price paid for cached input tokens (e.g. 0.5)."),
    )
    price_per_call = models.BigIntegerField(
        _("price per call"),
        null=True,
        blank=True,
        help_text=_("Micro-USD per call (1 USD = 1,000,000)."),
    )
    price_per_image = models.JSONField(
        _("price per image"),
        null=True,
        blank=True,
        help_text=_(
            'Micro-USD per image as JSON: "*" (required) prices any image; entries named by '
            'a size ("1024x1792"), a quality, or both ("quality size") price those images, '
            "the most specific first."
        ),
    )
    price_per_million_characters = models.BigIntegerField(
        _("price per 1M characters"),
        null=True,
        blank=True,
        help_text=_("Micro-USD per 1M characters of text to speak (/v1/audio/speech)."),
    )
    price_per_minute = models.BigIntegerField(
        _("price per minute"),
        null=True,
        blank=True,
        help_text=_(
            "Micro-USD per minute of audio transcribed or translated, measured from the "
            "file and billed by the second."
        ),
    )
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)

    class Meta:
        verbose_name_plural = _("models")
        ordering = ["vendor__display_name", "name"]
        verbose_name = _("model")
        permissions = [("change_prices", "Can change prices and multipliers")]
        constraints = [
            models.CheckConstraint(
                condition=_exactly_one_set(
                    "model_ratio",
                    "price_per_call",
                    "price_per_image",
                    "price_per_million_characters",
                    "price_per_minute",
                ),
                name="models_catalog_priced_in_one_unit",
            ),
            models.CheckConstraint(
                condition=Q(model_ratio__isnull=True) | Q(model_ratio__gt=0),
                name="models_catalog_model_ratio_positive",
            ),
            models.CheckConstraint(
                condition=Q(completion_ratio__gt=0),
                name="models_catalog_completion_ratio_positive",
            ),
            models.CheckConstraint(
                condition=Q(cached_ratio__isnull=True) | Q(cached_ratio__gt=0),
                name="models_catalog_cached_ratio_positive",
            ),
            models.CheckConstraint(
                condition=Q(price_per_call__isnull=True) | Q(price_per_call__gt=0),
                name="models_catalog_price_per_call_positive",
            ),
            models.CheckConstraint(
                condition=(
                    Q(price_per_million_characters__isnull=True)
                    | Q(price_per_million_characters__gt=0)
                )
                & (Q(price_per_minute__isnull=True) | Q(price_per_minute__gt=0)),
                name="models_catalog_unit_prices_positive",
            ),
        ]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        super().clean()
        if self.price_per_image is not None:
            problem = image_price_table_problem(self.price_per_image)
            if problem is not None:
                message, params = problem
                raise ValidationError(
                    {
                        "price_per_image": gettext("The price per image %(problem)s.")
                        % {"problem": gettext(message) % params}
                    }
                )

    @property
    def is_per_call(self) -> bool:
        return self.price_per_call is not None

    @property
    def is_coming_soon(self) -> bool:
        """Whether the model's kind needs an endpoint the relay does not offer yet."""
        return self.kind in self.COMING_SOON_KINDS


class PriceChangeBatch(models.Model):
    """Price changes made within one window, announced together and emailed together.

    The first change opens a batch; changes until `closes_at` join it. When it closes,
    one email per matching subscriber lists the batch's changes in their scope.
    """

    class Status(models.TextChoices):
        OPEN = "open", _("Collecting changes")
        CLOSED = "closed", _("Emails being sent")

    status = models.CharField(
        _("status"), max_length=16, choices=Status.choices, default=Status.OPEN
    )
    closes_at = models.DateTimeField(_("closes at"))
    closed_at = models.DateTimeField(_("closed at"), null=True, blank=True)
    # Set once every subscriber has an email row: until then the resume task fans out again.
    fanned_out_at = models.DateTimeField(_("fanned out at"), null=True, blank=True)
    announcement = models.OneToOneField(
        "announcements.Announcement",
        verbose_name=_("announcement"),
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="price_change_batch",
    )
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)

    class Meta:
        verbose_name = _("price change batch")
        ordering = ["-created_at"]
        verbose_name_plural = _("price change batches")
        constraints = [
            # Every change joins the one open batch, so there is never a second.
            models.UniqueConstraint(
                fields=["status"],
                condition=Q(status="open"),
                name="models_catalog_one_open_batch",
            ),
        ]

    def __str__(self) -> str:
        return gettext("Price change batch #%(number)s") % {"number": self.pk}


class PriceChange(models.Model):
    """One change of a model's or a group's prices: old → new, who, when, why.

    Rows are history: never edited after they are applied (a scheduled change is
    applied once, or cancelled). `old_*` is what the target cost when the change
    was applied (or, while scheduled, when it was scheduled).
    """

    class Status(models.TextChoices):
        SCHEDULED = "scheduled", _("Scheduled")
        APPLIED = "applied", _("Applied")
        CANCELLED = "cancelled", _("Cancelled")

    class Source(models.TextChoices):
        FORM = "form", _("Admin form")
        LIST = "list", _("Admin list")
        IMPORT = "import", _("Import")
        CATALOG = "catalog", _("Demo catalog")

    catalog_model = models.ForeignKey(
        CatalogModel,
        verbose_name=_("catalog model"),
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="price_changes",
    )
    pricing_group = models.ForeignKey(
        PricingGroup,
        verbose_name=_("pricing group"),
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="price_changes",
    )
    batch = models.ForeignKey(
        PriceChangeBatch,
        verbose_name=_("batch"),
        on_delete=models.PROTECT,
        null=True,
        related_name="changes",
    )
    old_model_ratio = RatioField(verbose_name=_("old model ratio"), null=True, blank=True)
    new_model_ratio = RatioField(verbose_name=_("new model ratio"), null=True, blank=True)
    old_completion_ratio = models.DecimalField(
        _("old completion ratio"), max_digits=12, decimal_places=6, null=True, blank=True
    )
    new_completion_ratio = models.DecimalField(
        _("new completion ratio"), max_digits=12, decimal_places=6, null=True, blank=True
    )
    old_cached_ratio = RatioField(verbose_name=_("old cached ratio"), null=True, blank=True)
    new_cached_ratio = RatioField(verbose_name=_("new cached ratio"), null=True, blank=True)
    old_price_per_call = models.BigIntegerField(_("old price per call"), null=True, blank=True)
    new_price_per_call = models.BigIntegerField(_("new price per call"), null=True, blank=True)
    old_price_per_image = models.JSONField(_("old price per image"), null=True, blank=True)
    new_price_per_image = models.JSONField(_("new price per image"), null=True, blank=True)
    old_price_per_million_characters = models.BigIntegerField(
        _("old price per 1M characters"), null=True, blank=True
    )
    new_price_per_million_characters = models.BigIntegerField(
        _("new price per 1M characters"), null=True, blank=True
    )
    old_price_per_minute = models.BigIntegerField(_("old price per minute"), null=True, blank=True)
    new_price_per_minute = models.BigIntegerField(_("new price per minute"), null=True, blank=True)
    old_group_ratio = RatioField(verbose_name=_("old group ratio"), null=True, blank=True)
    new_group_ratio = RatioField(verbose_name=_("new group ratio"), null=True, blank=True)
    reason = models.CharField(_("reason"), max_length=500)
    source = models.CharField(_("source"), max_length=16, choices=Source.choices)
    changed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("changed by"),
        on_delete=models.PROTECT,
        null=True,
        related_name="+",
    )
    status = models.CharField(_("status"), max_length=16, choices=Status.choices)
    effective_at = models.DateTimeField(_("effective at"))
    applied_at = models.DateTimeField(_("applied at"), null=True, blank=True)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)

    class Meta:
        verbose_name = _("price change")
        verbose_name_plural = _("price changes")
        ordering = ["-effective_at", "-pk"]
        indexes = [models.Index(fields=["status", "effective_at"])]
        constraints = [
            models.CheckConstraint(
                condition=(
                    Q(catalog_model__isnull=False, pricing_group__isnull=True)
                    | Q(catalog_model__isnull=True, pricing_group__isnull=False)
                ),
                name="models_catalog_change_of_a_model_or_a_group",
            ),
            models.CheckConstraint(
                condition=~Q(reason=""), name="models_catalog_change_has_a_reason"
            ),
        ]

    def __str__(self) -> str:
        # In the reader's zone (the admin's), naming it.
        when = format_in_zone(self.effective_at)
        return f"{self.target_name}: {self.get_status_display()} {when}"

    @property
    def target_name(self) -> str:
        if self.catalog_model_id:
            return self.catalog_model.name  # type: ignore[union-attr]
        return gettext("group %(name)s") % {"name": self.pricing_group.name}  # type: ignore[union-attr]


class PriceChangeSubscription(models.Model):
    """A user's wish to be emailed about price changes: every model, vendors or models."""

    class Scope(models.TextChoices):
        ALL = "all", _("All models")
        VENDORS = "vendors", _("Chosen vendors")
        MODELS = "models", _("Chosen models")

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL,
        verbose_name=_("user"),
        on_delete=models.CASCADE,
        related_name="price_change_subscription",
    )
    scope = models.CharField(_("scope"), max_length=16, choices=Scope.choices, default=Scope.ALL)
    vendors = models.ManyToManyField(
        Vendor, verbose_name=_("vendors"), blank=True, related_name="+"
    )
    catalog_models = models.ManyToManyField(
        CatalogModel, verbose_name=_("catalog models"), blank=True, related_name="+"
    )
    is_active = models.BooleanField(_("is active"), default=True)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)

    class Meta:
        verbose_name = _("price change subscription")
        verbose_name_plural = _("price change subscriptions")
        indexes = [models.Index(fields=["is_active", "scope"])]

    def __str__(self) -> str:
        return f"{self.user} ({self.get_scope_display()})"


class PriceChangeEmail(models.Model):
    """One email of one batch to one subscriber: the row that makes sending idempotent.

    A worker claims rows (status `sending`, `claimed_at`), sends, then marks each row
    `sent`. A row claimed by a worker that died is claimable again after the lease,
    so nobody is lost; only a message whose SMTP send finished but whose row was not
    yet marked can go out twice.
    """

    class Status(models.TextChoices):
        PENDING = "pending", _("Pending")
        SENDING = "sending", _("Sending")
        SENT = "sent", _("Sent")
        SKIPPED = "skipped", _("Skipped (unsubscribed or out of scope)")
        FAILED = "failed", _("Failed")

    batch = models.ForeignKey(
        PriceChangeBatch, verbose_name=_("batch"), on_delete=models.CASCADE, related_name="emails"
    )
    subscription = models.ForeignKey(
        PriceChangeSubscription,
        verbose_name=_("subscription"),
        on_delete=models.CASCADE,
        related_name="emails",
    )
    status = models.CharField(
        _("status"), max_length=16, choices=Status.choices, default=Status.PENDING
    )
    attempts = models.PositiveIntegerField(_("attempts"), default=0)
    claimed_at = models.DateTimeField(_("claimed at"), null=True, blank=True)
    sent_at = models.DateTimeField(_("sent at"), null=True, blank=True)
    last_error = models.CharField(_("last error"), max_length=300, blank=True)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)

    class Meta:
        verbose_name = _("price change email")
        verbose_name_plural = _("price change emails")
        constraints = [
            models.UniqueConstraint(
                fields=["batch", "subscription"], name="models_catalog_one_email_per_batch"
            ),
        ]
        indexes = [models.Index(fields=["batch", "status"])]

    def __str__(self) -> str:
        return gettext("Batch #%(batch)s → subscription #%(subscription)s: %(status)s") % {
            "batch": self.batch_id,
            "subscription": self.subscription_id,
            "status": self.get_status_display(),
        }
