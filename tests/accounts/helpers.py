"""Audit log helpers for the tests of every app that writes audit rows."""

from collections.abc import Callable

from django.db import transaction

from accounts.models import AuditEvent


class _RollBack(Exception):
    pass


def audit_rows_then_roll_back(change: Callable[[], object]) -> int:
    """Make `change` in a transaction, then fail and roll it back.

    Return how many audit rows the change had written inside that transaction.
    """
    before = AuditEvent.objects.count()
    written = 0
    try:
        with transaction.atomic():
            change()
            written = AuditEvent.objects.count() - before
            raise _RollBack
    except _RollBack:
        pass
    return written
