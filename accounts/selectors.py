from django.db.models import QuerySet

from accounts.models import AuditEvent, Token, User


def user_by_email(*, email: str) -> User | None:
    """Return the user whose login is `email` (any case, surrounding spaces ignored)."""
    return User.objects.filter(email__iexact=email.strip()).first()


def token_count(*, user_id: int) -> int:
    """Return how many API tokens the user has (enabled or not)."""
    return Token.objects.filter(user_id=user_id).count()


def token_list(*, user_id: int) -> QuerySet[Token]:
    """Return the user's tokens, newest first."""
    return Token.objects.filter(user_id=user_id).order_by("-created_at", "-id")


TOKEN_ACTIONS = [action for action in AuditEvent.Action if action.startswith("token.")]


def token_events_recent(*, user_id: int, limit: int = 10) -> list[AuditEvent]:
    """Return the latest audit rows about the user's tokens, newest first."""
    return list(
        AuditEvent.objects.filter(user_id=user_id, action__in=TOKEN_ACTIONS).order_by(
            "-created_at", "-id"
        )[:limit]
    )


def user_emails(*, user_ids: list[int]) -> dict[int, str]:
    """Map each of these users that exists to its email: one query."""
    return dict(User.objects.filter(pk__in=user_ids).values_list("pk", "email"))
