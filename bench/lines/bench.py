"""An enterprise line at 30M TPM on one account: what the relay admits and refuses.

Two modes:

- **http** (the default): starts the relay (`uvicorn comet.asgi:application`) as a
  process on the database and Redis you point it at, creates an enterprise line with
  `tpm_limit` 30,000,000, a user on it, a token, a model and a `mock` channel (answers
  built in the relay, usage = the mock's count of the prompt + its short reply), then
  offers `--offered-tpm` tokens a minute (36M by default) at a steady, open-loop pace
  (a request leaves every 1/rate seconds whatever the answers do) in requests of about
  `--request-chars` / 4 tokens, for `--seconds` seconds. Every answer is recorded: when
  it was sent, its status, and for a 200 the tokens its usage reported.
- **direct**: the same open-loop pace straight into `relay.limits.Limiter` (one Redis
  round trip to admit, one to release with the actual usage), without HTTP or the
  relay: what the limiter alone sustains, including in requests too small for HTTP on
  two cores.

Reported: the offered, admitted and refused rates (requests and tokens a minute) over
the steady part (after the first 60 s, whose empty window admits a burst), the most
tokens admitted in any 60-second window (every window that starts at an admission and
ends inside the run) over the limit — the window's **exactness** —, and the most the
limiter's own window held (its running total in Redis, sampled every 100 ms: estimates
of requests in flight included).

    DATABASE_URL=postgres://... REDIS_URL=redis://... .venv/bin/python bench/lines/bench.py
"""

import argparse
import asyncio
import bisect
import json
import os
import random
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import uvloop

ROOT = Path(__file__).resolve().parents[2]
MODEL = "bench-lines"
LINE = "enterprise-bench"
TPM_LIMIT = 30_000_000
WINDOW_S = 60.0
PORT = 9112
# The prompt's words: English-like text, about 4 characters a token.
PROSE = (
    "the of and to in is that for it as was with be by on not he this are or his from at "
    "which but have an they you were her she there been one all we their has would when "
    "if so no will more about can said up what its into out than them only other new some "
    "could time these two may then do first any my now such like our over man me even "
    "most made after also did many before must through back years where much your way "
    "well down should because each just those people how too little state good very make "
    "world still own see men work long get here between both life being under never day "
    "same another know while last might us great old year off come since against go came "
    "right used take three"
)
WORDS = PROSE.split()


def setup_django() -> None:
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "comet.settings.local")
    os.environ.setdefault("DEBUG", "False")
    import django

    django.setup()


def prompt_text(chars: int, seed: int) -> str:
    """Return English-like words, about `chars` characters."""
    rng = random.Random(seed)
    words: list[str] = []
    length = 0
    while length < chars:
        word = rng.choice(WORDS)
        words.append(word)
        length += len(word) + 1
    return " ".join(words)


def request_body(chars: int, max_tokens: int, seed: int = 1) -> dict:
    return {
        "model": MODEL,
        "messages": [{"role": "user", "content": prompt_text(chars, seed)}],
        "max_tokens": max_tokens,
    }


def request_tokens(body: dict) -> tuple[int, int]:
    """Return (the relay's estimate, the mock's usage) of one request: what the TPM
    limit admits on, and what it counts once the request is answered."""
    from relay import mock
    from relay.calls import hold_tokens, prompt_count
    from relay.upstream import CHAT
    from relay.usage import estimate_prompt_tokens

    class Price:  # what prompt_count and hold_tokens read of a model's price
        model_name = MODEL
        context_window = None
        completion_reserve = None

    counted = prompt_count(body=body, endpoint=CHAT, price=Price())  # type: ignore[arg-type]
    prompt, completion = hold_tokens(
        prompt_tokens=counted,
        body=body,
        price=Price(),
        has_completion=True,  # type: ignore[arg-type]
    )
    actual = estimate_prompt_tokens(body) + len(mock._pieces(body))
    return prompt + completion, actual


