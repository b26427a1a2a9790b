"""Suite-wide setup: a throwaway database (SQLite or PostgreSQL), Redis db 14, real processes.

`TEST_BROKER_URL` (an `amqp://` URL) puts every stack's Celery broker on RabbitMQ.
`TEST_DATABASE_URL` picks PostgreSQL (its database name must end in `_test`; it is dropped and
re-created); empty means a fresh SQLite file. Pub/sub ignores Redis database numbers, so each
run also gets its own channel prefix.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlparse, urlunparse

import pytest

import tests.stack as _shared

os.environ.setdefault("HAYSTACK_TELEMETRY_ENABLED", "False")  # no network calls from tests

STAFF_KEY = "test-staff-key"
# The origin of a cross-origin page (the original client's dev server): the suite's stacks list
# it in CORS_ORIGINS; every other origin stays refused (tests/test_original_client.py).
CORS_ORIGIN = "http://localhost:3000"
# One folder for the run, kept in the environment like the widget port below: test modules
# import this file a second time (as tests.conftest), and both copies must name the same files.
# Tagged with our pid, so a value inherited from elsewhere is never used (nor removed at the end).
_pid, _, _folder = os.environ.get("HELPLINE_TEST_TMP", "").partition(":")
if _pid != str(os.getpid()) or not _folder:
    _folder = tempfile.mkdtemp(prefix="helpline-tests-")
    os.environ["HELPLINE_TEST_TMP"] = f"{os.getpid()}:{_folder}"
_TMP = Path(_folder)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# The widget tests serve a host page on this port: as http://localhost:<port> it is an allowed
# embedding origin (WIDGET_ORIGINS), as http://127.0.0.1:<port> a foreign one. Kept in the
# environment because test modules import this file a second time (as tests.conftest).
WIDGET_HOST_PORT = int(os.environ.setdefault("HELPLINE_TEST_WIDGET_PORT", str(_free_port())))
WIDGET_ORIGIN = f"http://localhost:{WIDGET_HOST_PORT}"
_PREFIX = f"hltest-{uuid.uuid4().hex[:8]}"


def _check_name(url: str) -> str:
    name = urlparse(url).path.lstrip("/")
    if not name.endswith("_test"):
        raise pytest.UsageError(f"refusing to use database {name!r}: its name must end in _test")
    return name


def recreate_postgres(url: str, template: str | None = None) -> None:
    """Drop and create the test database so every run starts empty (or, given `template`, a
    copy of that database)."""
    import psycopg

    name = _check_name(url)
    _SUITE_PG_NAMES.add(name)
    _note_suite_database(url)
    copy = f' TEMPLATE "{_check_name(template)}"' if template else ""
    admin = urlunparse(urlparse(url)._replace(path="/postgres"))
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"{copy}')


def drop_postgres(url: str) -> None:
    import psycopg

    name = _check_name(url)
    admin = urlunparse(urlparse(url)._replace(path="/postgres"))
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def database_url(suffix: str = "") -> str:
    """This run's database URL (a second, isolated one with a suffix)."""
    pg = os.environ.get("TEST_DATABASE_URL", "")
    if not pg:
        return f"sqlite:///{_TMP / f'helpline{suffix}_test.db'}"
    if suffix:
        parsed = urlparse(pg)
        name = parsed.path.lstrip("/")[: -len("_test")] + f"{suffix}_test"
        return urlunparse(parsed._replace(path=f"/{name}"))
    return pg


# The server only: each stack claims a database number of its own, so a number given in
# TEST_REDIS_URL (redis://localhost:6391/0) is dropped rather than appended to.
_REDIS_BASE = re.sub(r"/\d*$", "", os.environ.get("TEST_REDIS_URL", "redis://localhost:6379"))
_REDIS_DBS: dict[str, int] = {}


def redis_url(name: str = "main") -> str:
    """This run's Redis database for `name` (claimed on first use, released at the end)."""
    from tests.stack import claim_redis_db

    if name not in _REDIS_DBS:
        taken = set(_REDIS_DBS.values())
        _REDIS_DBS[name] = claim_redis_db(
            _REDIS_BASE, [d for d in range(15, 7, -1) if d not in taken]
        )
    return f"{_REDIS_BASE.rstrip('/')}/{_REDIS_DBS[name]}"


