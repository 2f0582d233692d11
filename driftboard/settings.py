"""Driftboard settings: everything comes from the environment, with defaults that need no server.

With no variables set, Driftboard runs on SQLite and a file-system Celery broker under ``var/``.
Point ``DATABASE_URL`` at PostgreSQL and ``CELERY_BROKER_URL`` at Redis or RabbitMQ to deploy.
Every variable is documented in README.md and `.env.example`.
"""

import os
import sys
from pathlib import Path

import dj_database_url
import plotly
from django.core.exceptions import ImproperlyConfigured

from driftboard.prices import PricesError, prices_parse

BASE_DIR = Path(__file__).resolve().parent.parent


def env_str(name: str, default: str = "") -> str:
    return os.environ.get(name, default)


def env_bool(name: str, default: bool = False) -> bool:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    return raw.strip().lower() in {"1", "true", "yes", "on"}


def env_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "")
    return int(raw) if raw.strip() else default


def env_float(name: str, default: float) -> float:
    raw = os.environ.get(name, "")
    return float(raw) if raw.strip() else default


def env_list(name: str, default: str = "") -> list[str]:
    raw = os.environ.get(name, default)
    return [item.strip() for item in raw.split(",") if item.strip()]


def env_path(name: str, default: Path) -> Path:
    raw = os.environ.get(name, "")
    return Path(raw).expanduser().resolve() if raw else default.resolve()


VAR_DIR = env_path("DRIFTBOARD_VAR_DIR", BASE_DIR / "var")
TESTING = "pytest" in sys.modules or env_bool("DRIFTBOARD_TESTING")

DEBUG = env_bool("DEBUG")
# Commands that sign nothing (schema comparisons, scoring and importing files from a shell) run
# without a key (left empty: Django refuses any use of it). The web server, workers and everything
# else need one unless DEBUG or embedded.
UNSIGNED_COMMANDS = {
    "makemigrations",
    "showmigrations",
    "sqlmigrate",
    "migrate",
    "evaluate",
    "import_golden",
    "import_results",
    "build_demo_models",
    "build_golden",
    "import_traffic",
}
SECRET_KEY = env_str("SECRET_KEY")
if not SECRET_KEY and not (len(sys.argv) > 1 and sys.argv[1] in UNSIGNED_COMMANDS):
    if not (DEBUG or TESTING or env_bool("DRIFTBOARD_EMBEDDED")):
        raise ImproperlyConfigured("SECRET_KEY must be set when DEBUG is off.")
    SECRET_KEY = "insecure-embedded-only-key-set-SECRET_KEY-in-production"

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "127.0.0.1,localhost,testserver")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS")
# How evaluation plugs into the registry (families created, weights submitted, pull requests told).
DRIFTBOARD_REGISTRY_EXTENSION = "evals.registry_extension.Evaluation"
# Where links point (driftboard/links.py). Unset: API answers link to the host asked, and work done outside a
# request to the address `manage.py serve --addr` listens on (DRIFTBOARD_SERVE_URL, set by serve), else
# http://127.0.0.1:8000.
DRIFTBOARD_PUBLIC_URL = env_str("DRIFTBOARD_PUBLIC_URL").rstrip("/")
DRIFTBOARD_SERVE_URL = env_str("DRIFTBOARD_SERVE_URL").rstrip("/")

INSTALLED_APPS = [
    "driftboard.admin_site.AdminConfig",  # django.contrib.admin, opened to the admin group as well
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "simple_history",
    "driftboard.accounts",
    "registry",
    "evals",
]

MIDDLEWARE = [
    "driftboard.dashboard.prometheus.RequestLatencyMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "driftboard.limits.RequestSizeLimitMiddleware",
    "driftboard.limits.QueryStringMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "driftboard.throttles.LoginThrottleMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "simple_history.middleware.HistoryRequestMiddleware",
]

