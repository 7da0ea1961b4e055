"""Celery tasks of the catalog: thin, idempotent, each calling one service."""

import logging
from datetime import timedelta

from celery import shared_task
from django.utils import timezone

from . import emails, services
from .models import PriceChangeBatch

logger = logging.getLogger(__name__)

# SMTP retries: 30 s, 60 s, 120 s, ... up to 6 tries over about half an hour.
SEND_MAX_RETRIES = 6
SEND_BACKOFF_SECONDS = 30
# The resume task leaves alone rows younger than this: their first task is still queued.
RESUME_AFTER_SECONDS = 300


@shared_task
def price_changes_apply_due_task() -> int:
    """Apply scheduled price changes whose time has come (beat, every 30 s)."""
    return services.price_changes_apply_due()


@shared_task
def price_change_batches_close_task() -> int:
    """Close batches whose window has passed and fan out their emails (beat, every 30 s)."""
    closed = 0
    due = PriceChangeBatch.objects.filter(
        status=PriceChangeBatch.Status.OPEN, closes_at__lte=timezone.now()
    ).values_list("pk", flat=True)
    for batch_id in list(due):
        if services.price_change_batch_close(batch_id=batch_id):
            price_change_batch_fan_out_task.delay(batch_id)
            closed += 1
    return closed


@shared_task
def price_change_batch_fan_out_task(batch_id: int) -> int:
    """Create one email row per matching subscriber, then enqueue sending in chunks."""
    batch = PriceChangeBatch.objects.filter(
        pk=batch_id, status=PriceChangeBatch.Status.CLOSED
    ).first()
    if batch is None:
        return 0
    emails.price_change_emails_create(batch=batch)
    PriceChangeBatch.objects.filter(pk=batch_id, fanned_out_at__isnull=True).update(
        fanned_out_at=timezone.now()
    )
    chunks = emails.unsent_email_chunks(batch_id=batch_id)
    for chunk in chunks:
        price_change_emails_send_task.delay(chunk)
    return len(chunks)


@shared_task(bind=True, max_retries=SEND_MAX_RETRIES)
def price_change_emails_send_task(self, email_ids: list[int]) -> int:
    """Send one chunk of price-change emails; retry SMTP failures with backoff."""
    try:
        return emails.price_change_emails_send(email_ids=email_ids)
    except emails.SendFailedError as error:
        if self.request.retries >= SEND_MAX_RETRIES:
            logger.error("Price-change emails failed for good: %s", error)
            emails.price_change_emails_fail(email_ids=email_ids, error=str(error))
            return 0
        countdown = SEND_BACKOFF_SECONDS * 2**self.request.retries
        raise self.retry(exc=error, countdown=countdown) from error


@shared_task
def price_change_emails_resume_task(older_than_seconds: int = RESUME_AFTER_SECONDS) -> int:
    """Re-enqueue fan-outs and emails left undone by a lost task or a dead worker.

    Runs on beat every 5 minutes; work younger than `older_than_seconds` is left to the
    task that is probably still queued for it.
    """
    created_before = timezone.now() - timedelta(seconds=older_than_seconds)
    # A batch closed by a worker that died before its fan-out ran has no rows yet.
    stranded = PriceChangeBatch.objects.filter(
        status=PriceChangeBatch.Status.CLOSED,
        fanned_out_at__isnull=True,
        closed_at__lt=created_before,
    ).values_list("pk", flat=True)
    for batch_id in list(stranded):
        price_change_batch_fan_out_task.delay(batch_id)
    chunks = emails.unsent_email_chunks(created_before=created_before)
    for chunk in chunks:
        price_change_emails_send_task.delay(chunk)
    return len(chunks)
