from allauth.account.adapter import DefaultAccountAdapter
from django.conf import settings
from django.http import HttpRequest


class AccountAdapter(DefaultAccountAdapter):
    """Comet's changes to allauth's account flows."""

    def is_open_for_signup(self, request: HttpRequest) -> bool:
        """Let operators close public sign-up with COMET_SIGNUP_OPEN=false."""
        return getattr(settings, "COMET_SIGNUP_OPEN", True)

    def clean_email(self, email: str) -> str:
        """Store addresses in lower case, so one mailbox is one account."""
        return super().clean_email(email).strip().lower()
