from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from .overrides import validate_header_overrides, validate_parameter_overrides


class Channel(models.Model):
    """An upstream that answers requests for some models, for some pricing groups.

    Its API keys (several are used in turn, `relay.keys`) are stored only encrypted,
    one per line in one secret (`relay.crypto`); the admin shows each one's last four
    characters. Status changes go through `relay.services`.
    """

    class Kind(models.TextChoices):
        OPENAI = "openai", _("OpenAI-compatible")
        ANTHROPIC = "anthropic", "Anthropic"
        GEMINI = "gemini", _("Google Gemini (native API)")
        AZURE = "azure", "Azure OpenAI"
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
        help_text=_(
            "Up to and including the version, e.g. https://api.openai.com/v1; Gemini: "
            "https://generativelanguage.googleapis.com/v1beta; Azure OpenAI: "
            "https://RESOURCE.openai.azure.com/openai"
        ),
    )
    api_version = models.CharField(
        _("API version"),
        max_length=32,
        blank=True,
        help_text=_(
            "Azure OpenAI only: the <code>api-version</code> every request carries, "
            "e.g. 2024-10-21."
        ),
    )
    # The channel's API keys, one per line, encrypted as one secret (a channel stored
    # with a single key before keys were several reads as that one key).
    encrypted_api_key = models.TextField(_("encrypted api keys"), blank=True, editable=False)
    # The last four characters of each key, in order: all the admin ever shows of them.
    api_key_endings = models.JSONField(
        _("api key endings"), default=list, blank=True, editable=False
    )
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
    header_overrides = models.JSONField(
        _("header overrides"),
        default=dict,
        blank=True,
        validators=[validate_header_overrides],
        help_text=_(
            'Extra headers sent upstream, e.g. <code>{"OpenAI-Organization": "org-123"}</code>.'
        ),
    )
    parameter_overrides = models.JSONField(
        _("parameter overrides"),
        default=dict,
        blank=True,
        validators=[validate_parameter_overrides],
        help_text=_(
            "Request parameters set on every generation sent upstream, e.g. "
            '<code>{"max_tokens": 4096}</code>.'
        ),
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