def prepare(concurrency: int) -> tuple[str, int]:
    """Create the enterprise line, its user (funded), a token, the model and a mock
    channel; return the token's key and the user's id."""
    from decimal import Decimal

    from django.core.management import call_command

    from accounts.services import user_line_set
    from billing.services import account_credit
    from models_catalog.models import CatalogModel, PricingGroup, Vendor
    from models_catalog.services import catalog_entry_create
    from relay.models import Channel
    from relay.services import channel_create
    from tests.factories import UserFactory
    from tokens.services import token_create

    call_command("migrate", verbosity=0)
    PricingGroup.objects.get_or_create(
        is_default=True, defaults={"name": "default", "display_name": "Default"}
    )
    line = PricingGroup.objects.filter(name=LINE).first()
    if line is None:
        line = PricingGroup(
            name=LINE,
            display_name="Enterprise (bench)",
            tpm_limit=TPM_LIMIT,
            # Concurrency never binds here: the bench measures the TPM window.
            concurrency_limit=1000,
        )
        catalog_entry_create(entry=line)
    # save(): the line's cached copy is dropped (models_catalog.signals).
    line.tpm_limit, line.concurrency_limit = TPM_LIMIT, 1000
    line.save(update_fields=["tpm_limit", "concurrency_limit"])
    vendor, _ = Vendor.objects.get_or_create(name="bench", defaults={"display_name": "Bench"})
    if not CatalogModel.objects.filter(name=MODEL).exists():
        catalog_entry_create(
            entry=CatalogModel(name=MODEL, vendor=vendor, model_ratio=Decimal("0.001"))
        )
    Channel.objects.filter(name__startswith="bench-lines").delete()
    channel_create(name=f"bench-lines-{uuid.uuid4().hex[:6]}", kind="mock", served_models=[MODEL])
    user = UserFactory(email=f"bench-lines-{uuid.uuid4().hex[:8]}@example.com")
    account_credit(user_id=user.pk, amount=10**12, idempotency_key=f"bench-lines:{user.pk}")
    user_line_set(
        user=user,
        pricing_group_id=line.pk,
        concurrency_limit=None,
        rpm_limit=None,
        tpm_limit=None,
        actor=None,
    )
    user.refresh_from_db()
    _token, key = token_create(user=user, name="bench", concurrency_limit=concurrency)
    return key, user.pk


@dataclass
class Record:
    sent: float  # seconds since the start, when the request left (or was admitted)
    status: int
    tokens: int  # tokens counted for it: its usage if answered, else 0
    bucket: int = -1  # direct mode: the limiter's 100 ms bucket it was counted in
    latency: float = 0.0  # seconds from sent to answered


@dataclass
class Run:
    records: list[Record] = field(default_factory=list)
    window_samples: list[int] = field(default_factory=list)
    behind: int = 0  # requests sent more than 50 ms after their time (the client lagged)


class Connection:
    """One keep-alive HTTP/1.1 connection."""

    def __init__(self, host: str, port: int, key: str, body: bytes) -> None:
        self.host, self.port = host, port
        self.request = (
            f"POST /v1/chat/completions HTTP/1.1\r\nHost: {host}:{port}\r\n"
            f"Authorization: Bearer {key}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode() + body

    async def open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)

    async def call(self) -> tuple[int, bytes]:
        self.writer.write(self.request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":")[1])
        return int(head[9:12]), await self.reader.readexactly(length)


async def sample_window(run: Run, user_id: int, stop: asyncio.Event) -> None:
    """Read the limiter's running total of the account's TPM window every 100 ms."""
    import redis.asyncio as aioredis

    from relay.limits import tpm_key

    client = aioredis.Redis.from_url(os.environ["REDIS_URL"])
    key = tpm_key(user_id)
    while not stop.is_set():
        value = await client.hget(key, "t")
        run.window_samples.append(int(value or 0))
        await asyncio.sleep(0.1)
    await client.aclose()


async def pace(rate: float, seconds: float, run: Run, fire) -> None:
    """Call `fire(sent_at)` every 1/rate seconds for `seconds`, without waiting for it."""
    started = time.perf_counter()
    tasks: set[asyncio.Task] = set()
    number = 0
    while True:
        due = number / rate
        if due >= seconds:
            break
        delay = started + due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        elif delay < -0.05:
            run.behind += 1
        task = asyncio.get_running_loop().create_task(fire(time.perf_counter() - started))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        number += 1
    if tasks:
        await asyncio.gather(*tasks)


async def pause_redis(at: float, milliseconds: int) -> None:
    """Stall Redis (`CLIENT PAUSE`: every client of the server waits) `at` seconds in."""
    import redis.asyncio as aioredis

    await asyncio.sleep(at)
    client = aioredis.Redis.from_url(os.environ["REDIS_URL"])
    paused = await client.execute_command("CLIENT", "PAUSE", milliseconds)
    print(f"Redis paused for {milliseconds} ms at {at} s: {paused!r}", file=sys.stderr)
    await client.aclose()


