from django.conf import settings
from django.db import models
from django.db.models import Q

from logs.data import RequestLogData

__all__ = ["RequestLog", "RequestLogData"]


class RequestLog(models.Model):
    """One relayed request: who, which model, how many tokens, what it cost.

    This table is also the usage journal of the books: an account's balance is
    the sum of its ledger entries minus the costs of the rows written since its
    last usage settlement entry. Rows are written by `billing.metering.usage_settle`
    in the same transaction that charges the cost, and never changed afterwards.
    Request and response content is never stored here.
    """

    created_at = models.DateTimeField(db_index=True)
    request_id = models.CharField(max_length=64, unique=True)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="request_logs"
    )
    token = models.ForeignKey(
        "accounts.Token",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="request_logs",
    )
    # Kept so the log still says which token it was after the token is deleted.
    token_name = models.CharField(max_length=100, blank=True)
    model = models.CharField(max_length=200)
    # The relay's Channel lives in relay/; a plain integer keeps this journal
    # independent of channel deletions.
    channel_id = models.BigIntegerField(null=True, blank=True)
    prompt_tokens = models.PositiveIntegerField(default=0)
    completion_tokens = models.PositiveIntegerField(default=0)
    cached_tokens = models.PositiveIntegerField(default=0)
    cost = models.BigIntegerField(help_text="Micro-USD charged for this request.")
    model_ratio = models.DecimalField(max_digits=12, decimal_places=6, default=1)
    completion_ratio = models.DecimalField(max_digits=12, decimal_places=6, default=1)
    group_ratio = models.DecimalField(max_digits=12, decimal_places=6, default=1)
    price_per_call = models.BigIntegerField(null=True, blank=True)
    client_ip = models.GenericIPAddressField()
    status_code = models.PositiveSmallIntegerField(default=200)
    error_code = models.CharField(max_length=64, blank=True)
    latency_ms = models.PositiveIntegerField(default=0)
    first_token_ms = models.PositiveIntegerField(null=True, blank=True)
    is_stream = models.BooleanField(default=False)
    usage_estimated = models.BooleanField(default=False)

    class Meta:
        indexes = [
            models.Index(fields=["user", "-created_at", "-id"], name="logs_requestlog_user_recent"),
            models.Index(fields=["token", "id"], name="logs_requestlog_token"),
        ]
        constraints = [
            models.CheckConstraint(condition=Q(cost__gte=0), name="logs_requestlog_cost_nonneg"),
        ]

    def __str__(self) -> str:
        return f"{self.request_id} {self.model} {self.cost}"