ROOT_URLCONF = "driftboard.urls"
WSGI_APPLICATION = "driftboard.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "driftboard.roles.role_flags",
            ],
            "libraries": {"numbers": "driftboard.template_numbers"},
        },
    },
]

VAR_DIR.mkdir(parents=True, exist_ok=True)
DATABASES = {
    "default": dj_database_url.parse(
        env_str("DATABASE_URL", f"sqlite:///{VAR_DIR / 'driftboard.sqlite3'}"),
        conn_max_age=env_int("DATABASE_CONN_MAX_AGE", 0),
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Web server and worker write to the same file; wait for the lock instead of failing.
    DATABASES["default"]["OPTIONS"] = {"timeout": 30, "transaction_mode": "IMMEDIATE"}
    # A file, not memory, so that a real worker process can share the test database.
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / "test-driftboard.sqlite3")}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

STATIC_URL = "/static/"
STATIC_ROOT = VAR_DIR / "staticfiles"
# plotly.js is served from the installed plotly package, so no CDN and no vendored copy.
STATICFILES_DIRS = [BASE_DIR / "static", ("plotly", Path(plotly.__file__).parent / "package_data")]
WHITENOISE_USE_FINDERS = True

LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/accounts/login/"

# Artifacts and datasets
DRIFTBOARD_ARTIFACT_ROOT = env_path("DRIFTBOARD_ARTIFACT_ROOT", VAR_DIR / "artifacts")
DRIFTBOARD_IMPORT_ROOTS = [Path(p).expanduser().resolve() for p in env_list("DRIFTBOARD_IMPORT_ROOTS")]
# Folders a family's local judge and embedder may lie under (empty: DRIFTBOARD_IMPORT_ROOTS).
DRIFTBOARD_MODEL_ROOTS = [Path(p).expanduser().resolve() for p in env_list("DRIFTBOARD_MODEL_ROOTS")]
# Shared artifact storage (S3-compatible), for workers that do not mount DRIFTBOARD_ARTIFACT_ROOT: the
# web process uploads each stored object; a worker downloads what it lacks into its own artifact root
# and verifies its sha256. Credentials come from the usual AWS variables or the instance's role.
DRIFTBOARD_S3_BUCKET = env_str("DRIFTBOARD_S3_BUCKET")
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
if DRIFTBOARD_S3_BUCKET:
    STORAGES["artifacts"] = {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": DRIFTBOARD_S3_BUCKET,
            "location": env_str("DRIFTBOARD_S3_PREFIX", "artifacts"),
            "endpoint_url": env_str("DRIFTBOARD_S3_ENDPOINT_URL") or None,
            "region_name": env_str("DRIFTBOARD_S3_REGION") or None,
        },
    }
