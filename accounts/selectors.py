from django.db.models import QuerySet

from accounts.models import Token, User


def user_by_email(*, email: str) -> User | None:
    """Return the user whose login is `email` (any case, surrounding spaces ignored)."""
    return User.objects.filter(email__iexact=email.strip()).first()


def token_count(*, user_id: int) -> int:
    """Return how many API tokens the user has (enabled or not)."""
    return Token.objects.filter(user_id=user_id).count()


def token_list(*, user_id: int) -> QuerySet[Token]:
    """Return the user's tokens, newest first."""
    return Token.objects.filter(user_id=user_id).order_by("-created_at", "-id")
