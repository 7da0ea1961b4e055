from celery import shared_task

from .probe import channels_probe_disabled


@shared_task
def channel_probe_disabled_task() -> int:
    """Probe every auto-disabled channel; return how many came back."""
    return channels_probe_disabled()
