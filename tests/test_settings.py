"""Configuration comes only from the environment, with safe defaults and clear errors."""

from __future__ import annotations

import pytest

from models.settings import ConfigError, Settings


@pytest.fixture
def env(monkeypatch):  # type: ignore[no-untyped-def]
    for name in (
        "DATABASE_URL",
        "REDIS_URL",
        "LLM_PROVIDER",
        "OPENAI_API_KEY",
        "OPENAI_BASE_URL",
        "MAX_UPLOAD_MB",
        "KB_STORE",
        "LLM_TIMEOUT",
        "STAFF_API_KEYS",
        "CORS_ORIGINS",
        "ALLOWED_ORIGINS",
        "BROKER_URL",
        "EVENT_CHANNEL_PREFIX",
        "REDIS_SENTINELS",
        "REDIS_SENTINEL_MASTER",
        "EMBEDDINGS_PROVIDER",
        "EMBEDDINGS_BASE_URL",
        "EMBEDDINGS_API_KEY",
        "EMBEDDINGS_DIM",
        "SEMANTIC_WEIGHT",
        "ATTACHMENT_CLAIM_SECONDS",
        "DOCUMENT_CLAIM_SECONDS",
    ):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_defaults_need_nothing(env):
    s = Settings.from_env()
    assert s.database_url.startswith("sqlite:///") and s.database_url.endswith(
        "instance/helpline.db"
    )
    assert s.redis_url == "redis://localhost:6379/0"
    assert s.answer_engine == "offline" and s.max_upload_bytes == 10 * 1024 * 1024
    assert s.staff_api_keys == frozenset()
    assert s.visibility_timeout > s.task_time_limit > s.task_soft_time_limit
    assert s.embeddings_provider == "wordllama" and s.embeddings_dim == 128


def test_claim_deadlines_default_to_production_and_follow_the_environment(env):
    from models.work import ATTACHMENT, DOCUMENT, REPLY, WEBHOOK

    s = Settings.from_env()
    assert (s.attachment_claim_seconds, s.document_claim_seconds) == (30, 60)
    env.setenv("ATTACHMENT_CLAIM_SECONDS", "4")
    env.setenv("DOCUMENT_CLAIM_SECONDS", "5")
    from models.settings import get_settings

    try:
        get_settings(reload=True)
        assert ATTACHMENT.claim_deadline.total_seconds() == 4
        assert DOCUMENT.claim_deadline.total_seconds() == 5
        assert REPLY.claim_deadline.total_seconds() == 10  # not configurable
        assert WEBHOOK.claim_deadline.total_seconds() == 30
    finally:
        env.undo()
        get_settings(reload=True)  # the suite's own settings again


