from django.db import models
from django.db.models import Q


class Channel(models.Model):
    """An upstream that answers requests for some models, for some pricing groups.

    The API key is stored only encrypted (`relay.crypto`); the admin shows its last
    four characters. Status changes go through `relay.services`.
    """

    class Kind(models.TextChoices):
        OPENAI = "openai", "OpenAI-compatible"
        ANTHROPIC = "anthropic", "Anthropic"
        MOCK = "mock", "Mock (answers locally, for demos and tests)"

    class Status(models.TextChoices):
        ENABLED = "enabled", "Enabled"
        DISABLED = "disabled", "Disabled by an admin"
        AUTO_DISABLED = "auto_disabled", "Disabled after repeated failures"

    name = models.CharField(max_length=100, unique=True)
    kind = models.CharField(max_length=16, choices=Kind.choices, default=Kind.OPENAI)
    base_url = models.URLField(
        max_length=500,
        blank=True,
        help_text="Up to and including the version, e.g. https://api.openai.com/v1",
    )
    encrypted_api_key = models.TextField(blank=True, editable=False)
    api_key_last4 = models.CharField(max_length=4, blank=True, editable=False)
    served_models = models.JSONField(
        default=list, blank=True, help_text='Public model names served, e.g. ["gpt-4o"].'
    )
    model_mapping = models.JSONField(
        default=dict,
        blank=True,
        help_text='Public name → name sent upstream, e.g. {"gpt-4o": "gpt-4o-2024-08-06"}.',
    )
    pricing_groups = models.ManyToManyField(
        "models_catalog.PricingGroup",
        blank=True,
        related_name="channels",
        help_text="Groups whose users may be routed here; none selected = every group.",
    )
    priority = models.IntegerField(
        default=0, help_text="Higher first; lower priorities are fallbacks."
    )
    weight = models.PositiveIntegerField(default=1, help_text="Share among equal priorities.")
    connect_timeout_seconds = models.PositiveIntegerField(default=5)
    read_timeout_seconds = models.PositiveIntegerField(
        default=300, help_text="Longest silence from the upstream before giving up."
    )
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.ENABLED)
    consecutive_failures = models.PositiveIntegerField(default=0, editable=False)
    total_failures = models.PositiveBigIntegerField(default=0, editable=False)
    # A status code or exception class, never upstream response content.
    last_error = models.CharField(max_length=200, blank=True, editable=False)
    last_failure_at = models.DateTimeField(null=True, blank=True, editable=False)
    disabled_at = models.DateTimeField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
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