DRIFTBOARD_MAX_UPLOAD_BYTES = env_int("DRIFTBOARD_MAX_UPLOAD_BYTES", 8 * 1024**3)
# Archives (.tar, .tar.gz, .zip) are refused before unpacking when their members would go past these.
DRIFTBOARD_MAX_UNPACKED_BYTES = env_int("DRIFTBOARD_MAX_UNPACKED_BYTES", DRIFTBOARD_MAX_UPLOAD_BYTES)
DRIFTBOARD_MAX_ARCHIVE_MEMBERS = env_int("DRIFTBOARD_MAX_ARCHIVE_MEMBERS", 10_000)
DRIFTBOARD_MAX_COMPRESSION_RATIO = env_float("DRIFTBOARD_MAX_COMPRESSION_RATIO", 100.0)
# Staging entries (uploads, unpacked archives) older than this are removed by beat's staging sweep.
DRIFTBOARD_STAGING_MAX_AGE_SECONDS = env_int("DRIFTBOARD_STAGING_MAX_AGE_SECONDS", 6 * 3600)
DRIFTBOARD_MAX_DATASET_ROWS = env_int("DRIFTBOARD_MAX_DATASET_ROWS", 100_000)
DRIFTBOARD_MAX_SAMPLE_CHARS = env_int("DRIFTBOARD_MAX_SAMPLE_CHARS", 100_000)
# Traffic logs: rows per upload (split into windows of at most DRIFTBOARD_MAX_DATASET_ROWS each), and
# how many samples of a window the production model scores (a stratified random sample beyond that).
DRIFTBOARD_MAX_TRAFFIC_ROWS = env_int("DRIFTBOARD_MAX_TRAFFIC_ROWS", 500_000)
DRIFTBOARD_TRAFFIC_SAMPLE_SIZE = env_int("DRIFTBOARD_TRAFFIC_SAMPLE_SIZE", 2000)
# Traffic never crowds out candidates: at most this many windows per upload (400 beyond), and this many
# traffic runs of a family waiting or scoring at once (429 beyond); they wait on their own `traffic` queue.
DRIFTBOARD_TRAFFIC_MAX_WINDOWS_PER_UPLOAD = env_int("DRIFTBOARD_TRAFFIC_MAX_WINDOWS_PER_UPLOAD", 50)
DRIFTBOARD_TRAFFIC_MAX_PENDING_RUNS = env_int("DRIFTBOARD_TRAFFIC_MAX_PENDING_RUNS", 100)
# Request bodies read into memory (JSON, form fields); files stream to disk under the limit above.
DATA_UPLOAD_MAX_MEMORY_SIZE = env_int("DATA_UPLOAD_MAX_MEMORY_SIZE", 5 * 1024**2)
# JSON bodies nested deeper than this are a 400 (driftboard/parsers.py), before anything walks them.
DRIFTBOARD_MAX_JSON_DEPTH = env_int("DRIFTBOARD_MAX_JSON_DEPTH", 32)
DRIFTBOARD_MAX_QUEUED_RUNS = env_int("DRIFTBOARD_MAX_QUEUED_RUNS", 50)
DRIFTBOARD_RUN_LEASE_SECONDS = env_int("DRIFTBOARD_RUN_LEASE_SECONDS", 120)
DRIFTBOARD_RUN_MAX_ATTEMPTS = env_int("DRIFTBOARD_RUN_MAX_ATTEMPTS", 3)
# How long a worker holding finished results waits for an unreachable database before giving up.
DRIFTBOARD_DB_OUTAGE_SECONDS = env_int("DRIFTBOARD_DB_OUTAGE_SECONDS", 300)
DRIFTBOARD_OFFPEAK_WINDOW = env_str("DRIFTBOARD_OFFPEAK_WINDOW")  # e.g. "22:00-06:00" (UTC)
DRIFTBOARD_ALERT_WEBHOOK_URL = env_str("DRIFTBOARD_ALERT_WEBHOOK_URL")
# Alert channels' URLs (registry/alerting.py): `host[:port]` patterns allowed, as DRIFTBOARD_JUDGE_HOSTS.
DRIFTBOARD_ALERT_HOSTS = env_list("DRIFTBOARD_ALERT_HOSTS")
# A family past this share of its weekly budget samples its runs and sends non-gating runs off-peak.
DRIFTBOARD_BUDGET_SOFT_SHARE = env_float("DRIFTBOARD_BUDGET_SOFT_SHARE", 0.8)
# What work costs (driftboard/prices.py): per GPU-hour by device kind, per 1k judge tokens by judge model.
try:
    DRIFTBOARD_PRICES = prices_parse(env_str("DRIFTBOARD_PRICES"))
except PricesError as exc:
    raise ImproperlyConfigured(str(exc)) from exc
