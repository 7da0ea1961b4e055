"""The Celery application: settings come from Django's, under the CELERY_ prefix."""

import logging
import logging.config
import os
from typing import Any

from celery import Celery
from celery.signals import setup_logging

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "comet.settings.local")

app = Celery("comet")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@setup_logging.connect
def logging_configure(loglevel: int | str | None = None, **kwargs: Any) -> None:
    """Log through settings.LOGGING (which masks secrets), not Celery's own handlers.

    A failed task's traceback quotes its arguments and its error: Celery's handlers
    would write them as they are. `--loglevel` still sets the level.
    """
    from django.conf import settings

    logging.config.dictConfig(settings.LOGGING)
    if loglevel:
        logging.getLogger().setLevel(loglevel)
