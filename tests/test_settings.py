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
        "EMBEDDINGS_PROVIDER",
        "EMBEDDINGS_BASE_URL",
        "EMBEDDINGS_API_KEY",
        "EMBEDDINGS_DIM",
        "SEMANTIC_WEIGHT",
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


@pytest.mark.parametrize(
    ("name", "value", "needle"),
    [
        ("MAX_UPLOAD_MB", "ten", "MAX_UPLOAD_MB must be a whole number"),
        ("MAX_UPLOAD_MB", "0", "MAX_UPLOAD_MB must be at least 1"),
        ("LLM_PROVIDER", "gpt", "LLM_PROVIDER must be one of offline, openai"),
        ("LLM_PROVIDER", "openai", "needs OPENAI_API_KEY"),
        ("KB_STORE", "postgres", "KB_STORE=postgres needs DATABASE_URL"),
        ("LLM_TIMEOUT", "59", "LLM_TIMEOUT"),
        ("EMBEDDINGS_PROVIDER", "bert", "EMBEDDINGS_PROVIDER must be one of"),
        ("EMBEDDINGS_PROVIDER", "openai", "EMBEDDINGS_PROVIDER=openai needs EMBEDDINGS_BASE_URL"),
        ("EMBEDDINGS_DIM", "100", "EMBEDDINGS_DIM must be 64, 128 or 256"),
        ("SEMANTIC_WEIGHT", "2", "SEMANTIC_WEIGHT must be between 0 and 1"),
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
        ({"SESSIONS_PER_IP_PER_MINUTE": "-1"}, "SESSIONS_PER_IP_PER_MINUTE"),
    ],
)
def test_handoff_and_quota_settings_fail_clearly(env, variables, needle):
    for name, value in variables.items():
        env.setenv(name, value)
    with pytest.raises(ConfigError, match=needle):
        Settings.from_env()