# Judge endpoints (driftboard/outbound.py): `host[:port]` patterns allowed (empty: any host with public
# addresses only; loopback, private and link-local addresses need their host listed), and the most
# bytes read of one reply.
DRIFTBOARD_JUDGE_HOSTS = env_list("DRIFTBOARD_JUDGE_HOSTS")
DRIFTBOARD_JUDGE_MAX_REPLY_BYTES = env_int("DRIFTBOARD_JUDGE_MAX_REPLY_BYTES", 1024**2)
DRIFTBOARD_BAND_WINDOW = env_int("DRIFTBOARD_BAND_WINDOW", 10)
DRIFTBOARD_BAND_K = env_float("DRIFTBOARD_BAND_K", 3.0)
DRIFTBOARD_BOOTSTRAP_RESAMPLES = env_int("DRIFTBOARD_BOOTSTRAP_RESAMPLES", 2000)
# Per-sample results are saved every this many samples, so a killed run resumes from its last chunk.
DRIFTBOARD_RESULT_CHUNK_SAMPLES = env_int("DRIFTBOARD_RESULT_CHUNK_SAMPLES", 256)
# One greedy answer drafted from stored answers in this many is also decoded plainly and compared (0: none).
DRIFTBOARD_DRAFT_AUDIT = env_int("DRIFTBOARD_DRAFT_AUDIT", 50)
DRIFTBOARD_THRESHOLD_REVIEW_DAYS = env_int("DRIFTBOARD_THRESHOLD_REVIEW_DAYS", 90)

# Prometheus metrics at /metrics: off unless a bearer token and/or allowed addresses are set.
DRIFTBOARD_METRICS_TOKEN = env_str("DRIFTBOARD_METRICS_TOKEN")
DRIFTBOARD_METRICS_ALLOWED_IPS = env_list("DRIFTBOARD_METRICS_ALLOWED_IPS")  # addresses or networks (CIDR)
DRIFTBOARD_METRICS_WINDOW_SECONDS = env_int("DRIFTBOARD_METRICS_WINDOW_SECONDS", 3600)

# Pull-request link-through
DRIFTBOARD_GITHUB_API_URL = env_str("DRIFTBOARD_GITHUB_API_URL", "https://api.github.com").rstrip("/")
DRIFTBOARD_GITHUB_TOKEN = env_str("DRIFTBOARD_GITHUB_TOKEN")
# GitHub's web address, whose pull request URLs are trusted (default: the API's host without `api.`).
DRIFTBOARD_GITHUB_URL = env_str("DRIFTBOARD_GITHUB_URL").rstrip("/")
DRIFTBOARD_GITHUB_WEBHOOK_SECRET = env_str("DRIFTBOARD_GITHUB_WEBHOOK_SECRET")
DRIFTBOARD_GITLAB_URL = env_str("DRIFTBOARD_GITLAB_URL", "https://gitlab.com").rstrip("/")
DRIFTBOARD_GITLAB_TOKEN = env_str("DRIFTBOARD_GITLAB_TOKEN")
DRIFTBOARD_GITLAB_WEBHOOK_SECRET = env_str("DRIFTBOARD_GITLAB_WEBHOOK_SECRET")
# The bot's own account, whose comments alone are edited (default: the token's account, GET /user).
DRIFTBOARD_GITHUB_BOT_LOGIN = env_str("DRIFTBOARD_GITHUB_BOT_LOGIN")
DRIFTBOARD_GITLAB_BOT_USERNAME = env_str("DRIFTBOARD_GITLAB_BOT_USERNAME")

# Celery
_default_broker_dir = VAR_DIR / "broker"
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", "filesystem://")
if CELERY_BROKER_URL.startswith("filesystem://"):
    # driftboard/embedded_broker.py: whole messages only, each claimed by one reader (a rename within
    # this folder), undecodable ones moved to broken/.
    for sub in ("queue", "processed", "control", "broken"):
        (_default_broker_dir / sub).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_default_broker_dir / "queue"),
        "data_folder_out": str(_default_broker_dir / "queue"),
        "processed_folder": str(_default_broker_dir / "processed"),
        "store_processed": False,
        "control_folder": str(_default_broker_dir / "control"),
        "broken_folder": str(_default_broker_dir / "broken"),
        "polling_interval": 0.05,
    }
else:
    CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 3600}