async def drive_http(
    url: str,
    key: str,
    user_id: int,
    body: dict,
    rate: float,
    seconds: float,
    pause: tuple[float, int] | None = None,
) -> Run:
    host, port = url.removeprefix("http://").split(":")
    payload = json.dumps(body).encode()
    idle: list[Connection] = []
    run = Run()
    stop = asyncio.Event()
    sampler = asyncio.get_running_loop().create_task(sample_window(run, user_id, stop))
    pausing = asyncio.get_running_loop().create_task(pause_redis(*pause)) if pause else None
    started = time.perf_counter()

    async def fire(sent: float) -> None:
        connection = idle.pop() if idle else None
        if connection is None:
            connection = Connection(host, int(port), key, payload)
            await connection.open()
        try:
            status, answer = await connection.call()
        except (asyncio.IncompleteReadError, ConnectionError):
            # The server closed a connection idle past its keep-alive: send it again.
            connection.writer.close()
            connection = Connection(host, int(port), key, payload)
            await connection.open()
            status, answer = await connection.call()
        idle.append(connection)
        tokens = 0
        if status == 200:
            usage = json.loads(answer)["usage"]
            tokens = usage["prompt_tokens"] + usage["completion_tokens"]
        latency = time.perf_counter() - started - sent
        run.records.append(Record(sent, status, tokens, latency=latency))

    await pace(rate, seconds, run, fire)
    stop.set()
    await sampler
    if pausing is not None:
        await pausing
    for connection in idle:
        connection.writer.close()
    return run


async def drive_direct(
    user_id: int, estimate: int, actual: int, rate: float, seconds: float
) -> Run:
    from relay.limits import Limiter, Limits

    limiter = Limiter(os.environ["REDIS_URL"], 60)
    limits = Limits(token_concurrency=100_000, account_concurrency=100_000, account_tpm=TPM_LIMIT)
    run = Run()
    stop = asyncio.Event()
    sampler = asyncio.get_running_loop().create_task(sample_window(run, user_id, stop))
    started = time.perf_counter()
    # As many in flight as the relay's Redis pool would allow a process (see limits.py).
    in_flight = asyncio.Semaphore(256)

    async def fire(_due: float) -> None:
        async with in_flight:
            admission = await limiter.acquire(
                token_id=user_id, user_id=user_id, limits=limits, tokens=estimate
            )
            # When it was admitted: the limiter counted it between the call and its answer.
            sent = time.perf_counter() - started
            slot = admission.slot
            if slot is not None:
                await limiter.release(slot, tokens_used=actual)
                run.records.append(Record(sent, 200, actual, slot.tpm_bucket or -1))
            else:
                run.records.append(Record(sent, 429, 0))

    await pace(rate, seconds, run, fire)
    stop.set()
    await sampler
    await limiter.aclose()
    return run


class Windows:
    """Sums over the run's 60-second windows [t, t + 60) of what each record adds."""

    def __init__(self, records: list[Record], value) -> None:
        pairs = sorted((record.sent, value(record)) for record in records)
        self.times = [at for at, _ in pairs]
        self.prefix = [0]
        for _, amount in pairs:
            self.prefix.append(self.prefix[-1] + amount)

    def total(self, start: float) -> int:
        first = bisect.bisect_left(self.times, start)
        stop = bisect.bisect_left(self.times, start + WINDOW_S)
        return self.prefix[stop] - self.prefix[first]


