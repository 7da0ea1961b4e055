"""What the relay hands to the credit meter about one request (never its content)."""

from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import Decimal

from core.clientaddress import UNKNOWN_ADDRESS

_INT4_MAX = 2**31 - 1


@dataclass(frozen=True, kw_only=True)
class RequestLogData:
    """The facts of one request that become its `RequestLog` row.

    The cost, the request id, the user and the token are given to the credit
    meter separately; everything here is metadata. Never put request or
    response content in here: there is no field for it on purpose.
    """

    model: str
    client_ip: str
    status_code: int = 200
    token_name: str = ""
    channel_id: int | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    model_ratio: Decimal = Decimal(1)
    completion_ratio: Decimal = Decimal(1)
    group_ratio: Decimal = Decimal(1)
    # The ratio cached prompt tokens were billed at (`pricing.billed_cached_ratio`);
    # None when it is not known.
    cached_ratio: Decimal | None = None
    price_per_call: int | None = None
    # A price per unit (`RequestLog.unit`): the unit, how many were billed, at what price.
    unit: str = ""
    unit_count: int = 0
    unit_price: int | None = None
    error_code: str = ""
    latency_ms: int = 0
    first_token_ms: int | None = None
    is_stream: bool = False
    usage_estimated: bool = False
    created_at: datetime | None = field(default=None)

    def without_details(self) -> "RequestLogData":
        """The same request with every detail the database might refuse made storable.

        A settled request whose row was refused is written again with this: the
        address becomes `UNKNOWN_ADDRESS`, texts lose NULs and are cut to their
        columns, counts are capped to what an integer column holds. The cost is
        given separately and never changes: the charge stands.
        """

        def text(value: str, limit: int) -> str:
            return value.replace("\x00", "").encode("utf-8", "replace").decode()[:limit]

        def count(value: int | None) -> int | None:
            return None if value is None else max(0, min(value, _INT4_MAX))

        return replace(
            self,
            model=text(self.model, 200) or "unknown",
            client_ip=UNKNOWN_ADDRESS,
            token_name=text(self.token_name, 100),
            prompt_tokens=count(self.prompt_tokens) or 0,
            completion_tokens=count(self.completion_tokens) or 0,
            cached_tokens=count(self.cached_tokens) or 0,
            error_code=text(self.error_code, 64),
            latency_ms=count(self.latency_ms) or 0,
            first_token_ms=count(self.first_token_ms),
            status_code=count(self.status_code) or 0,
        )


@dataclass(frozen=True, kw_only=True)
class RefusalData:
    """Refusals of one token with one error code within one second, and how many."""

    second: datetime
    user_id: int
    token_id: int
    token_name: str
    status_code: int
    error_code: str
    model: str
    client_ip: str
    count: int = 1
