from django.conf import settings
from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.auth.models import PermissionsMixin
from django.db import models
from django.db.models.functions import Lower
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from .managers import UserManager


class User(AbstractBaseUser, PermissionsMixin):
    """A person with a Comet account; the email address is the login."""

    email = models.EmailField(_("email address"), unique=True)
    display_name = models.CharField(_("display name"), max_length=150, blank=True)
    is_staff = models.BooleanField(
        _("is staff"), default=False, help_text=_("Whether the user can sign in to the admin site.")
    )
    is_active = models.BooleanField(
        _("is active"), default=True, help_text=_("Unselect this instead of deleting the account.")
    )
    date_joined = models.DateTimeField(_("date joined"), default=timezone.now)
    # Empty means the default group. Set by admins.
    pricing_group = models.ForeignKey(
        "models_catalog.PricingGroup",
        verbose_name=_("pricing group"),
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="users",
    )
    # The account's own limits, set by admins (accounts.services.user_line_set); empty
    # takes the line's (models_catalog.PricingGroup). A token's own limits may only be
    # tighter; the relay enforces both (relay.limits).
    concurrency_limit = models.PositiveIntegerField(
        _("concurrency limit"),
        null=True,
        blank=True,
        help_text=_("Requests in flight at once; empty: the line's."),
    )
    rpm_limit = models.PositiveIntegerField(
        _("requests per minute"),
        null=True,
        blank=True,
        help_text=_("Requests in any 60 seconds; empty: the line's."),
    )
    tpm_limit = models.PositiveIntegerField(
        _("tokens per minute"),
        null=True,
        blank=True,
        help_text=_("Tokens (prompt + completion) in any 60 seconds; empty: the line's."),
    )
    # An email when one of the user's tokens is used from an IP address it never was.
    notify_new_ip = models.BooleanField(
        _("email me when a token is used from a new IP address"), default=False
    )

    # The language of the pages once signed in; empty follows the browser (README, "Languages").
    language = models.CharField(
        _("language"), max_length=10, blank=True, choices=settings.LANGUAGES
    )
    # The IANA time zone the user reads times in (accounts.timezones). Empty until chosen
    # or until the browser's is sent once; meanwhile PLATFORM_TIME_ZONE (README, "Time zones").
    time_zone = models.CharField(_("time zone"), max_length=64, blank=True)

    objects = UserManager()

    EMAIL_FIELD = "email"
    USERNAME_FIELD = "email"
    REQUIRED_FIELDS = []

    class Meta:
        verbose_name = _("user")
        verbose_name_plural = _("users")
        constraints = [
            models.UniqueConstraint(Lower("email"), name="accounts_user_email_ci_unique"),
            models.CheckConstraint(
                condition=(
                    models.Q(concurrency_limit__isnull=True) | models.Q(concurrency_limit__gte=1)
                )
                & (models.Q(rpm_limit__isnull=True) | models.Q(rpm_limit__gte=1))
                & (models.Q(tpm_limit__isnull=True) | models.Q(tpm_limit__gte=1)),
                name="accounts_user_limits_positive",
            ),
        ]

    def __str__(self) -> str:
        return self.email

    def clean(self) -> None:
        super().clean()
        self.email = self.__class__.objects.normalize_email(self.email).lower()

    def get_full_name(self) -> str:
        return self.display_name or self.email

    def get_short_name(self) -> str:
        return self.display_name or self.email.split("@", 1)[0]


class Token(models.Model):
    """An API token: the `sk-...` key a program sends to the relay.

    Only a hash of the key is stored (with a display prefix and its last four
    characters); the full key is shown once, when the token is created. Money
    fields are integer micro-USD. `quota_remaining` empty means unlimited and 0
    means query-only (the token may read its balance but not spend). `reserved`
    is what open reservations of in-flight requests hold against the quota.
    """

    user = models.ForeignKey(
        User, verbose_name=_("user"), on_delete=models.CASCADE, related_name="tokens"
    )
    name = models.CharField(_("name"), max_length=100)
    key_hash = models.CharField(_("key hash"), max_length=64, unique=True, editable=False)
    key_prefix = models.CharField(_("key prefix"), max_length=16, editable=False)
    key_last4 = models.CharField(_("key last4"), max_length=4, editable=False)
    is_enabled = models.BooleanField(_("is enabled"), default=True)
    expires_at = models.DateTimeField(_("expires at"), null=True, blank=True)
    quota_remaining = models.BigIntegerField(_("quota remaining"), null=True, blank=True)
    reserved = models.BigIntegerField(_("reserved"), default=0)
    used = models.BigIntegerField(_("used"), default=0)
    request_count = models.BigIntegerField(_("request count"), default=0)
    # Model names; empty means every model.
    allowed_models = models.JSONField(_("allowed models"), default=list, blank=True)
    # IP addresses or CIDR networks as text; empty means any address.
    allowed_networks = models.JSONField(_("allowed networks"), default=list, blank=True)
    concurrency_limit = models.PositiveIntegerField(_("concurrency limit"), default=100)
    rpm_limit = models.PositiveIntegerField(_("rpm limit"), null=True, blank=True)
    last_used_at = models.DateTimeField(_("last used at"), null=True, blank=True)
    last_used_ip = models.GenericIPAddressField(_("last used ip"), null=True, blank=True)
    # The quota alert (`billing.alerts`), for a token with a quota: one email when
    # `quota_remaining` falls below the threshold (micro-USD, empty: off); when it fell
    # (empty: armed) and when that was emailed. Raising the quota to the threshold or
    # above, or changing the threshold, arms it again.
    quota_alert_threshold = models.BigIntegerField(
        _("quota alert threshold"), null=True, blank=True
    )
    quota_alerted_at = models.DateTimeField(_("quota alerted at"), null=True, blank=True)
    quota_alert_emailed_at = models.DateTimeField(
        _("quota alert emailed at"), null=True, blank=True
    )
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)

    class Meta:
        verbose_name = _("token")
        verbose_name_plural = _("tokens")
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(quota_remaining__isnull=True)
                | models.Q(quota_remaining__gte=models.F("reserved")),
                name="accounts_token_quota_covers_reserved",
            ),
            models.CheckConstraint(
                condition=models.Q(reserved__gte=0), name="accounts_token_reserved_nonneg"
            ),
            models.CheckConstraint(
                condition=models.Q(used__gte=0), name="accounts_token_used_nonneg"
            ),
            models.CheckConstraint(
                condition=models.Q(quota_alert_threshold__isnull=True)
                | models.Q(quota_alert_threshold__gt=0),
                name="accounts_token_quota_alert_threshold_pos",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.masked_key})"

    @property
    def masked_key(self) -> str:
        return f"sk-…{self.key_last4}"

    @property
    def is_expired(self) -> bool:
        return self.expires_at is not None and self.expires_at <= timezone.now()

    @property
    def status(self) -> str:
        if not self.is_enabled:
            return "disabled"
        if self.is_expired:
            return "expired"
        if self.quota_remaining is not None and self.quota_remaining - self.reserved <= 0:
            return "exhausted" if self.quota_remaining or self.used else "query-only"
        return "enabled"


