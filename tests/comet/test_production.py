"""The site under production settings, started the way the README and the Procfile say.

The test reads the Procfile and runs its `release` line, then its `web`, `worker` and
`beat` lines, each through `bash -c` with the production environment (so a changed
flag in the Procfile is what gets tested), against a database of its own. It then
drives the site over HTTP as a customer behind the TLS proxy would: the test is that
proxy (from 127.0.0.1, which production trusts by default), adding X-Forwarded-For and
X-Forwarded-Proto. Upstream of the relay is the fake upstream (`tests.fake_upstream`);
Stripe is the fake Stripe API of the billing tests (`tests.billing.stripe_fake`).

Every process writes its log to a file; on a failure the logs are printed.
"""

import contextlib
import logging
import os
import re
import secrets
import shlex
import signal
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import openai
import psycopg
import pytest
from django.conf import settings

from tests.billing.stripe_fake import SECRET_KEY as STRIPE_SECRET_KEY
from tests.billing.stripe_fake import WEBHOOK_SECRET, event, sign, start_fake_stripe
from tests.fake_upstream import FakeUpstream, ServerThread
from tests.settings_module import settings_environment

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
HOST = "comet.example.com"
PUBLIC_URL = f"https://{HOST}"
CLIENT_IP = "203.0.113.7"  # the customer, as the proxy reports it
PROXY_HEADERS = {"Host": HOST, "X-Forwarded-For": CLIENT_IP, "X-Forwarded-Proto": "https"}
EMAIL = "customer@example.com"
PASSWORD = "a-Long-and-unusual-passphrase-42"
MODEL = "gpt-prod-test"
UPSTREAM_KEY = "sk-upstream-secret-for-production-test"
USD = 1_000_000
FUNDS = 20 * USD
RECHARGE_USD = 25


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def procfile() -> dict[str, str]:
    """The Procfile's process types and their command lines."""
    lines = (ROOT / "Procfile").read_text().splitlines()
    found = (re.match(r"^([A-Za-z0-9_-]+):\s*(.+)$", line) for line in lines)
    return {match[1]: match[2] for match in found if match}