def release_redis(name: str) -> None:
    """Empty a side stack's database and give it back (there are only eight to share)."""
    db = _REDIS_DBS.pop(name, None)
    if db is not None:
        flush_redis(f"{_REDIS_BASE.rstrip('/')}/{db}")  # drops our lock key with the rest


def base_env() -> dict[str, str]:
    """Environment shared by the test process and every process it starts."""
    return {
        "DATABASE_URL": database_url(),
        "REDIS_URL": redis_url(),
        # TEST_BROKER_URL=amqp://… runs the stacks on RabbitMQ (`make test-rabbitmq`); empty
        # means the broker is the Redis above. Never inherited from the caller's BROKER_URL.
        "BROKER_URL": os.environ.get("TEST_BROKER_URL", ""),
        "EVENT_CHANNEL_PREFIX": _PREFIX,
        "STAFF_API_KEYS": f"{STAFF_KEY},Sam=sam-key,Ana=ana-key",
        "CORS_ORIGINS": CORS_ORIGIN,
        "AGENT_LEASE_SECONDS": "4",
        # The suite makes hundreds of conversations from one address; test_limits checks these.
        "SESSIONS_PER_IP_PER_MINUTE": "0",
        "RATE_LIMIT_PER_IP_PER_MINUTE": "0",
        "SWEEP_INTERVAL": "1",
        # A lost file or document is re-sent after its claim deadline (30 s and 60 s in
        # production): tests/test_recovery.py waits these out, so they are short here unless
        # the caller sets them (to print the production figures).
        "ATTACHMENT_CLAIM_SECONDS": os.environ.get("ATTACHMENT_CLAIM_SECONDS") or "6",
        "DOCUMENT_CLAIM_SECONDS": os.environ.get("DOCUMENT_CLAIM_SECONDS") or "6",
        "LOG_FORMAT": "json",
        "LOG_LEVEL": "INFO",
        "LLM_PROVIDER": "offline",
        "OPENAI_API_KEY": "",
        "OPENAI_BASE_URL": "",
        "WIDGET_ORIGINS": WIDGET_ORIGIN,
        # Short, so the browser test of a late answer does not wait long (default 10).
        "ANSWER_OVERDUE_SECONDS": "3",
    }


def migrate(url: str) -> None:
    """Create the schema through the real migrations (so they are tested too)."""
    from models.migrate import upgrade

    _note_suite_database(url)

    upgrade(url)


# A side stack's database is a copy of one migrated for the purpose, made once a run: the
# migrations are the same code on the same kind of database as the pass's own, which
# `migrated_db` migrates for real; running them again for each of the pass's ~15 side stacks
# cost 0.7-2 s a stack on a busy machine, a copy 0.1-0.3 s.
_TEMPLATE = _shared.SIDE_TEMPLATE  # in tests.stack, which both copies of this file share


def fresh_database(url: str) -> None:
    """Make the (side stack's) database `url` empty and migrated to head."""
    if not _TEMPLATE:
        template = database_url("_template")
        if os.environ.get("TEST_DATABASE_URL"):
            recreate_postgres(template)
        migrate(template)  # disposes of its engine: nothing stays connected to the template
        _TEMPLATE.append(template)
    template = _TEMPLATE[0]
    if os.environ.get("TEST_DATABASE_URL"):
        recreate_postgres(url, template=template)
        return
    _note_suite_database(url)
    import sqlite3

    from sqlalchemy.engine import make_url

    source = sqlite3.connect(make_url(template).database or "")
    target = sqlite3.connect(make_url(url).database or "")
    try:
        source.backup(target)  # consistent whatever the template's write-ahead log holds
    finally:
        target.close()
        source.close()