@pytest.mark.parametrize(
    ("name", "value", "needle"),
    [
        ("ATTACHMENT_CLAIM_SECONDS", "0", "ATTACHMENT_CLAIM_SECONDS must be at least 1"),
        ("MAX_UPLOAD_MB", "ten", "MAX_UPLOAD_MB must be a whole number"),
        ("MAX_UPLOAD_MB", "0", "MAX_UPLOAD_MB must be at least 1"),
        ("LLM_PROVIDER", "gpt", "LLM_PROVIDER must be one of offline, openai"),
        ("LLM_PROVIDER", "openai", "needs OPENAI_API_KEY"),
        ("KB_STORE", "postgres", "KB_STORE=postgres needs DATABASE_URL"),
        ("LLM_TIMEOUT", "59", "LLM_TIMEOUT"),
        ("METRICS_TOKEN", "short", "METRICS_TOKEN must be at least 16"),
        ("BROKER_URL", "kafka://localhost", "BROKER_URL must start with one of"),
        ("EVENT_CHANNEL_PREFIX", "shop*", "EVENT_CHANNEL_PREFIX must be 1-40 letters"),
        ("EVENT_CHANNEL_PREFIX", "a.b", "EVENT_CHANNEL_PREFIX must be 1-40 letters"),
        ("REDIS_SENTINELS", "10.0.0.1", "REDIS_SENTINELS must list host:port pairs"),
        ("REDIS_SENTINELS", "10.0.0.1:99999", "REDIS_SENTINELS must list host:port pairs"),
        ("WORKER_CONCURRENCY", "0", "WORKER_CONCURRENCY must be at least 1"),
        ("WORKER_NICE", "20", "WORKER_NICE must be between 0 and 19"),
        ("WORKER_NICE", "-1", "WORKER_NICE must be at least 0"),
        ("EMBEDDINGS_PROVIDER", "bert", "EMBEDDINGS_PROVIDER must be one of"),
        ("EMBEDDINGS_PROVIDER", "openai", "EMBEDDINGS_PROVIDER=openai needs EMBEDDINGS_BASE_URL"),
        ("EMBEDDINGS_DIM", "100", "EMBEDDINGS_DIM must be 64, 128 or 256"),
        ("SEMANTIC_WEIGHT", "2", "SEMANTIC_WEIGHT must be between 0 and 1"),
        ("SQLITE_PAGE_SIZE", "5000", "SQLITE_PAGE_SIZE must be a power of two"),
        ("SQLITE_PAGE_SIZE", "131072", "SQLITE_PAGE_SIZE must be a power of two"),
        ("SQLITE_PAGE_SIZE", "256", "SQLITE_PAGE_SIZE must be at least 512"),
        ("SQLITE_CHECKPOINT_INTERVAL", "-1", "SQLITE_CHECKPOINT_INTERVAL must be 0 or more"),
        ("SQLITE_CHECKPOINT_INTERVAL", "soon", "SQLITE_CHECKPOINT_INTERVAL must be a number"),
    ],
)
def test_bad_values_name_the_variable(env, name, value, needle):
    env.setenv(name, value)
    with pytest.raises(ConfigError, match=needle):
        Settings.from_env()


def test_embeddings_from_a_local_server_reuse_the_openai_base_url(env):
    env.setenv("EMBEDDINGS_PROVIDER", "openai")
    env.setenv("OPENAI_BASE_URL", "http://127.0.0.1:11434/v1")
    s = Settings.from_env()
    assert s.embeddings_base_url == "http://127.0.0.1:11434/v1" and s.embeddings_api_key is None


def test_openai_with_local_server_needs_no_key(env):
    env.setenv("LLM_PROVIDER", "openai")
    env.setenv("OPENAI_BASE_URL", "http://127.0.0.1:11434/v1")
    s = Settings.from_env()
    assert s.answer_engine == "openai" and s.openai_api_key is None


def test_staff_keys_are_split_and_trimmed(env):
    env.setenv("STAFF_API_KEYS", " a1 , b2,,")
    assert Settings.from_env().staff_api_keys == frozenset({"a1", "b2"})


def test_cors_origins_are_none_by_default_and_may_open_sockets(env):
    assert Settings.from_env().cors_origins == ()
    env.setenv("CORS_ORIGINS", "http://LOCALHOST:3000/, https://shop.example")
    env.setenv("ALLOWED_ORIGINS", "https://widget.example")
    env.delenv("WIDGET_ORIGINS", raising=False)
    s = Settings.from_env()
    assert s.cors_origins == ("http://localhost:3000", "https://shop.example")
    assert s.socket_origins == {
        "http://localhost:3000",
        "https://shop.example",
        "https://widget.example",
    }


def test_heroku_postgres_url_is_normalised():
    from models.db import normalise_url

    assert normalise_url("postgres://u:p@h:5432/d") == "postgresql+psycopg://u:p@h:5432/d"
    assert normalise_url("sqlite:///x.db") == "sqlite:///x.db"


