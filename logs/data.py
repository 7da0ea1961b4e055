"""What the relay hands to `usage_settle` about one request (never its content)."""

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal


@dataclass(frozen=True, kw_only=True)
class RequestLogData:
    """The facts of one request that become its `RequestLog` row.

    The cost, the request id, the user and the token are given to the metering
    service separately; everything here is metadata. Never put request or
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
    price_per_call: int | None = None
    error_code: str = ""
    latency_ms: int = 0
    first_token_ms: int | None = None
    is_stream: bool = False
    usage_estimated: bool = False
    created_at: datetime | None = field(default=None)
