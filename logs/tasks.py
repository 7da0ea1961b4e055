"""Celery tasks of the request log: thin, idempotent, each calling one service."""

from celery import shared_task

from logs import services


# SMTP failures (OSError and its kin) are retried; the send unclaims the row first.
@shared_task(autoretry_for=(OSError,), retry_backoff=30, max_retries=5)
def new_ip_email_task(log_id: int) -> bool:
    """Email a user that one of their tokens was used from a new IP (once per address)."""
    return services.new_ip_email_send(log_id=log_id)
