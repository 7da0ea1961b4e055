from celery import shared_task
from django.core.management import call_command


@shared_task
def clear_expired_sessions_task() -> None:
    """Delete sessions past their expiry (scheduled in the maintenance window)."""
    call_command("clearsessions")