def wait_until(condition: Callable[[], Any], *, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        assert time.monotonic() < deadline, f"timed out after {timeout} s waiting for {what}"
        time.sleep(0.1)


# --- The database, the processes and their logs -------------------------------------


class Database:
    """A fresh PostgreSQL database on the suite's server, dropped at the end."""

    def __init__(self) -> None:
        server = settings.DATABASES["default"]
        self.name = f"comet_prod_{uuid.uuid4().hex[:8]}"
        self.parameters = {
            "host": server["HOST"] or "127.0.0.1",
            "port": server["PORT"] or 5432,
            "user": server["USER"],
            "password": server["PASSWORD"] or None,
        }
        password = f":{quote(server['PASSWORD'], safe='')}" if server["PASSWORD"] else ""
        self.url = (
            f"postgres://{quote(server['USER'], safe='')}{password}"
            f"@{self.parameters['host']}:{self.parameters['port']}/{self.name}"
        )

    def _execute(self, statement: str) -> None:
        with psycopg.connect(dbname="postgres", autocommit=True, **self.parameters) as admin:
            admin.execute(statement)

    def create(self) -> None:
        self._execute(f'CREATE DATABASE "{self.name}"')

    def drop(self) -> None:
        self._execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')


class Processes:
    """The Procfile's processes, each in its own process group with its log in a file."""

    def __init__(self, environment: dict[str, str], log_dir: Path) -> None:
        self.environment = environment
        self.log_dir = log_dir
        self.running: dict[str, subprocess.Popen] = {}
        self.logs: list[Path] = []

    def _log(self, name: str) -> Path:
        path = self.log_dir / f"{name}.log"
        self.logs.append(path)
        return path

    def start(self, name: str, command: str) -> subprocess.Popen:
        with self._log(name).open("w") as log:
            process = subprocess.Popen(
                ["bash", "-c", command],
                cwd=ROOT,
                env=self.environment,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.running[name] = process
        return process

    def run(self, name: str, command: str, timeout: float) -> tuple[int, str]:
        """Run `command` to its end; return its exit status and output (also logged)."""
        path = self._log(name)
        with path.open("w") as log:
            result = subprocess.run(
                ["bash", "-c", command],
                cwd=ROOT,
                env=self.environment,
                stdout=log,
                stderr=subprocess.STDOUT,
                timeout=timeout,
                check=False,
            )
        return result.returncode, path.read_text()

    def exited(self) -> list[str]:
        return [name for name, process in self.running.items() if process.poll() is not None]

    def stop(self) -> None:
        """SIGTERM each process group, then SIGKILL what is left after a few seconds."""
        for process in self.running.values():
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + 8
        for process in self.running.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)  # pool children of a stopped parent
            process.wait(timeout=10)

    def print_logs(self, lines: int = 300) -> None:
        for path in self.logs:
            tail = path.read_text().splitlines()[-lines:] if path.exists() else []
            print(f"\n===== {path} (last {lines} lines) =====", *tail, sep="\n")


# --- A customer's browser behind the proxy ----------------------------------------------


class Browser:
    """A signed-in customer's browser, through the TLS proxy the test plays.

    Its cookies are kept here (the production ones are Secure: the proxy speaks HTTPS
    to the browser) and sent back with every request, with the CSRF token and Origin
    a browser sends on a form or an htmx request.
    """

    def __init__(self, url: str) -> None:
        self.client = httpx.Client(base_url=url, headers=PROXY_HEADERS, timeout=30)
        self.cookies: dict[str, str] = {}

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = dict(kwargs.pop("headers", {}))
        headers["Cookie"] = "; ".join(f"{name}={value}" for name, value in self.cookies.items())
        if method != "GET":
            headers["Origin"] = PUBLIC_URL
            headers["X-CSRFToken"] = self.cookies.get("__Secure-csrftoken", "")
        response = self.client.request(method, path, headers=headers, **kwargs)
        for cookie in response.cookies.jar:
            self.cookies[cookie.name] = cookie.value or ""
        self.client.cookies.clear()
        return response

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("POST", path, **kwargs)

    def form(self, path: str, data: dict[str, str]) -> httpx.Response:
        """GET a form page (for its CSRF cookie), then POST `data` to it."""
        page = self.get(path)
        assert page.status_code == 200, (path, page.status_code, page.text[:500])
        token = self.cookies["__Secure-csrftoken"]
        return self.post(path, data={**data, "csrfmiddlewaretoken": token})

    def account(self) -> dict[str, Any]:
        response = self.get("/api/account/")
        assert response.status_code == 200, response.text
        return response.json()

    def balance(self) -> int:
        return usd_to_micro(self.account()["balance"])

    def logs(self) -> list[dict[str, Any]]:
        """Every row of the request log of the last hour, following the pages."""
        rows: list[dict[str, Any]] = []
        params = {"range": "1h"}
        while True:
            response = self.get("/api/v1/logs", params=params)
            assert response.status_code == 200, response.text
            page = response.json()
            rows += page["data"]
            if not page["next_cursor"]:
                return rows
            params = {"range": "1h", "cursor": page["next_cursor"]}

    def token_create(self, name: str) -> tuple[int, str]:
        response = self.post("/api/tokens/", json={"name": name})
        assert response.status_code == 201, response.text
        return response.json()["id"], response.json()["key"]


def usd_to_micro(text: str) -> int:
    return int(Decimal(text) * USD)


def relay_client(url: str, key: str) -> openai.OpenAI:
    """The official SDK, through the proxy: only base_url, api_key and its headers change."""
    return openai.OpenAI(
        base_url=f"{url}/v1", api_key=key, default_headers=PROXY_HEADERS, max_retries=0, timeout=30
    )


def chat(client: openai.OpenAI) -> Any:
    return client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Say hello"}], max_tokens=32
    )


