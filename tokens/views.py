"""Console pages for API tokens: list, create, edit, enable/disable, roll the key, delete.

Creating a token and rolling its key show the key once, in the page that answers
the post (never redirected: the key is stored nowhere, not even in the session).
Those forms carry a single-use nonce, so posting one again (a reload) changes
nothing and says so (`tokens.form_nonces`).
"""

import time

from allauth.account.internal.flows.login import get_authentication_records
from allauth.core.exceptions import ReauthenticationRequired
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from accounts.http import ConsoleRequest
from accounts.models import Token
from accounts.selectors import token_list as token_list_select
from models_catalog.models import DEFAULT_CONCURRENCY_LIMIT
from models_catalog.selectors import user_account_limits
from tokens.forms import TokenCreateForm, TokenForm, TokenRollForm
from tokens.quickstart import quickstart_context
from tokens.services import (
    FormAlreadyUsed,
    token_create,
    token_delete,
    token_roll,
    token_set_enabled,
    token_update,
)


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


def _key_shown(
    request: ConsoleRequest, token: Token, raw_key: str, *, rolled: bool
) -> HttpResponse:
    """Answer a post that made a key: the list, with the key and the quickstart in a dialog."""
    context = _list_context(request) | {
        "new_token": token,
        "new_key": raw_key,
        "rolled": rolled,
        "quickstart": quickstart_context(request, key=raw_key),
    }
    status = 200 if rolled else 201
    response = render(request, "tokens/list.html", context, status=status)
    response["Cache-Control"] = "no-store"
    return response


def _form_used_again(
    request: ConsoleRequest, error: FormAlreadyUsed, *, rolled: bool
) -> HttpResponse:
    """Answer a form posted again (a reload): nothing was done; the key is not shown again."""
    context = _list_context(request) | {
        "repeated": {"token": error.token, "rolled": rolled},
    }
    # 200, not 409: a reload lands here, and browsers log every 4xx page as an error.
    response = render(request, "tokens/list.html", context)
    response["Cache-Control"] = "no-store"
    return response


@login_required
@require_GET
def token_list(request: ConsoleRequest) -> HttpResponse:
    """Show the user's tokens (the table alone for htmx)."""
    template = "tokens/_table.html" if request.htmx else "tokens/list.html"
    return render(request, template, _list_context(request))


@login_required
@require_http_methods(["GET", "POST"])
def token_create_view(request: ConsoleRequest) -> HttpResponse:
    """Create a token; on success show the list with the key, once, in a dialog."""
    _require_recent_login(request)
    account = user_account_limits(request.user)
    form = TokenCreateForm(
        request.POST or None,
        initial={"concurrency_limit": min(DEFAULT_CONCURRENCY_LIMIT, account.concurrency_limit)},
        user_id=request.user.pk,
        account_limits=account,
    )
    if request.method == "POST" and form.is_valid():
        try:
            token, raw_key = token_create(
                user=request.user,
                form_nonce=form.cleaned_data["form_nonce"],
                actor=request.user,
                **form.service_arguments(),
            )
        except ValidationError as error:
            form.add_error(None, error.messages)
        except FormAlreadyUsed as error:
            return _form_used_again(request, error, rolled=False)
        else:
            # Rendered, not redirected: the key must never be stored, not even in the session.
            return _key_shown(request, token, raw_key, rolled=False)
    status = 400 if form.is_bound else 200
    return render(request, "tokens/form.html", {"form": form, "token": None}, status=status)


@login_required
@require_http_methods(["GET", "POST"])
def token_edit(request: ConsoleRequest, token_id: int) -> HttpResponse:
    """Edit a token's name, quota, expiry and limits."""
    token = _owned_token(request, token_id)
    form = TokenForm(
        request.POST or None,
        initial=TokenForm.initial_for(token),
        account_limits=user_account_limits(request.user),
        token=token,
    )
    if request.method == "POST" and form.is_valid():
        try:
            token_update(token=token, actor=request.user, **form.service_arguments())
        except ValidationError as error:
            form.add_error(None, error.messages)
        else:
            messages.success(request, _("Token “%(name)s” saved.") % {"name": token.name})
            return redirect("tokens:list")
    status = 400 if form.is_bound else 200
    return render(request, "tokens/form.html", {"form": form, "token": token}, status=status)


@login_required
@require_POST
def token_toggle(request: ConsoleRequest, token_id: int) -> HttpResponse:
    """Enable a disabled token or disable an enabled one (inline, with htmx)."""
    token = _owned_token(request, token_id)
    token = token_set_enabled(token=token, is_enabled=not token.is_enabled, actor=request.user)
    if request.htmx:
        return render(request, "tokens/_row.html", {"token": token})
    if token.is_enabled:
        message = _("Token “%(name)s” enabled.")
    else:
        message = _("Token “%(name)s” disabled.")
    messages.success(request, message % {"name": token.name})
    return redirect("tokens:list")


@login_required
@require_POST
def token_delete_view(request: ConsoleRequest, token_id: int) -> HttpResponse:
    """Delete a token (the form asks for confirmation first)."""
    token = _owned_token(request, token_id)
    name = token.name
    token_delete(token=token, actor=request.user)
    messages.success(
        request,
        _("Token “%(name)s” deleted. Programs using it are refused now.") % {"name": name},
    )
    return redirect("tokens:list")


@login_required
@require_http_methods(["GET", "POST"])
def token_roll_view(request: ConsoleRequest, token_id: int) -> HttpResponse:
    """Give a token a new key, after a confirmation page; show the new key once."""
    _require_recent_login(request)
    token = _owned_token(request, token_id)
    form = TokenRollForm(request.POST or None, user_id=request.user.pk)
    if request.method == "POST" and form.is_valid():
        try:
            token, raw_key = token_roll(
                token=token, form_nonce=form.cleaned_data["form_nonce"], actor=request.user
            )
        except FormAlreadyUsed as error:
            return _form_used_again(request, error, rolled=True)
        return _key_shown(request, token, raw_key, rolled=True)
    status = 400 if form.is_bound else 200
    return render(request, "tokens/roll.html", {"form": form, "token": token}, status=status)