# -- tests that run once ------------------------------------------------------------------
# These modules test the answer engine, retrieval, escalation text, file parsing and other
# in-process logic. None of them starts a stack or opens the pass's database (DATABASE_URL):
# the ones that need SQL open their own, SQLite and PostgreSQL alike, named in the test
# (tests/agent/conftest.py), so they run the same code against the same databases on the
# SQLite pass and on the PostgreSQL pass. They run once, on the SQLite pass (`make test`
# deselects `db_free` on the PostgreSQL pass). Both claims are checked, not trusted: a test
# here that asks for a stack fixture stops the collection, and one that connects to the pass's
# database (or a side stack's, or migrates one) fails.
DB_FREE_PATHS = (
    "tests/agent/",
    "tests/escalation/",
    "tests/ingest/",
    "tests/llm/",
    "tests/test_hours.py",
    "tests/test_logs.py",
    "tests/test_outbox.py",
    "tests/test_lease_keeper.py",
    "tests/test_sqlite_wait.py",
    "tests/test_deploy_files.py",
    # The broker and pub/sub alone, on the run's Redis, whatever the database: the web's task
    # sender warm-up (in child processes that never open a database), one pub/sub message per
    # session's events, kombu's shared Redis client.
    "tests/test_warm_up.py",
    "tests/test_event_bundles.py",
    "tests/test_broker_clients.py",
)
# Fixtures that reach the pass's database: the suite's stack and its clients, a side stack.
SUITE_DB_FIXTURES = frozenset(
    {"stack", "api", "api2", "chat", "migrated_db", "db_storage_stack", "logdir"}
)
# Every PostgreSQL database this run made for a stack, and the suite databases reached (URLs,
# in order): in tests.stack, which both copies of this file share.
_SUITE_PG_NAMES = _shared.SUITE_PG_NAMES
_SUITE_TOUCHES = _shared.SUITE_TOUCHES


def _is_suite_database(url: str) -> bool:
    """Whether `url` names the pass's database or a side stack's (all SQLite ones live in
    this run's temporary folder; PostgreSQL ones were made by recreate_postgres)."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return bool(parsed.database) and Path(parsed.database).resolve().is_relative_to(
            _TMP.resolve()
        )
    return parsed.database in _SUITE_PG_NAMES or url == database_url()


def _note_suite_database(url: str) -> None:
    if _is_suite_database(url):
        _SUITE_TOUCHES.append(url)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark the tests of DB_FREE_PATHS `db_free`, refusing any that asks for a stack."""
    root = Path(str(config.rootpath))
    for item in items:
        path = Path(str(item.path))
        if not path.is_relative_to(root) or not path.relative_to(root).as_posix().startswith(
            DB_FREE_PATHS
        ):
            continue
        reaching = SUITE_DB_FIXTURES & set(getattr(item, "fixturenames", ()))
        if reaching:
            raise pytest.UsageError(
                f"{item.nodeid} is in DB_FREE_PATHS (runs on one pass only) but uses "
                f"{sorted(reaching)}, which reach the pass's database: move it out"
            )
        item.add_marker(pytest.mark.db_free)


@pytest.fixture(autouse=True)
def _db_free_guard(request: pytest.FixtureRequest) -> Iterator[None]:
    """A `db_free` test fails if it reached the pass's database: its result would then
    depend on the pass, and running it once would lose coverage."""
    if request.node.get_closest_marker("db_free") is None:
        yield
        return
    from sqlalchemy import event
    from sqlalchemy.engine import Connection, Engine

    def on_connect(conn: Connection) -> None:
        _note_suite_database(conn.engine.url.render_as_string(hide_password=True))

    before = len(_SUITE_TOUCHES)
    event.listen(Engine, "engine_connect", on_connect)
    try:
        yield
    finally:
        event.remove(Engine, "engine_connect", on_connect)
    reached = _SUITE_TOUCHES[before:]
    assert not reached, f"a db_free test reached the pass's database: {reached}"


def flush_redis(url: str) -> None:
    import redis

    redis.Redis.from_url(url).flushdb()


def pytest_configure(config: pytest.Config) -> None:
    env = base_env()
    os.environ.update(env)
    if os.environ.get("TEST_DATABASE_URL"):
        recreate_postgres(env["DATABASE_URL"])
        _SUITE_TOUCHES.clear()  # the run's own set-up, not a test's
    from models.settings import get_settings

    get_settings(reload=True)


