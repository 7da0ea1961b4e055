from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from allauth.account.adapter import DefaultAccountAdapter
from allauth.account.internal.flows.login import record_authentication
from allauth.account.models import EmailConfirmation
from django.conf import settings
from django.http import HttpRequest
from django.urls import reverse
from django.utils import translation

from accounts.locale import LANGUAGE_CODES
from accounts.models import User
from core.links import public_domain, public_url


@dataclass(frozen=True)
class PublicSite:
    """What allauth's email templates read of `current_site`."""

    name: str
    domain: str


class AccountAdapter(DefaultAccountAdapter):
    """Comet's changes to allauth's account flows."""

    def is_open_for_signup(self, request: HttpRequest) -> bool:
        """Public sign-up is open unless the settings close it (`COMET_SIGNUP_OPEN`)."""
        return settings.COMET_SIGNUP_OPEN

    def save_user(self, request: HttpRequest, user: Any, form: Any, commit: bool = True) -> Any:
        """Count choosing a password at sign-up as a sign-in of this browser session.

        Confirming the email in the same session then signs in (allauth), and
        creating the first token right away asks for no password again: the
        console's "recent sign-in" reads these records.

        The page's language becomes the new user's saved one: a visitor who switched
        to 中文 before signing up gets Chinese emails, the verification email first.
        """
        page_language = getattr(request, "LANGUAGE_CODE", "")
        if not user.language and page_language in LANGUAGE_CODES:
            user.language = page_language
        user = super().save_user(request, user, form, commit=commit)
        if commit:
            record_authentication(request, user, method="password", signup=True)
        return user

    def clean_email(self, email: str) -> str:
        """Store addresses in lower case, so one mailbox is one account."""
        return super().clean_email(email).strip().lower()

    # Links in account emails start with COMET_PUBLIC_URL, like every other email:
    # allauth would build them from the Host header of the request that sent them.

    def get_email_confirmation_url(
        self, request: HttpRequest, emailconfirmation: EmailConfirmation
    ) -> str:
        return public_url(reverse("account_confirm_email", args=[emailconfirmation.key]))

    def get_reset_password_from_key_url(self, key: str) -> str:
        path = reverse("account_reset_password_from_key", kwargs={"uidb36": "UID", "key": "KEY"})
        return public_url(path.replace("UID-KEY", quote(key)))

    def send_account_already_exists_mail(self, email: str) -> None:
        context = {
            "signup_url": public_url(reverse("account_signup")),
            "password_reset_url": public_url(reverse("account_reset_password")),
        }
        self.send_mail("account/email/account_already_exists", email, context)

    def send_mail(self, template_prefix: str, email: str, context: dict[str, Any]) -> None:
        # Templates greet and sign with `current_site` (allauth's: the request's host);
        # ours name the product and end with the public site's address.
        context = {
            **context,
            "current_site": PublicSite(name=settings.COMET_SITE_NAME, domain=public_domain()),
            "site_url": public_url("/"),
        }
        # allauth sends this one itself (a password reset for an unknown address).
        if template_prefix == "account/email/unknown_account":
            context["signup_url"] = public_url(reverse("account_signup"))
        with translation.override(self._recipient_language(email, context.get("user"))):
            super().send_mail(template_prefix, email, context)

    @staticmethod
    def _recipient_language(email: str, user: Any) -> str:
        """Return the language an account email is written in: the saved language of the
        user it is about (or of the account with that address), else the page's."""
        if not isinstance(user, User):
            user = User.objects.filter(email__iexact=email).only("language").first()
        if user is not None and user.language in LANGUAGE_CODES:
            return user.language
        page_language = translation.get_language()
        return page_language if page_language in LANGUAGE_CODES else settings.LANGUAGE_CODE
