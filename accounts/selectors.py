from accounts.models import User


def user_by_email(*, email: str) -> User | None:
    """Return the user whose login is `email` (any case, surrounding spaces ignored)."""
    return User.objects.filter(email__iexact=email.strip()).first()
