"""Tell whether PostgreSQL or Redis answers at a URL (exit 0) or not (exit 1).

Usage: wait_for_services.py postgres|redis URL [--wait]
With --wait, keep trying for 30 seconds.
"""

import sys
import time
from urllib.parse import urlsplit


def postgres_answers(url: str) -> bool:
    import psycopg
    import psycopg.sql

    parts = urlsplit(url)
    database = parts.path.lstrip("/") or "postgres"
    try:
        with psycopg.connect(
            host=parts.hostname or "127.0.0.1",
            port=parts.port or 5432,
            user=parts.username or "postgres",
            password=parts.password,
            dbname="postgres",
            connect_timeout=2,
            autocommit=True,
        ) as connection:
            # `makemigrations --check` reads the migration history of this database.
            exists = connection.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", [database]
            ).fetchone()
            if not exists:
                connection.execute(
                    psycopg.sql.SQL("CREATE DATABASE {}").format(psycopg.sql.Identifier(database))
                )
            return True
    except psycopg.OperationalError:
        return False


def redis_answers(url: str) -> bool:
    import redis

    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=2).ping())
    except redis.RedisError:
        return False


def main() -> int:
    service, url = sys.argv[1], sys.argv[2]
    wait = "--wait" in sys.argv[3:]
    check = postgres_answers if service == "postgres" else redis_answers
    deadline = time.monotonic() + (30 if wait else 0)
    while True:
        if check(url):
            return 0
        if time.monotonic() >= deadline:
            return 1
        time.sleep(1)


if __name__ == "__main__":
    sys.exit(main())
