from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.core.cache import cache
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from accounts.http import ConsoleRequest
from accounts.tokens import key_is_well_formed, token_authenticate
from billing.money import micro_to_json
from billing.selectors import account_for_user, ledger_entry_list, token_list
from comet.api import error_response

LEDGER_PAGE_SIZE = 50


@login_required
@require_GET
def billing_history(request: ConsoleRequest) -> HttpResponse:
    """List the user's ledger entries, newest first (a page of them for htmx)."""
    paginator = Paginator(ledger_entry_list(user_id=request.user.pk), LEDGER_PAGE_SIZE)
    page = paginator.get_page(request.GET.get("page"))
    context = {"page": page, "account": account_for_user(user_id=request.user.pk)}
    template = "billing/_history_table.html" if request.htmx else "billing/history.html"
    return render(request, template, context)


QUOTA_QUERY_WINDOW_SECONDS = 60


def _quota_query_over_limit(request: HttpRequest) -> bool:
    """Count this address's balance queries; say whether it went past the limit.

    Every query counts, a bad key too, so the endpoint cannot be used to guess keys
    quickly. The window opens at an address's first query and closes 60 s later.
    """
    limit = settings.COMET_QUOTA_QUERIES_PER_MINUTE
    if not limit:
        return False
    key = f"quota-query:{request.META.get('REMOTE_ADDR', '')}"
    cache.add(key, 0, timeout=QUOTA_QUERY_WINDOW_SECONDS)
    try:
        count = cache.incr(key)
    except ValueError:  # The window closed between add and incr.
        cache.set(key, 1, timeout=QUOTA_QUERY_WINDOW_SECONDS)
        count = 1
    return count > limit


def _bearer_key(request: HttpRequest) -> str:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return request.GET.get("key", "").strip()


@require_GET
def user_quota(request: HttpRequest) -> JsonResponse:
    """Answer the seed's balance query: the account and its tokens, amounts in USD.

    Works with any enabled, unexpired token of the account, query-only ones too.
    """
    if _quota_query_over_limit(request):
        response = error_response(
            "Too many balance queries from this address; try again in a minute.",
            status_code=429,
            code="rate_limit_exceeded",
        )
        response["Retry-After"] = str(QUOTA_QUERY_WINDOW_SECONDS)
        return response
    raw_key = _bearer_key(request)
    if not raw_key:
        return error_response(
            "Pass your API key as `Authorization: Bearer sk-...` or `?key=sk-...`.",
            status_code=401,
            code="invalid_api_key",
        )
    info = token_authenticate(raw_key) if key_is_well_formed(raw_key) else None
    if info is None or info.is_expired:
        return error_response(
            "This API key is not valid: it is malformed, unknown, disabled or expired.",
            status_code=401,
            code="invalid_api_key",
        )
    account = account_for_user(user_id=info.user_id)
    tokens = token_list(user_id=info.user_id).only("name", "quota_remaining", "used")
    response = JsonResponse(
        {
            "username": account.user.get_short_name(),
            "total_quota": micro_to_json(account.balance),
            "total_used_quota": micro_to_json(account.used),
            "request_count": account.request_count,
            "keys": [
                {
                    "name": token.name,
                    "remain_quota": -1
                    if token.quota_remaining is None
                    else micro_to_json(token.quota_remaining),
                    "used_quota": micro_to_json(token.used),
                }
                for token in tokens
            ],
        }
    )
    response["Cache-Control"] = "no-store"
    return response
