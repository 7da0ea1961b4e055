"""Start a real Celery worker on our Redis database, our test database and our own queue."""

import os
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from typing import IO, Any

from django.conf import settings
from django.db import connection

from tests.settings_module import settings_environment

ROOT = Path(__file__).resolve().parents[2]


class Worker:
    """One `celery worker` process group, consuming only `queue`.

    It runs `make run`'s settings on this process's database, Redis database and cache
    keys, sends its tasks to `queue` and its email to `smtp_port`; `settings` changes
    more of them (e.g. a short lease).
    """

    def __init__(
        self,
        *,
        queue: str,
        smtp_port: int,
        concurrency: int = 1,
        output: IO[str] | None = None,
        **settings_changed: Any,
    ):
        self.queue = queue
        self.settings_dir = tempfile.mkdtemp(prefix="comet-worker-")
        key_prefix = settings.CACHES["default"]["KEY_PREFIX"]
        environment = {
            **os.environ,
            "DEBUG": "false",
            "DATABASE_URL": "postgres://{USER}@{HOST}:{PORT}/{NAME}".format(
                **connection.settings_dict
            ),
            "REDIS_URL": settings.REDIS_URL,
            "EMAIL_URL": f"smtp://127.0.0.1:{smtp_port}",
            **settings_environment(
                Path(self.settings_dir),
                "comet.settings.local",
                f'CACHES["default"]["KEY_PREFIX"] = {key_prefix!r}',
                'LOGGING["root"]["level"] = "WARNING"',
                CELERY_TASK_DEFAULT_QUEUE=queue,
                **settings_changed,
            ),
        }
        command = [str(ROOT / ".venv/bin/celery"), "-A", "comet", "worker", "-Q", queue]
        command += ["-c", str(concurrency), "-P", "prefork", "-l", "WARNING", "-n", f"{queue}@%h"]
        command += ["--without-gossip", "--without-mingle", "--without-heartbeat"]
        # `output`: a file for what the worker writes (its log); else this process's.
        self.process = subprocess.Popen(
            command,
            cwd=ROOT,
            env=environment,
            start_new_session=True,
            stdout=output,
            stderr=subprocess.STDOUT if output is not None else None,
        )

    def kill(self) -> None:
        """SIGKILL the whole group: the parent and its pool children die at once."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)
        shutil.rmtree(self.settings_dir, ignore_errors=True)

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()
        shutil.rmtree(self.settings_dir, ignore_errors=True)


def unique_queue(prefix: str = "comet_catalog_test") -> str:
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


def send(task: str, *args, queue: str) -> None:
    """Enqueue on the broker even though this process runs tasks eagerly."""
    from comet.celery import app

    app.send_task(task, args=list(args), queue=queue)


def wait_for(condition, *, timeout: float, interval: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(interval)
    return condition()
