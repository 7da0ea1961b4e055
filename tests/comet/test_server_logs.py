import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

PROJECT_ROOT = Path(__file__).resolve().parents[2]
KEY = "sk-" + "Z9y8X7w6V5u4T3s2R1q0P9o8N7m6L5k4J3i2"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_uvicorn_access_log_never_shows_a_full_api_key():
    # Given the ASGI server as production and `make run` start it, with its access log on,
    port = free_port()
    # (a key with a bad checksum: refused before any database or cache lookup)
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "comet.settings.test"}
    server = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "comet.asgi:application", "--port", str(port)],
        cwd=PROJECT_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "uvicorn did not start"
                time.sleep(0.2)
        # when a program asks for its quota with the key in the query string,
        response = httpx.get(f"http://127.0.0.1:{port}/user/quota", params={"key": KEY})
    finally:
        server.terminate()
        output, _ = server.communicate(timeout=10)

    # then the request is answered and logged, with the key cut to its last four characters.
    assert response.status_code == 401
    assert '"GET /user/quota?key=sk-…J3i2 HTTP/1.1" 401' in output
    assert KEY not in output
    assert KEY[3:] not in output
