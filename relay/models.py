from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _


class Channel(models.Model):
    """An upstream that answers requests for some models, for some pricing groups.

    The API key is stored only encrypted (`relay.crypto`); the admin shows its last
    four characters. Status changes go through `relay.services`.
    """

    class Kind(models.TextChoices):
        OPENAI = "openai", _("OpenAI-compatible")
        ANTHROPIC = "anthropic", "Anthropic"
        MOCK = "mock", _("Mock (answers locally, for demos and tests)")

    class Status(models.TextChoices):
        ENABLED = "enabled", _("Enabled")
        DISABLED = "disabled", _("Disabled by an admin")
        AUTO_DISABLED = "auto_disabled", _("Disabled after repeated failures")

    name = models.CharField(_("name"), max_length=100, unique=True)
    kind = models.CharField(_("kind"), max_length=16, choices=Kind.choices, default=Kind.OPENAI)
    base_url = models.URLField(
        _("base url"),
        max_length=500,
        blank=True,
        help_text=_("Up to and including the version, e.g. https://api.openai.com/v1"),
    )
    encrypted_api_key = models.TextField(_("encrypted api key"), blank=True, editable=False)
    api_key_last4 = models.CharField(_("api key last4"), max_length=4, blank=True, editable=False)
    served_models = models.JSONField(
        _("served models"),
        default=list,
        blank=True,
        help_text=_('Public model names served, e.g. ["gpt-4o"].'),
    )
    model_mapping = models.JSONField(
        _("model mapping"),
        default=dict,
        blank=True,
        help_text=_('Public name → name sent upstream, e.g. {"gpt-4o": "gpt-4o-2024-08-06"}.'),
    )
    pricing_groups = models.ManyToManyField(
        "models_catalog.PricingGroup",
        verbose_name=_("pricing groups"),
        blank=True,
        related_name="channels",
        help_text=_("Groups whose users may be routed here; none selected = every group."),
    )
    priority = models.IntegerField(
        _("priority"), default=0, help_text=_("Higher first; lower priorities are fallbacks.")
    )
    weight = models.PositiveIntegerField(
        _("weight"), default=1, help_text=_("Share among equal priorities.")
    )
    connect_timeout_seconds = models.PositiveIntegerField(_("connect timeout seconds"), default=5)
    read_timeout_seconds = models.PositiveIntegerField(
        _("read timeout seconds"),
        default=300,
        help_text=_("Longest silence from the upstream before giving up."),
    )
    status = models.CharField(
        _("status"), max_length=16, choices=Status.choices, default=Status.ENABLED
    )
    consecutive_failures = models.PositiveIntegerField(
        _("consecutive failures"), default=0, editable=False
    )
    total_failures = models.PositiveBigIntegerField(_("total failures"), default=0, editable=False)
    # A status code or exception class, never upstream response content.
    last_error = models.CharField(_("last error"), max_length=200, blank=True, editable=False)
    last_failure_at = models.DateTimeField(
        _("last failure at"), null=True, blank=True, editable=False
    )
    disabled_at = models.DateTimeField(_("disabled at"), null=True, blank=True, editable=False)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)

    class Meta:
        verbose_name = _("channel")
        verbose_name_plural = _("channels")
        ordering = ["-priority", "name"]
        constraints = [
            models.CheckConstraint(condition=Q(weight__gt=0), name="relay_channel_weight_positive"),
            models.CheckConstraint(
                condition=Q(kind="mock") | ~Q(base_url=""),
                name="relay_channel_base_url_unless_mock",
            ),
        ]

    def __str__(self) -> str:
        return self.name
