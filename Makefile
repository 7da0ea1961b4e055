# The two commands a newcomer needs. Everything else is in bin/.
.PHONY: run test lint typecheck worker beat

run:  ## Set up and start Comet on the embedded default (SQLite, tasks in-process).
	@bash bin/run

test:  ## Set up and run lint, migration check, deploy check and the test suite.
	@bash bin/test

lint:
	@.venv/bin/ruff check . && .venv/bin/ruff format --check .

typecheck:
	@.venv/bin/mypy

worker:  ## A Celery worker (needs REDIS_URL).
	@.venv/bin/celery -A comet worker -l INFO

beat:  ## Celery beat (needs REDIS_URL).
	@.venv/bin/celery -A comet beat -l INFO