def cost_of(prompt_tokens: int, completion_tokens: int) -> int:
    # Model ratio 1.5 at 2 micro-USD a token, completion ratio 2 (the catalog entry below).
    return (prompt_tokens + 2 * completion_tokens) * 3


@dataclass
class Call:
    started: float
    status: int


# --- The site -----------------------------------------------------------------------

SETUP = """
from decimal import Decimal
from models_catalog.models import CatalogModel, Vendor
from models_catalog.services import catalog_entry_create
from relay.services import channel_create

vendor = Vendor.objects.create(name="prodtest", display_name="Production test")
catalog_entry_create(entry=CatalogModel(
    name={model!r}, vendor=vendor, model_ratio=Decimal("1.5"), completion_ratio=Decimal("2")
))
channel_create(
    name="fake upstream", kind="openai", base_url={base_url!r}, api_key={api_key!r},
    served_models=[{model!r}],
)
print("catalog and channel created")
"""


@pytest.fixture
def fake_upstream():
    app = FakeUpstream()
    server = ServerThread(app).start()
    server.app = app  # type: ignore[attr-defined]
    yield server
    server.stop()


@pytest.fixture
def fake_stripe():
    fake, server = start_fake_stripe()
    yield fake
    server.shutdown()


def test_production_site_serves_relays_bills_and_credits(
    tmp_path, caplog, fake_upstream, fake_stripe
):
    caplog.set_level(logging.WARNING, logger="httpx2")  # the SDK's line per call
    processes_of = procfile()
    assert {"release", "web", "worker", "beat"} <= processes_of.keys(), processes_of
    database = Database()
    port = free_port()
    mail_dir = tmp_path / "mail"
    mail_dir.mkdir()
    environment = {
        "PATH": f"{ROOT / '.venv/bin'}:{os.environ.get('PATH', '/usr/bin:/bin')}",
        "HOME": os.environ.get("HOME", str(tmp_path)),
        "LANG": os.environ.get("LANG", "C.UTF-8"),
        "PYTHONUNBUFFERED": "1",
        "SECRET_KEY": secrets.token_urlsafe(50),
        "ALLOWED_HOSTS": HOST,
        "COMET_PUBLIC_URL": PUBLIC_URL,
        "DATABASE_URL": database.url,
        "REDIS_URL": settings.REDIS_URL,
        # django-environ reads the path after "filemail://" as relative: "/" + absolute path.
        "EMAIL_URL": f"filemail:///{mail_dir}",
        "STRIPE_SECRET_KEY": STRIPE_SECRET_KEY,
        "STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "STRIPE_API_BASE": fake_stripe.url,
        "PORT": str(port),
        # Production settings, but the keys and queue of this run only, on the suite's
        # Redis database, and the static files in a folder of its own.
        **settings_environment(
            tmp_path,
            "comet.settings.production",
            f'CACHES["default"]["KEY_PREFIX"] = "comet-prod-{database.name}"',
            CELERY_TASK_DEFAULT_QUEUE=database.name,
            STATIC_ROOT=str(tmp_path / "static"),
        ),
    }
    processes = Processes(environment, tmp_path)
    schedules_before = set(ROOT.glob("celerybeat-schedule*"))
    database.create()
    try:
        run_the_site(processes, processes_of, port, mail_dir, fake_upstream, fake_stripe)
    except BaseException:
        processes.stop()
        processes.print_logs()
        raise
    finally:
        processes.stop()
        database.drop()
        # beat keeps its schedule in the working directory, as the Procfile runs it.
        for path in set(ROOT.glob("celerybeat-schedule*")) - schedules_before:
            path.unlink()


