from celery import shared_task

from billing.metering import reservation_release_expired


@shared_task
def reservation_release_expired_task() -> int:
    """Release reservations whose lease passed (a crashed relay never settled them)."""
    return reservation_release_expired()