CELERY_BROKER_CONNECTION_TIMEOUT = env_float("CELERY_BROKER_CONNECTION_TIMEOUT", 3.0)
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER")
CELERY_SCORING_SOFT_TIME_LIMIT = env_int("CELERY_SCORING_SOFT_TIME_LIMIT", 3300)
CELERY_SCORING_TIME_LIMIT = env_int("CELERY_SCORING_TIME_LIMIT", 3600)
CELERY_BEAT_SWEEP_SECONDS = env_float("CELERY_BEAT_SWEEP_SECONDS", 30.0)
CELERY_BEAT_STAGING_SWEEP_SECONDS = env_float("CELERY_BEAT_STAGING_SWEEP_SECONDS", 3600.0)
CELERY_BEAT_BUDGET_RELEASE_SECONDS = env_float("CELERY_BEAT_BUDGET_RELEASE_SECONDS", 300.0)

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        # Tokens users make at /account/tokens/ (scoped, hashed), then the ones made in the shell.
        "driftboard.accounts.authentication.ApiTokenAuthentication",
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    # JSON unless a view declares more: only the upload endpoints parse multipart bodies.
    "DEFAULT_PARSER_CLASSES": ["driftboard.parsers.JSONParser"],
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.PageNumberPagination",
    "PAGE_SIZE": 50,
    "DEFAULT_SCHEMA_CLASS": "driftboard.openapi.AutoSchema",
    "DEFAULT_FILTER_BACKENDS": [],
    "DEFAULT_THROTTLE_CLASSES": ["driftboard.throttles.TokenWriteThrottle"],
    "DEFAULT_THROTTLE_RATES": {"token_write": env_str("DRIFTBOARD_API_WRITE_RATE", "300/min")},
}

# Throttle counts (driftboard/throttles.py): a file cache shared by this host's processes, or Redis.
DRIFTBOARD_CACHE_URL = env_str("DRIFTBOARD_CACHE_URL")
CACHES = {
    "default": (
        {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": DRIFTBOARD_CACHE_URL}
        if DRIFTBOARD_CACHE_URL
        else {"BACKEND": "django.core.cache.backends.filebased.FileBasedCache", "LOCATION": str(VAR_DIR / "cache")}
    )
}
DRIFTBOARD_LOGIN_MAX_FAILURES = env_int("DRIFTBOARD_LOGIN_MAX_FAILURES", 5)
DRIFTBOARD_LOGIN_WINDOW_SECONDS = env_int("DRIFTBOARD_LOGIN_WINDOW_SECONDS", 900)
SPECTACULAR_SETTINGS = {
    "TITLE": "Driftboard API",
    "DESCRIPTION": "Register weight versions, follow their evaluation and drift verdicts.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    # Three models have a `status`; name each enum after its model rather than a hash.
    "ENUM_NAME_OVERRIDES": {
        "ArtifactStatusEnum": "registry.models.Artifact.Status",
        "EvalRunStatusEnum": "evals.models.EvalRun.Status",
        "ExperimentRunStatusEnum": "evals.models.ExperimentRun.Status",
    },
}

# Production hardening: on whenever DEBUG is off and the deployment serves HTTPS.
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", False)
SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", False)
CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", False)
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = SECURE_HSTS_SECONDS > 0
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", False)
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if env_bool("BEHIND_TLS_PROXY") else None
# Probes and scrapers inside the network call these over plain HTTP; a redirect would fail them.
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^metrics$"]

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}

CELERY_BEAT_SCHEDULE = {
    "sweep-runs": {"task": "evals.tasks.sweep_runs", "schedule": CELERY_BEAT_SWEEP_SECONDS},
    "sweep-staging": {"task": "registry.tasks.sweep_staging", "schedule": CELERY_BEAT_STAGING_SWEEP_SECONDS},
    # Checked every few minutes rather than once at Monday 00:00 UTC: a beat that was down at midnight, or a
    # budget raised mid-week, still releases the held runs.
    "release-budget-holds": {
        "task": "evals.tasks.release_budget_holds",
        "schedule": CELERY_BEAT_BUDGET_RELEASE_SECONDS,
    },
}