def run_the_site(
    processes: Processes,
    processes_of: dict[str, str],
    port: int,
    mail_dir: Path,
    fake_upstream: ServerThread,
    fake_stripe: Any,
) -> None:
    url = f"http://127.0.0.1:{port}"
    started = time.monotonic()

    def mark(what: str) -> None:
        """Say how long the run took to get here (shown with the logs of a failure)."""
        print(f"{time.monotonic() - started:5.1f} s  {what}")

    # The release step migrates the new database and collects the static files.
    status, output = processes.run("release", processes_of["release"], timeout=60)
    assert status == 0, output
    mark("released")
    for name in ("web", "worker", "beat"):
        processes.start(name, processes_of[name])
    setup = SETUP.format(
        model=MODEL, base_url=f"{fake_upstream.url}/delay-50/v1", api_key=UPSTREAM_KEY
    )
    command = f"python manage.py shell -v 0 -c {shlex.quote(setup)}"
    status, output = processes.run("setup", command, timeout=30)
    assert status == 0, output

    def web_answers() -> bool:
        assert not processes.exited(), f"{processes.exited()} stopped"
        try:
            return httpx.get(f"{url}/healthz", headers=PROXY_HEADERS, timeout=5).status_code == 200
        except httpx.TransportError:
            return False

    wait_until(web_answers, timeout=45, what="GET /healthz to answer 200")
    mark("web answers")
    # Production settings are in force: plain HTTP is sent to HTTPS.
    plain = httpx.get(f"{url}/pricing", headers={"Host": HOST}, timeout=10)
    assert (plain.status_code, plain.headers.get("Location")) == (301, f"{PUBLIC_URL}/pricing")

    # (1) A customer signs up, follows the emailed link (it starts with COMET_PUBLIC_URL),
    # is signed in by it and enters the password again; the operator credits the account.
    browser = Browser(url)
    response = browser.form(
        "/accounts/signup/", {"email": EMAIL, "password1": PASSWORD, "password2": PASSWORD}
    )
    assert response.status_code == 302, response.text[:2000]
    link = wait_until(
        lambda: re.search(
            rf"{re.escape(PUBLIC_URL)}(/accounts/confirm-email/\S+/)",
            "".join(path.read_text() for path in mail_dir.iterdir()),
        ),
        timeout=10,
        what="the verification email",
    )[1]
    response = browser.form(link, {})
    assert response.status_code == 302, response.text[:2000]
    # Being signed in by the link is not a sign-in with the password, which creating a
    # token asks for (tokens.views.signed_in_recently).
    response = browser.form("/accounts/reauthenticate/", {"password": PASSWORD})
    assert response.status_code == 302, response.text[:2000]
    home = browser.get("/")
    assert home.status_code == 200
    assert "Sign out" in home.text
    # WhiteNoise serves what the release step collected, under its hashed name.
    stylesheet = re.search(r'href="(/static/[^"]+\.css)"', home.text)
    assert stylesheet, home.text[:2000]
    assert browser.get(stylesheet[1]).status_code == 200
    command = f"python manage.py credit {EMAIL} {FUNDS // USD} --reason 'Production test'"
    status, output = processes.run("credit", command, timeout=30)
    assert status == 0, output
    assert browser.balance() == FUNDS

    mark("step 2")
    # (2) The SDK through the proxy: answered, logged with the client's address, charged
    # exactly its cost.
    sdk_token_id, sdk_key = browser.token_create("sdk")
    answer = chat(relay_client(url, sdk_key))
    assert answer.choices[0].message.content.startswith("Hello from Comet")
    assert fake_upstream.app.stats.last_authorization == f"Bearer {UPSTREAM_KEY}"  # type: ignore[attr-defined]
    [row] = wait_until(browser.logs, timeout=10, what="the request log row")
    assert row["token_id"] == sdk_token_id
    assert row["ip"] == CLIENT_IP
    assert row["status"] == 200
    assert (row["prompt_tokens"], row["completion_tokens"]) == (
        answer.usage.prompt_tokens,
        answer.usage.completion_tokens,
    )
    cost = cost_of(answer.usage.prompt_tokens, answer.usage.completion_tokens)
    assert usd_to_micro(row["cost"]) == cost
    assert browser.balance() == FUNDS - cost

    mark("step 3")
    # (3) A token deleted while calls with it are in flight: the delete answers, every
    # call started more than a second after that is refused, every call answered is
    # logged and charged.
    token_id, key = browser.token_create("deleted while in use")
    calls, deleted_at, delete = calls_around_delete(url, key, browser, token_id)
    assert delete.status_code == 204, delete.text[:2000]
    late = [call for call in calls if call.started > deleted_at + 1.0]
    assert late, "no call started more than a second after the delete"
    assert {call.status for call in late} == {401}, sorted(
        (round(call.started - deleted_at, 2), call.status) for call in late if call.status != 401
    )
    assert {call.status for call in calls} <= {200, 401}, [call.status for call in calls]
    answered = sum(call.status == 200 for call in calls)
    assert answered, "no call was answered before the delete"

    def rows_of_deleted_token() -> list[dict[str, Any]] | None:
        rows = [row for row in browser.logs() if row["token_name"] == "deleted while in use"]
        return rows if len(rows) >= answered else None

    rows = wait_until(rows_of_deleted_token, timeout=10, what="every answered call's log row")
    assert len(rows) == answered
    assert all(row["status"] == 200 and row["ip"] == CLIENT_IP for row in rows)
    charged = cost + sum(usd_to_micro(row["cost"]) for row in rows)
    account = browser.account()
    assert usd_to_micro(account["used"]) == charged
    assert usd_to_micro(account["balance"]) == FUNDS - charged
    assert account["request_count"] == 1 + answered

    mark("step 4")
    # (4) A card payment: the checkout sends the browser to Stripe; Stripe's signed
    # webhook marks the order paid and the Procfile's worker credits it.
    balance = FUNDS - charged
    assert browser.get("/recharge/").status_code == 200
    response = browser.post("/billing/recharge/checkout/", data={"amount": str(RECHARGE_USD)})
    assert response.status_code == 303, response.text[:2000]
    session_id = response.headers["Location"].rsplit("/", 1)[1]
    assert session_id in fake_stripe.sessions
    payload = event("checkout.session.completed", fake_stripe.pay(session_id))
    webhook = httpx.post(
        f"{url}/billing/stripe/webhook/",
        content=payload,
        headers={
            **PROXY_HEADERS,
            "Content-Type": "application/json",
            "Stripe-Signature": sign(payload),
        },
        timeout=30,
    )
    assert webhook.status_code == 200, webhook.text
    wait_until(
        lambda: browser.balance() == balance + RECHARGE_USD * USD,
        timeout=30,
        what="the worker to credit the paid order",
    )
    assert usd_to_micro(browser.account()["recharged"]) == RECHARGE_USD * USD

    mark("step 5")
    # (5) The books close, and every process is still up, having logged no traceback.
    status, output = processes.run("reconcile", "python manage.py reconcile", timeout=30)
    assert status == 0, output
    assert "The books close: no drift." in output
    assert not processes.exited(), f"{processes.exited()} stopped"
    for path in processes.logs:
        assert "Traceback" not in path.read_text(), f"{path.name} logged a traceback"
    mark("done")


def calls_around_delete(
    url: str, key: str, browser: Browser, token_id: int, threads: int = 8
) -> tuple[list[Call], float, httpx.Response]:
    """Call the relay from `threads` threads in a loop; delete the token a second in.

    Return every call (when it started, the status it got), when the delete was
    answered, and its response. The calls go on 2.5 s after the delete.
    """
    calls: list[Call] = []
    stop = threading.Event()

    def loop() -> None:
        client = relay_client(url, key)
        while not stop.is_set():
            started = time.monotonic()
            try:
                chat(client)
                status = 200
            except openai.APIStatusError as error:
                status = error.status_code
            except openai.APIConnectionError:
                status = 0
            calls.append(Call(started, status))
            stop.wait(0.02)

    workers = [threading.Thread(target=loop, daemon=True) for _ in range(threads)]
    for worker in workers:
        worker.start()
    try:
        time.sleep(1.0)
        response = browser.request("DELETE", f"/api/tokens/{token_id}/")
        deleted_at = time.monotonic()
        time.sleep(2.5)
    finally:
        stop.set()
        for worker in workers:
            worker.join(timeout=35)
    return calls, deleted_at, response