def report(run: Run, *, seconds: float, estimate: int, actual: int, rate: float) -> dict:
    """The rates over every 60 s window of the run, and the fullest window.

    The sustained rates are the mean over the windows starting every 100 ms from 0 to
    the end of the run minus 60 s (a constant offer above the limit makes the limiter
    admit in a one-minute cycle, so only whole windows say what a minute admits); the
    fullest window is searched among the windows starting at each admission too (the
    sum only changes there).
    """
    records = run.records
    statuses: dict[int, int] = {}
    for record in records:
        statuses[record.status] = statuses.get(record.status, 0) + 1
    latencies = sorted(record.latency for record in records)
    answers = {
        "requests": len(records),
        "statuses": statuses,
        "latency_p50_ms": round(latencies[len(latencies) // 2] * 1000, 1) if latencies else 0,
        "latency_p99_ms": round(latencies[int(len(latencies) * 0.99)] * 1000, 1)
        if latencies
        else 0,
        "latency_max_ms": round(latencies[-1] * 1000, 1) if latencies else 0,
    }
    if seconds < WINDOW_S:
        return answers
    admitted = Windows(records, lambda record: record.tokens)
    answered = Windows(records, lambda record: int(record.status == 200))
    refused = Windows(records, lambda record: int(record.status == 429))
    last_start = seconds - WINDOW_S
    starts = [step / 10 for step in range(int(last_start * 10) + 1)]
    starts += [at for at in admitted.times if at <= last_start]
    sums = [admitted.total(start) for start in starts]
    grid = starts[: int(last_start * 10) + 1]
    best = max(sums)
    best_at = starts[sums.index(best)]

    def mean(windows: Windows) -> float:
        return sum(windows.total(start) for start in grid) / len(grid)

    buckets = sorted((record.bucket, record.tokens) for record in records if record.bucket >= 0)
    bucket_best = 0
    if buckets:
        # The limiter's own windows: 600 consecutive buckets of its (Redis's) clock.
        per_bucket: dict[int, int] = {}
        for bucket, tokens in buckets:
            per_bucket[bucket] = per_bucket.get(bucket, 0) + tokens
        first, last = buckets[0][0], buckets[-1][0]
        running = 0
        for bucket in range(first, last + 1):
            running += per_bucket.get(bucket, 0) - per_bucket.get(bucket - 600, 0)
            bucket_best = max(bucket_best, running)
    return {
        "request_estimate_tokens": estimate,
        "request_actual_tokens": actual,
        "offered_req_per_s": round(rate, 2),
        "offered_tpm_actual": round(rate * 60 * actual),
        "offered_tpm_estimate": round(rate * 60 * estimate),
        "windows": len(grid),
        "admitted_tpm_mean": round(mean(admitted)),
        "admitted_tpm_min": min(admitted.total(start) for start in grid),
        "admitted_req_per_min_mean": round(mean(answered)),
        "refused_req_per_min_mean": round(mean(refused)),
        "refused_tpm_mean_actual": round(mean(refused) * actual),
        "max_60s_window_tokens": best,
        "max_60s_window_starts_at_s": round(best_at, 3),
        "exactness_max_window_over_limit": round(best / TPM_LIMIT, 5),
        "max_600_buckets_tokens": bucket_best or None,
        "limiter_window_max_tokens": max(run.window_samples, default=0),
        "limiter_window_max_over_limit": round(max(run.window_samples, default=0) / TPM_LIMIT, 5),
        "client_lagged_requests": run.behind,
        **answers,
    }


def wait_until_up(url: str) -> None:
    import httpx

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            httpx.get(f"{url}/v1/models", timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.2)
    raise SystemExit(f"{url} did not come up")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mode", choices=("http", "direct"), default="http")
    parser.add_argument("--seconds", type=float, default=180.0)
    parser.add_argument("--offered-tpm", type=float, default=36_000_000)
    parser.add_argument("--request-chars", type=int, default=32_000)
    parser.add_argument("--max-tokens", type=int, default=2048)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument(
        "--direct-tokens",
        type=int,
        default=0,
        help="direct mode: each request's estimate (and usage: --direct-actual), instead of "
        "the HTTP request's",
    )
    parser.add_argument("--direct-actual", type=int, default=0)
    parser.add_argument(
        "--pause-at",
        type=float,
        default=None,
        help="http mode: stall Redis (CLIENT PAUSE, the whole server) this many seconds in",
    )
    parser.add_argument("--pause-ms", type=int, default=3000)
    arguments = parser.parse_args()
    if not os.environ.get("DATABASE_URL") or not os.environ.get("REDIS_URL"):
        raise SystemExit("Set DATABASE_URL (PostgreSQL) and REDIS_URL: the bench measures them.")
    setup_django()
    body = request_body(arguments.request_chars, arguments.max_tokens)
    estimate, actual = request_tokens(body)
    if arguments.mode == "direct" and arguments.direct_tokens:
        estimate = arguments.direct_tokens
        actual = arguments.direct_actual or estimate
    # The offered rate, in requests a second, from the tokens each request really uses.
    rate = arguments.offered_tpm / 60 / actual
    key, user_id = prepare(concurrency=1000)
    uvloop.install()
    if arguments.mode == "direct":
        run = asyncio.run(drive_direct(user_id, estimate, actual, rate, arguments.seconds))
    else:
        relay_url = f"http://127.0.0.1:{PORT}"
        # The relay's own log (errors, if any), kept for a look after the run.
        relay_log = tempfile.NamedTemporaryFile(  # noqa: SIM115
            "w", prefix="bench-lines-relay-", suffix=".log", delete=False
        )
        print(f"relay log: {relay_log.name}", file=sys.stderr)
        relay = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "comet.asgi:application",
                "--app-dir",
                str(ROOT),
                "--port",
                str(PORT),
                "--workers",
                str(arguments.workers),
                "--no-access-log",
                "--log-level",
                "warning",
                "--loop",
                "uvloop",
                "--http",
                "httptools",
                "--no-proxy-headers",
                "--timeout-keep-alive",
                "300",
            ],
            cwd=ROOT,
            env=dict(os.environ),
            # Django's LOGGING writes uvicorn's access log whatever --no-access-log says.
            stdout=subprocess.DEVNULL,
            stderr=relay_log,
        )
        try:
            wait_until_up(relay_url)
            pause = None if arguments.pause_at is None else (arguments.pause_at, arguments.pause_ms)
            run = asyncio.run(
                drive_http(relay_url, key, user_id, body, rate, arguments.seconds, pause)
            )
        finally:
            relay.terminate()
            relay.wait()
            relay_log.close()
    result = report(run, seconds=arguments.seconds, estimate=estimate, actual=actual, rate=rate)
    result = {"mode": arguments.mode, "workers": arguments.workers, **result}
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
