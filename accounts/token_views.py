"""Console pages for API tokens: list, create, edit, enable/disable, delete."""

import time

from allauth.account.internal.flows.login import get_authentication_records
from allauth.core.exceptions import ReauthenticationRequired
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from accounts.http import ConsoleRequest
from accounts.models import Token
from accounts.services import token_create, token_set_enabled, token_update
from accounts.token_forms import TokenForm
from billing.selectors import token_list as token_list_select
from billing.services import token_delete


def signed_in_recently(request: HttpRequest) -> bool:
    """Return whether the last sign-in (or re-authentication) is within allauth's timeout."""
    records = get_authentication_records(request, request.user)
    last = max((record.get("at", 0) for record in records), default=0)
    return time.time() - last <= settings.ACCOUNT_REAUTHENTICATION_TIMEOUT


def _require_recent_login(request: ConsoleRequest) -> None:
    """Ask for the password again when the last sign-in is too old (allauth redirects)."""
    if not signed_in_recently(request):
        raise ReauthenticationRequired()


def _owned_token(request: ConsoleRequest, token_id: int) -> Token:
    # Someone else's token id answers exactly like a missing one.
    return get_object_or_404(Token, pk=token_id, user_id=request.user.pk)


def _list_context(request: ConsoleRequest) -> dict:
    return {"tokens": token_list_select(user_id=request.user.pk)}


@login_required
@require_GET
def token_list(request: ConsoleRequest) -> HttpResponse:
    """Show the user's tokens (the table alone for htmx)."""
    template = "accounts/tokens/_table.html" if request.htmx else "accounts/tokens/list.html"
    return render(request, template, _list_context(request))


@login_required
@require_http_methods(["GET", "POST"])
def token_create_view(request: ConsoleRequest) -> HttpResponse:
    """Create a token; on success show the list with the key, once, in a dialog."""
    _require_recent_login(request)
    form = TokenForm(request.POST or None, initial={"concurrency_limit": 100})
    if request.method == "POST" and form.is_valid():
        try:
            token, raw_key = token_create(user=request.user, **form.service_arguments())
        except ValidationError as error:
            form.add_error(None, error.messages)
        else:
            # Rendered, not redirected: the key must never be stored, not even in the session.
            context = _list_context(request) | {"new_token": token, "new_key": raw_key}
            response = render(request, "accounts/tokens/list.html", context, status=201)
            response["Cache-Control"] = "no-store"
            return response
    status = 400 if form.is_bound else 200
    return render(
        request, "accounts/tokens/form.html", {"form": form, "token": None}, status=status
    )


@login_required
@require_http_methods(["GET", "POST"])
def token_edit(request: ConsoleRequest, token_id: int) -> HttpResponse:
    """Edit a token's name, quota, expiry and limits."""
    token = _owned_token(request, token_id)
    form = TokenForm(request.POST or None, initial=TokenForm.initial_for(token))
    if request.method == "POST" and form.is_valid():
        try:
            token_update(token=token, **form.service_arguments())
        except ValidationError as error:
            form.add_error(None, error.messages)
        else:
            messages.success(request, f"Token “{token.name}” saved.")
            return redirect("tokens:list")
    status = 400 if form.is_bound else 200
    return render(
        request, "accounts/tokens/form.html", {"form": form, "token": token}, status=status
    )


@login_required
@require_POST
def token_toggle(request: ConsoleRequest, token_id: int) -> HttpResponse:
    """Enable a disabled token or disable an enabled one (inline, with htmx)."""
    token = _owned_token(request, token_id)
    token = token_set_enabled(token=token, is_enabled=not token.is_enabled)
    if request.htmx:
        return render(request, "accounts/tokens/_row.html", {"token": token})
    messages.success(
        request, f"Token “{token.name}” {'enabled' if token.is_enabled else 'disabled'}."
    )
    return redirect("tokens:list")


@login_required
@require_POST
def token_delete_view(request: ConsoleRequest, token_id: int) -> HttpResponse:
    """Delete a token (the form asks for confirmation first)."""
    token = _owned_token(request, token_id)
    name = token.name
    token_delete(token=token)
    messages.success(request, f"Token “{name}” deleted. Programs using it are refused now.")
    return redirect("tokens:list")