def pytest_unconfigure(config: pytest.Config) -> None:
    for name in list(_REDIS_DBS):
        try:
            flush_redis(redis_url(name))  # also drops our claim on the database
        except Exception:
            pass
    if os.environ.get("TEST_DATABASE_URL"):
        for url in [database_url(), *_TEMPLATE]:
            try:
                drop_postgres(url)
            except Exception:
                pass
    shutil.rmtree(_TMP, ignore_errors=True)


@contextmanager
def side_stack(
    logdir: Path,
    name: str,
    env: dict[str, str],
    *,
    kb: bool = True,
    worker: bool = True,
    wait: bool = True,
) -> Iterator:
    """A stack of its own (database, Redis db, channel prefix) for tests that configure the
    processes differently; its worker never touches the main suite's tasks.

    `wait=False` returns once its processes are started, without waiting for them or loading
    the KB (`ready_with_kb` does both): stacks started that way boot side by side.
    `worker=False`: the web process alone (the test starts the workers it needs)."""
    from tests.stack import Stack

    url = database_url(f"_{name}")
    fresh_database(url)
    full = base_env() | {
        "DATABASE_URL": url,
        # A stack given its REDIS_URL (a private server, or another stack's database) claims none.
        "REDIS_URL": env.get("REDIS_URL") or redis_url(name),
        "EVENT_CHANNEL_PREFIX": f"hl{name}-{uuid.uuid4().hex[:6]}",
        **env,
    }
    stack = Stack(full, logdir, name=name)
    try:
        stack.start_web()
        if worker:
            stack.start_worker()
        if worker and wait:
            ready_with_kb(stack, kb=kb)
        yield stack
    finally:
        stack.stop(graceful=False)
        release_redis(name)
        if os.environ.get("TEST_DATABASE_URL"):
            drop_postgres(url)


def ready_with_kb(stack, *, kb: bool = True) -> None:  # type: ignore[no-untyped-def]
    """Wait until a side stack is ready, then give it the sample KB (unless `kb=False`)."""
    from tests.client import copy_sample_kb

    stack.wait_ready()
    if kb:
        copy_sample_kb(stack)  # the rows the suite's own import stored


@pytest.fixture(scope="session")
def logdir() -> Path:
    path = _TMP / "logs"
    path.mkdir(exist_ok=True)
    return path


@pytest.fixture(scope="session")
def migrated_db() -> str:
    """The suite's database, migrated to head."""
    url = os.environ["DATABASE_URL"]
    migrate(url)
    return url


@pytest.fixture(scope="session")
def stack(migrated_db: str, logdir: Path) -> Iterator:
    """Two web processes and the Procfile's two worker pools (`files` for attachments and
    documents, `worker` for replies and searches: `stack.worker`) on the suite's database, with
    the sample KB loaded. Split as in production, so a reply never waits for a pool process
    that a file parse or an ingest (this test's or an earlier one's) is holding."""
    from tests.stack import Stack

    s = Stack(base_env(), logdir)
    try:
        s.start_web()
        s.start_web()
        s.start_worker("files")
        s.start_worker("worker")
        s.wait_ready()
        from tests.client import load_sample_kb

        load_sample_kb(s)
        yield s
    finally:
        s.stop(graceful=False)


@pytest.fixture(scope="session")
def db_storage_stack(logdir: Path) -> Iterator:
    """A side stack with ATTACHMENT_STORAGE=db set explicitly (the suite's own stack runs the
    default, which is file storage beside a SQLite database): (stack, Api)."""
    from tests.client import Api

    with side_stack(logdir, "dbstore", {"ATTACHMENT_STORAGE": "db"}, kb=False) as s:
        client = Api(s.urls[0])
        yield s, client
        client.close()


@pytest.fixture(scope="session")
def api(stack):  # type: ignore[no-untyped-def]
    """HTTP client for the first web process."""
    from tests.client import Api

    client = Api(stack.urls[0])
    yield client
    client.close()


@pytest.fixture(scope="session")
def api2(stack):  # type: ignore[no-untyped-def]
    """HTTP client for the second web process."""
    from tests.client import Api

    client = Api(stack.urls[1])
    yield client
    client.close()


@pytest.fixture
def chat(api):  # type: ignore[no-untyped-def]
    """A fresh session: {'session_id', 'token', ...}."""
    return api.create_session()