class TokenFormNonce(models.Model):
    """A single-use nonce of a console form that shows a key: "new token" or "roll key".

    The form carries a signed nonce (`tokens.form_nonces.form_nonce_issue`); the row is
    written in the transaction that creates the token or rolls its key, so a form
    posted twice (a reload, a double click) finds its row and shows nothing new. No
    key is kept here: `token` is what the first post changed (empty once deleted).
    Rows older than a form may be (`FORM_NONCE_MAX_AGE_SECONDS`) are deleted.
    """

    user = models.ForeignKey(
        User, verbose_name=_("user"), on_delete=models.CASCADE, related_name="+"
    )
    nonce = models.CharField(_("nonce"), max_length=32)
    token = models.ForeignKey(
        Token,
        verbose_name=_("token"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)

    class Meta:
        verbose_name = _("token form nonce")
        verbose_name_plural = _("token form nonces")
        constraints = [
            models.UniqueConstraint(
                fields=["user", "nonce"], name="accounts_tokenformnonce_user_nonce_unique"
            ),
        ]

    def __str__(self) -> str:
        return f"form nonce of user {self.user_id}"


AUDIT_LABEL_LENGTH = 100


class AuditEvent(models.Model):
    """One state change a customer or an operator may ask about later: who, what, when.

    Written by `accounts.services.audit_record` in the transaction of the change
    itself, so a change that commits has its row and one rolled back has none.
    `actor` is who did it (empty: the system, with its reason in `detail`); `user`
    is whose account it concerns (empty for a channel). The object is named by its
    type, id and a short label (a token's or a channel's name): never a key or a
    secret. Rows are never changed; the admin shows them read-only.
    """

    class Action(models.TextChoices):
        TOKEN_CREATED = "token.created", _("Token created")
        TOKEN_CHANGED = "token.changed", _("Token settings changed")
        TOKEN_ENABLED = "token.enabled", _("Token enabled")
        TOKEN_DISABLED = "token.disabled", _("Token disabled")
        TOKEN_KEY_ROLLED = "token.key_rolled", _("Token key rolled")
        TOKEN_DELETED = "token.deleted", _("Token deleted")
        ACCOUNT_FROZEN = "account.frozen", _("Account frozen")
        ACCOUNT_UNFROZEN = "account.unfrozen", _("Account unfrozen")
        ACCOUNT_LINE_CHANGED = "account.line_changed", _("Line or account limits changed")
        LINE_CREATED = "line.created", _("Line created")
        LINE_CHANGED = "line.changed", _("Line's models or default limits changed")
        CHANNEL_ENABLED = "channel.enabled", _("Channel enabled")
        CHANNEL_DISABLED = "channel.disabled", _("Channel disabled")

    created_at = models.DateTimeField(_("created at"), default=timezone.now, editable=False)
    actor = models.ForeignKey(
        User,
        verbose_name=_("actor"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    user = models.ForeignKey(
        User,
        verbose_name=_("user"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="audit_events",
    )
    action = models.CharField(_("action"), max_length=32, choices=Action.choices)
    # "app_label.model" of the object, e.g. "accounts.token"
    target_type = models.CharField(_("target type"), max_length=64)
    target_id = models.BigIntegerField(_("target id"), null=True, blank=True)
    target_label = models.CharField(_("target label"), max_length=AUDIT_LABEL_LENGTH, blank=True)
    detail = models.JSONField(_("detail"), default=dict, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name = _("audit event")
        verbose_name_plural = _("audit log")
        indexes = [
            models.Index(fields=["user", "-created_at"], name="accounts_audit_user_time"),
            models.Index(fields=["-created_at"], name="accounts_audit_time"),
            models.Index(fields=["action", "-created_at"], name="accounts_audit_action_time"),
            models.Index(fields=["target_type", "target_id"], name="accounts_audit_target"),
        ]

    def __str__(self) -> str:
        return f"{self.get_action_display()}: {self.target_label or self.target_type}"
