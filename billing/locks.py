"""The one lock order for the rows money moves through: accounts, tokens, reservations.

Every transaction that locks more than one of these rows locks them through
`lock_rows`, so two transactions never wait on each other in a cycle: first the
accounts, then the tokens, then the reservations (grants included), each kind by
id. A path that knows only a reservation reads its account and token first
without a lock (a reservation never changes account, and its token only goes to
NULL when the token is deleted under the same order), then locks all three.
"""

from collections.abc import Iterable

from django.db import connection, transaction

from accounts.models import Token
from billing.models import Account, Reservation


def lock_rows(
    *,
    accounts: Iterable[int | None] = (),
    tokens: Iterable[int | None] = (),
    reservations: Iterable[int | None] = (),
) -> None:
    """Lock these rows FOR UPDATE in the one order; the caller's transaction keeps them.

    Ids may repeat or be None (ignored). Rows that do not exist are skipped.
    """
    if not connection.in_atomic_block:
        raise transaction.TransactionManagementError("lock_rows needs a transaction.")
    for model, ids in ((Account, accounts), (Token, tokens), (Reservation, reservations)):
        wanted = sorted({pk for pk in ids if pk is not None})
        if wanted:
            # Evaluated here: the rows are locked in id order before anything else runs.
            list(
                model.objects.select_for_update()
                .filter(pk__in=wanted)
                .order_by("pk")
                .values_list("pk", flat=True)
            )