@pytest.mark.parametrize(
    ("variables", "needle"),
    [
        ({"WEBHOOK_URLS": "https://hooks.example/helpline"}, "WEBHOOK_SECRET"),
        ({"WEBHOOK_URLS": "ftp://hooks.example", "WEBHOOK_SECRET": "s"}, "WEBHOOK_URLS"),
        ({"SUPPORT_HOURS": "weekdays 9 to 5"}, "SUPPORT_HOURS"),
        ({"SUPPORT_TIMEZONE": "Nowhere/Land"}, "SUPPORT_TIMEZONE"),
        ({"ALLOWED_ORIGINS": "shop.example"}, "ALLOWED_ORIGINS"),
        ({"CORS_ORIGINS": "*"}, "CORS_ORIGINS"),
        ({"CORS_ORIGINS": "https://*.shop.example"}, "CORS_ORIGINS lists exact origins"),
        ({"SESSIONS_PER_IP_PER_MINUTE": "-1"}, "SESSIONS_PER_IP_PER_MINUTE"),
    ],
)
def test_handoff_and_quota_settings_fail_clearly(env, variables, needle):
    for name, value in variables.items():
        env.setenv(name, value)
    with pytest.raises(ConfigError, match=needle):
        Settings.from_env()


def test_branding_and_widget_settings(env):
    env.setenv("BRAND_NAME", "Brightwave Help")
    env.setenv("BRAND_COLOR", "#0A7")
    env.setenv("BRAND_LOGO_URL", "https://cdn.brightwave.example/logo.svg")
    env.setenv("WELCOME_TEXT", "Ask us anything about your order.")
    env.setenv("SUGGESTED_QUESTIONS", "Where is my parcel? | Can I pay by invoice, please?||")
    env.setenv("DEFAULT_LANGUAGE", "FR")
    env.setenv("WIDGET_ORIGINS", "https://shop.example/, https://help.example")
    s = Settings.from_env()
    brand = s.branding
    assert (brand.name, brand.color, brand.language) == ("Brightwave Help", "#0a7", "fr")
    assert brand.logo_url == "https://cdn.brightwave.example/logo.svg"
    assert brand.questions == ("Where is my parcel?", "Can I pay by invoice, please?")
    assert s.widget_origins == ("https://shop.example", "https://help.example")
    assert "https://shop.example" in s.socket_origins


@pytest.mark.parametrize(
    ("name", "value", "needle"),
    [
        ("BRAND_COLOR", "red;background:url(x)", "BRAND_COLOR must be a hex colour"),
        ("BRAND_LOGO_URL", "javascript:alert(1)", "BRAND_LOGO_URL must be an http"),
        ("BRAND_LOGO_URL", "//cdn.example/x.png", "BRAND_LOGO_URL must name its scheme"),
        ("DEFAULT_LANGUAGE", "klingon", "DEFAULT_LANGUAGE must be one of"),
        ("SUGGESTED_QUESTIONS", "|".join("abcdefg"), "at most 6"),
        ("WIDGET_ORIGINS", "https://shop.example/page", "WIDGET_ORIGINS"),
        ("ANSWER_OVERDUE_SECONDS", "0", "ANSWER_OVERDUE_SECONDS must be at least 1"),
    ],
)
def test_bad_branding_names_the_variable(env, name, value, needle):
    env.setenv(name, value)
    with pytest.raises(ConfigError, match=needle):
        Settings.from_env()


