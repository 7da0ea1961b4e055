"""Writes of the request log outside the settle path: refusals, alerts, pruning."""

import logging
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.conf import settings
from django.core.mail import send_mail
from django.db import IntegrityError, connection, transaction
from django.db.models import Max, Min
from django.template.loader import render_to_string
from django.utils import timezone
from django.utils.translation import gettext

from accounts.locale import recipient_locale
from accounts.models import Token
from core.links import public_url
from logs.data import RefusalData
from logs.models import PrunedTokenUsage, Refusal, RequestLog, TokenIp
from logs.rollups import bucket_start, rollup_prune

logger = logging.getLogger(__name__)

RETENTION_BATCH_SIZE = 5000


def refusals_record(refusals: list[RefusalData]) -> None:
    """Add counted refusals to their (token, error code, second) rows, one statement.

    A token deleted meanwhile keeps its refusals without the link (its name stays).
    """
    if not refusals:
        return
    token_ids = {refusal.token_id for refusal in refusals}
    try:
        _refusals_upsert(refusals, token_ids)
    except IntegrityError:
        live = set(Token.objects.filter(id__in=token_ids).values_list("id", flat=True))
        _refusals_upsert(refusals, live)


def _refusals_upsert(refusals: list[RefusalData], live_token_ids: set) -> None:
    table = Refusal._meta.db_table
    rows: list[list[Any]] = []
    for refusal in refusals:
        token_id = refusal.token_id if refusal.token_id in live_token_ids else None
        rows.append(
            [
                refusal.second,
                refusal.user_id,
                token_id,
                refusal.token_name[:100],
                refusal.status_code,
                refusal.error_code[:64],
                refusal.model[:200],
                refusal.client_ip,
                refusal.count,
            ]
        )
    values = ", ".join(["(%s, %s, %s, %s, %s, %s, %s, %s, %s)"] * len(rows))
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} (second, user_id, token_id, token_name, status_code, "  # noqa: S608
            f"error_code, model, client_ip, count) VALUES {values} "
            "ON CONFLICT (token_id, error_code, second) DO UPDATE SET "
            f"count = {table}.count + EXCLUDED.count, model = EXCLUDED.model",
            [value for row in rows for value in row],
        )


def new_ip_notify(*, log_id: int) -> None:
    """Queue the "new IP" email for a log row if its owner asked for these emails.

    Called by the settle path when a token was used from an address it never was;
    the task is enqueued after commit, never inside the settle's transaction.
    """
    from logs.tasks import new_ip_email_task

    wants_email = RequestLog.objects.filter(pk=log_id, user__notify_new_ip=True).exists()
    if wants_email:
        transaction.on_commit(lambda: new_ip_email_task.delay(log_id))


def new_ip_email_send(*, log_id: int) -> bool:
    """Send the "new IP" email of a log row once; return False if nothing was sent."""
    log = RequestLog.objects.select_related("user").filter(pk=log_id).first()
    if log is None or not log.user.notify_new_ip:
        return False
    claimed = TokenIp.objects.filter(first_log_id=log_id, notified_at__isnull=True).update(
        notified_at=timezone.now()
    )
    if not claimed:
        return False
    context = {
        "user": log.user,
        "log": log,
        "logs_url": public_url(f"/logs/?ip={log.client_ip}&range=30d"),
        "tokens_url": public_url("/tokens/"),
    }
    try:
        with recipient_locale(log.user):
            subject = gettext("Token “%(token)s” used from a new IP address (%(ip)s)") % {
                "token": log.token_name,
                "ip": log.client_ip,
            }
            send_mail(
                subject=f"[{settings.COMET_SITE_NAME}] {subject}",
                message=render_to_string("emails/new_ip.txt", context),
                from_email=None,
                recipient_list=[log.user.email],
            )
    except OSError:
        # Unclaim, so a retry of the task sends it (the claim is not held in a
        # transaction: no mail server is waited on with a row locked).
        TokenIp.objects.filter(first_log_id=log_id).update(notified_at=None)
        raise
    return True


@dataclass(frozen=True)
class PruneResult:
    deleted_rows: int
    deleted_rollups: int


def log_prune(*, cutoff: datetime, batch_size: int = RETENTION_BATCH_SIZE) -> PruneResult:
    """Delete request log rows, minute and hour rollups and refusals older than `cutoff`.

    The caller first folds the costs of these rows into the books (retention is
    `billing.services.log_retention_run`, which does that and then calls this).
    1. Rows are deleted by id ranges of `batch_size`, each batch in its own short
       transaction that also adds the batch's costs to `PrunedTokenUsage` (so each
       token's `used` still proves out): no long lock, and a crash loses nothing.
    2. Minute and hour rollups older than the cutoff go too; day rollups stay.
    3. Refusal counts older than the cutoff go, in batches.
    """
    bounds = RequestLog.objects.filter(created_at__lt=cutoff).aggregate(
        first=Min("id"), last=Max("id")
    )
    deleted = 0
    if bounds["last"] is not None:
        low = bounds["first"] - 1
        while low < bounds["last"]:
            high = min(low + batch_size, bounds["last"])
            deleted += _delete_batch(low=low, high=high, cutoff=cutoff)
            low = high
        logger.info("Log retention: %d rows older than %s deleted", deleted, cutoff.isoformat())
    deleted_rollups = rollup_prune(before=bucket_start(cutoff, "hour"))
    _refusals_prune(cutoff=cutoff, batch_size=batch_size)
    return PruneResult(deleted, deleted_rollups)


def _refusals_prune(*, cutoff: datetime, batch_size: int) -> None:
    old = Refusal.objects.filter(second__lt=cutoff).values_list("id", flat=True)
    while True:
        ids = list(old[:batch_size])
        if not ids:
            return
        Refusal.objects.filter(id__in=ids).delete()


def _delete_batch(*, low: int, high: int, cutoff: datetime) -> int:
    """Delete old rows with low < id <= high; add their costs to the tokens' pruned usage."""
    table = RequestLog._meta.db_table
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            f"DELETE FROM {table} WHERE id > %s AND id <= %s AND created_at < %s "  # noqa: S608
            "RETURNING token_id, cost",
            [low, high, cutoff],
        )
        rows = cursor.fetchall()
        pruned: dict[int, list[int]] = defaultdict(lambda: [0, 0])
        for token_id, cost in rows:
            if token_id is not None:
                pruned[token_id][0] += 1
                pruned[token_id][1] += cost
        pruned_table = PrunedTokenUsage._meta.db_table
        for token_id, (requests, cost) in sorted(pruned.items()):
            cursor.execute(
                f"INSERT INTO {pruned_table} (token_id, requests, cost) VALUES (%s, %s, %s) "  # noqa: S608
                f"ON CONFLICT (token_id) DO UPDATE SET "
                f"requests = {pruned_table}.requests + EXCLUDED.requests, "
                f"cost = {pruned_table}.cost + EXCLUDED.cost",
                [token_id, requests, cost],
            )
    return len(rows)
