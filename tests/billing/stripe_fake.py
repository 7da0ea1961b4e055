"""A fake Stripe API on loopback that the real `stripe` library talks to, and signed events.

It answers the two calls Comet makes -- create and retrieve a Checkout Session --
with JSON shaped like Stripe's, replays the first answer for a repeated
idempotency key as Stripe does, and records every request so tests can assert
the exact amount and key that were sent.
"""

import hashlib
import hmac
import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl

WEBHOOK_SECRET = "whsec_test_comet"
SECRET_KEY = "sk_test_comet_fake"


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    form: dict[str, str]


@dataclass
class FakeStripe:
    url: str = ""
    requests: list[Recorded] = field(default_factory=list)
    sessions: dict[str, dict[str, Any]] = field(default_factory=dict)
    by_idempotency_key: dict[str, str] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def creates(self) -> list[Recorded]:
        return [r for r in self.requests if r.method == "POST"]

    def pay(self, session_id: str, **changes: Any) -> dict[str, Any]:
        """Make the session paid, as if the customer finished Checkout."""
        session = self.sessions[session_id]
        session.update(
            status="complete",
            payment_status="paid",
            payment_intent=f"pi_{session['metadata']['order_number']}",
        )
        session.update(changes)
        return session


def _session_from_form(form: dict[str, str]) -> dict[str, Any]:
    amount = int(form["line_items[0][price_data][unit_amount]"]) * int(
        form.get("line_items[0][quantity]", "1")
    )
    session_id = f"cs_test_{uuid.uuid4().hex}"
    return {
        "id": session_id,
        "object": "checkout.session",
        "url": f"https://checkout.stripe.com/c/pay/{session_id}",
        "status": "open",
        "payment_status": "unpaid",
        "amount_total": amount,
        "currency": form["line_items[0][price_data][currency]"],
        "livemode": False,
        "mode": form.get("mode", "payment"),
        "payment_intent": None,
        "client_reference_id": form.get("client_reference_id"),
        "metadata": {"order_number": form.get("metadata[order_number]", "")},
    }


def start_fake_stripe() -> tuple[FakeStripe, ThreadingHTTPServer]:
    fake = FakeStripe()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def _answer(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Request-Id", f"req_{uuid.uuid4().hex[:12]}")
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            form = dict(parse_qsl(self.rfile.read(length).decode(), keep_blank_values=True))
            with fake.lock:
                fake.requests.append(Recorded("POST", self.path, dict(self.headers), form))
                if self.path != "/v1/checkout/sessions":
                    self._answer(404, {"error": {"type": "invalid_request_error"}})
                    return
                key = self.headers.get("Idempotency-Key", "")
                if key and key in fake.by_idempotency_key:
                    session = fake.sessions[fake.by_idempotency_key[key]]
                else:
                    session = _session_from_form(form)
                    fake.sessions[session["id"]] = session
                    if key:
                        fake.by_idempotency_key[key] = session["id"]
            self._answer(200, session)

        def do_GET(self) -> None:
            with fake.lock:
                fake.requests.append(Recorded("GET", self.path, dict(self.headers), {}))
                prefix = "/v1/checkout/sessions/"
                session = fake.sessions.get(self.path.split("?")[0].removeprefix(prefix))
            if not self.path.startswith(prefix) or session is None:
                self._answer(
                    404, {"error": {"type": "invalid_request_error", "message": "No such session"}}
                )
                return
            self._answer(200, session)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    fake.url = f"http://127.0.0.1:{server.server_address[1]}"
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return fake, server


def sign(payload: bytes, *, secret: str = WEBHOOK_SECRET, timestamp: int | None = None) -> str:
    """Return a Stripe-Signature header for `payload`, as Stripe computes it."""
    timestamp = int(time.time()) if timestamp is None else timestamp
    signed = f"{timestamp}.".encode() + payload
    digest = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def event(kind: str, obj: dict[str, Any], *, event_id: str | None = None) -> bytes:
    return json.dumps(
        {
            "id": event_id or f"evt_{uuid.uuid4().hex}",
            "object": "event",
            "type": kind,
            "livemode": False,
            "created": int(time.time()),
            "api_version": "2025-01-27.acacia",
            "data": {"object": obj},
        }
    ).encode()


def session_object(order: Any, *, payment_status: str = "paid", **changes: Any) -> dict[str, Any]:
    """The Checkout Session of `order` as a webhook carries it."""
    session = {
        "id": order.stripe_session_id or f"cs_test_{order.number}",
        "object": "checkout.session",
        "status": "complete",
        "payment_status": payment_status,
        "amount_total": order.amount_minor,
        "currency": order.currency,
        "livemode": False,
        "payment_intent": f"pi_{order.number}",
        "client_reference_id": order.number,
        "metadata": {"order_number": order.number},
    }
    session.update(changes)
    return session


def charge_object(order: Any, refunds: list[tuple[str, int]]) -> dict[str, Any]:
    """A charge of `order` after `refunds` ((refund id, minor amount), oldest first)."""
    return {
        "id": f"ch_{order.number}",
        "object": "charge",
        "amount": order.amount_minor,
        "amount_refunded": sum(amount for _, amount in refunds),
        "currency": order.currency,
        "payment_intent": f"pi_{order.number}",
        "refunded": sum(amount for _, amount in refunds) >= order.amount_minor,
        "refunds": {
            "object": "list",
            "data": [
                {
                    "id": refund_id,
                    "object": "refund",
                    "amount": amount,
                    "created": 1_700_000_000 + n,
                    "status": "succeeded",
                }
                for n, (refund_id, amount) in reversed(list(enumerate(refunds)))
            ],
        },
    }


def dispute_object(order: Any, *, dispute_id: str, status: str, amount: int | None = None):
    return {
        "id": dispute_id,
        "object": "dispute",
        "amount": order.amount_minor if amount is None else amount,
        "currency": order.currency,
        "charge": f"ch_{order.number}",
        "payment_intent": f"pi_{order.number}",
        "status": status,
    }