def test_broker_defaults_to_redis_and_both_sides_read_one_setting(env):
    """Web and worker build their Celery config from the same BROKER_URL (never split)."""
    import celeryconfig

    s = Settings.from_env()
    assert s.broker_url == s.redis_url and not s.broker_is_amqp
    assert celeryconfig.build(s)["broker_url"] == s.redis_url
    env.setenv("BROKER_URL", "amqp://guest:secret@localhost:5672//")
    env.setenv("EVENT_CHANNEL_PREFIX", "shop-eu")
    s = Settings.from_env()
    conf = celeryconfig.build(s)
    assert s.broker_is_amqp and conf["broker_url"] == s.broker_url
    assert conf["result_backend"] == s.redis_url  # results stay on Redis
    assert conf["broker_transport_options"]["confirm_publish"] is True
    assert {q.name for q in conf["task_queues"]} == {
        "shop-eu.interactive",
        "shop-eu.agent",
        "shop-eu.attachments",
        "shop-eu.kb",
    }
    assert all(q.queue_arguments == {"x-queue-type": "quorum"} for q in conf["task_queues"])
    assert conf["control_exchange"].startswith("shop-eu")
    assert conf["task_acks_late"] and conf["task_reject_on_worker_lost"]


def test_sentinels_reach_celery_and_the_rate_limiter(env):
    from celeryconfig import build
    from models.redisconn import limits_storage

    env.setenv("REDIS_URL", "redis://:pw@ignored:6379/3")
    env.setenv("REDIS_SENTINELS", "10.0.0.1:26379, 10.0.0.2:26380")
    env.setenv("REDIS_SENTINEL_MASTER", "helpline-main")
    s = Settings.from_env()
    assert s.redis_sentinels == (("10.0.0.1", 26379), ("10.0.0.2", 26380))
    conf = build(s)
    assert (
        conf["broker_url"]
        == conf["result_backend"]
        == ("sentinel://:pw@10.0.0.1:26379/3;sentinel://:pw@10.0.0.2:26380/3")
    )
    assert conf["broker_transport_options"]["master_name"] == "helpline-main"
    uri, options = limits_storage(s)
    assert uri == "redis+sentinel://10.0.0.1:26379,10.0.0.2:26380/helpline-main"
    assert options["db"] == 3 and options["password"] == "pw"


def test_worker_roles_take_their_queues_from_the_settings(env):
    from models.settings import get_settings
    from worker.run import worker_argv

    env.setenv("EVENT_CHANNEL_PREFIX", "shop-eu")
    env.setenv("FILES_CONCURRENCY", "3")
    get_settings(reload=True)
    try:
        argv = worker_argv("files", [])
        assert argv[argv.index("-Q") + 1] == "shop-eu.attachments,shop-eu.kb"
        assert argv[argv.index("--concurrency") + 1] == "3"
        argv = worker_argv("worker", ["--concurrency", "5", "-n", "w2@%h"])
        assert argv[argv.index("-Q") + 1] == "shop-eu.interactive,shop-eu.agent"
        assert argv.count("--concurrency") == 1 and argv.count("-n") == 1
    finally:
        env.undo()
        get_settings(reload=True)


def test_worker_nice_lowers_only_the_worker_and_never_raises_it():
    """WORKER_NICE in a real process: the worker's entry point applies it, and a process that
    is already nicer keeps its niceness (raising priority would need privileges)."""
    import subprocess
    import sys

    probe = "from worker.run import lower_priority; import os; print(lower_priority(7), os.nice(0))"
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    ).stdout.split()
    assert out == ["7", "7"]
    out = subprocess.run(
        ["nice", "-n", "12", sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout.split()
    assert out == ["12", "12"]


def test_the_suites_worker_runs_at_the_default_niceness(stack):
    """The stack's worker (started like the Procfile's) and its pool children run at nice 5."""
    import os
    from pathlib import Path

    def stat(pid: int | str) -> list[str]:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()

    main = stack.worker.pid
    children = [p for p in os.listdir("/proc") if p.isdigit() and _parent(stat, p) == main]
    expected = max(5, os.nice(0))  # a suite that itself runs niced keeps its own niceness
    assert int(stat(main)[16]) == expected
    assert children and all(int(stat(c)[16]) == expected for c in children)


def _parent(stat, pid: str) -> int | None:  # type: ignore[no-untyped-def]
    try:
        return int(stat(pid)[1])
    except OSError:  # the process ended while we looked
        return None
