"""Settings of the image factory control plane, all read from the environment.

`.env.example` documents every variable. SQLite is the default database; set
`DATABASE_URL` for PostgreSQL.
"""

from __future__ import annotations

import datetime as dt
import os
import re
from pathlib import Path

import dj_database_url
from csp.constants import NONE, SELF
from django.core.exceptions import ImproperlyConfigured

from config.env import env_bool, env_float, env_int, env_list, env_path, env_str

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = env_path("FACTORY_VAR_DIR", BASE_DIR / "var")

DEBUG = env_bool("DJANGO_DEBUG", False)
SECRET_KEY = env_str("DJANGO_SECRET_KEY")
_GENERATED_KEY = VAR_DIR / "secret_key"  # written once by `make` (mode 600)
if not SECRET_KEY and _GENERATED_KEY.is_file():
    # A checkout set up by `make` works with plain `manage.py` commands too.
    SECRET_KEY = _GENERATED_KEY.read_text().strip()
if not SECRET_KEY:
    # pytest sets PYTEST_VERSION; a test run needs no secret.
    if DEBUG or env_bool("FACTORY_INSECURE_DEV_KEY", False) or os.environ.get("PYTEST_VERSION"):
        SECRET_KEY = "insecure-development-key-never-use-in-production"
    else:
        raise ImproperlyConfigured(
            "DJANGO_SECRET_KEY (or DJANGO_SECRET_KEY_FILE) must be set; `make` writes one to "
            f"{_GENERATED_KEY}."
        )
ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "django_htmx",
    "template_partials",
    "django_q",
    "axes",
    "catalog",
    "builds",
    "lifecycle",
    "advisories",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "csp.middleware.CSPMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "catalog.middleware.LoginRequiredEverywhere",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    # Last, as django-axes asks: it turns a locked-out login into the lockout page.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "config.urls"
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
                "catalog.context_processors.roles",
            ],
        },
    },
]
WSGI_APPLICATION = "config.wsgi.application"

# --- Database -------------------------------------------------------------------------------
# SQLite is tuned for one web server and several workers writing to the same file: WAL lets
# readers run beside a writer, IMMEDIATE transactions take the write lock at BEGIN (so a
# transaction never has to upgrade its lock and fail with "database is locked"), and the busy
# timeout makes a second writer wait instead of failing. The tuning applies however SQLite is
# named: by SQLITE_PATH, or by DATABASE_URL=sqlite:///... .
SQLITE_PATH = env_path("SQLITE_PATH", VAR_DIR / "factory.sqlite3")
SQLITE_BUSY_TIMEOUT = env_int("SQLITE_BUSY_TIMEOUT", 30, minimum=1)
DATABASE_URL = env_str("DATABASE_URL")
if DATABASE_URL:
    try:
        DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=60)}
    except Exception as exc:  # dj_database_url raises several types on a bad URL
        raise ImproperlyConfigured(f"DATABASE_URL cannot be read: {exc}") from exc
else:
    SQLITE_PATH.parent.mkdir(parents=True, exist_ok=True)
    DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": str(SQLITE_PATH)}}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {
            "timeout": SQLITE_BUSY_TIMEOUT,
            "transaction_mode": "IMMEDIATE",
            "init_command": (
                "PRAGMA journal_mode=WAL;"
                "PRAGMA synchronous=NORMAL;"
                f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT * 1000};"
            ),
        }
    )
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"
# django-axes first: it refuses a locked-out username+address before any password is checked.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
# Login throttling (django-axes): after LOGIN_FAILURE_LIMIT failed logins for one user name
# from one address, that pair is refused for LOGIN_LOCKOUT_MINUTES (any try meanwhile, even
# with the right password, starts the wait again); other addresses and other user names are
# not affected. The address is the one the public request form counts (TRUSTED_PROXY_COUNT).
AXES_FAILURE_LIMIT = env_int("LOGIN_FAILURE_LIMIT", 5, minimum=1)
AXES_COOLOFF_TIME = dt.timedelta(minutes=env_int("LOGIN_LOCKOUT_MINUTES", 15, minimum=1))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_CLIENT_IP_CALLABLE = "config.client_ip.client_ip"
AXES_LOCKOUT_CALLABLE = "config.lockout.locked_out_response"
# The status code of a locked-out login (django-axes' own default; config.lockout renders it).
AXES_HTTP_RESPONSE_CODE = 429

LANGUAGE_CODE = "en"
TIME_ZONE = env_str("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = VAR_DIR / "staticfiles"
STATIC_ROOT.mkdir(parents=True, exist_ok=True)
# Serve straight from static/ too, so a fresh checkout works before collectstatic.
WHITENOISE_USE_FINDERS = True
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}

# --- HTTP security -----------------------------------------------------------------------------
# Production (DEBUG off, FACTORY_LOCAL unset) is served over HTTPS only: secure cookies, a
# redirect to HTTPS and HSTS by default. A developer machine on plain HTTP sets FACTORY_LOCAL=1.
_HTTPS_ONLY = not DEBUG and not env_bool("FACTORY_LOCAL", False)
SESSION_COOKIE_HTTPONLY = True
# A login lasts this long (seconds), however busy: a session's expiry is set when it is
# written (at login), which viewing pages does not do.
SESSION_COOKIE_AGE = env_int("DJANGO_SESSION_COOKIE_AGE", 12 * 3600, minimum=60)
CSRF_COOKIE_HTTPONLY = False  # htmx reads the token from the page, not the cookie
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
if env_bool("DJANGO_SECURE_COOKIES", _HTTPS_ONLY):
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
SECURE_SSL_REDIRECT = env_bool("DJANGO_SSL_REDIRECT", _HTTPS_ONLY)
# A load balancer's health check may speak plain HTTP.
SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
SECURE_HSTS_SECONDS = env_int(
    "DJANGO_HSTS_SECONDS", 365 * 24 * 3600 if _HTTPS_ONLY else 0, minimum=0
)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("DJANGO_HSTS_INCLUDE_SUBDOMAINS", True)
SECURE_HSTS_PRELOAD = env_bool("DJANGO_HSTS_PRELOAD", True)
# Behind a TLS-terminating proxy: the header that proxy sets to "https" (and strips from what
# clients send), e.g. X-Forwarded-Proto. Empty: Django sees the scheme of its own socket.
_PROXY_SSL_HEADER = env_str("DJANGO_SECURE_PROXY_SSL_HEADER").strip()
if _PROXY_SSL_HEADER:
    if not re.fullmatch(r"[A-Za-z0-9-]+", _PROXY_SSL_HEADER):
        raise ImproperlyConfigured(
            f"DJANGO_SECURE_PROXY_SSL_HEADER={_PROXY_SSL_HEADER!r} is not a header name "
            "(e.g. X-Forwarded-Proto)."
        )
    SECURE_PROXY_SSL_HEADER = ("HTTP_" + _PROXY_SSL_HEADER.upper().replace("-", "_"), "https")
# Content-Security-Policy (django-csp): scripts, styles and everything else from this site
# only, and no inline script or style (static/css/factory.css holds every style; htmx's own
# indicator style is turned off in base.html's htmx-config meta tag, and so is its eval).
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF],
        "style-src": [SELF],
        "img-src": [SELF],
        "object-src": [NONE],
        "base-uri": [NONE],
        "form-action": [SELF],
        "frame-ancestors": [NONE],
    },
}

# --- Background work -----------------------------------------------------------------------
# Two clusters share the ORM broker: `default` for short work (imports, schedules, notices)
# and `long` for builds and test runs, so that a build never delays a short task.
# `timeout` is below `retry`, so a task is never redelivered while its first run is alive.
LONG_TASK_TIMEOUT = env_int("LONG_TASK_TIMEOUT", 4 * 3600, minimum=60)
Q_CLUSTER = {
    "name": "default",
    "orm": "default",
    "workers": env_int("Q_DEFAULT_WORKERS", 2, minimum=1),
    "timeout": 300,
    "retry": 360,
    "max_attempts": 3,
    "catch_up": False,
    "save_limit": 500,
    "poll": 0.5,
    "ALT_CLUSTERS": {
        "long": {
            "workers": env_int("BUILD_CONCURRENCY", 1, minimum=1),
            "timeout": LONG_TASK_TIMEOUT,
            "retry": LONG_TASK_TIMEOUT + 600,
            "max_attempts": 3,
            "recycle": 20,
        },
        # Builds of arm64 images wait here for a worker on an arm64 machine.
        "long-arm64": {
            "workers": env_int("BUILD_CONCURRENCY", 1, minimum=1),
            "timeout": LONG_TASK_TIMEOUT,
            "retry": LONG_TASK_TIMEOUT + 600,
            "max_attempts": 3,
            "recycle": 20,
        },
    },
}
BUILD_QUEUES = {"x86_64": "long", "arm64": "long-arm64"}
REDIS_URL = env_str("REDIS_URL")
if REDIS_URL:
    Q_CLUSTER["redis"] = REDIS_URL
    Q_CLUSTER.pop("orm")

# --- The catalogue and upstream data --------------------------------------------------------
EOL_API_BASE_URL = env_str("EOL_API_BASE_URL", "https://endoflife.date").rstrip("/")
EOL_API_TIMEOUT = env_int("EOL_API_TIMEOUT", 20, minimum=1)
UPSTREAM_ALLOWED_HOSTS = env_list(
    "UPSTREAM_ALLOWED_HOSTS",
    [
        "cloud-images.ubuntu.com",
        "cloud.debian.org",
        "dl.rockylinux.org",
        "download.rockylinux.org",
        "repo.almalinux.org",
        "cloud.centos.org",
        "download.fedoraproject.org",
        "dl.fedoraproject.org",
        "geo.mirror.pkgbuild.com",
        "wordpress.org",
        "osv-vulnerabilities.storage.googleapis.com",
    ],
)
# Added to the list above, e.g. 127.0.0.1 for `make run`'s local demo upstream.
UPSTREAM_ALLOWED_HOSTS += env_list("UPSTREAM_EXTRA_ALLOWED_HOSTS", [])
# The distributions' security advisories (OSV exports, advisories/): where the exports are,
# which to download (empty: those the catalogue's distributions need), their size limits,
# packages from other repositories that no advisory covers, and the rebuild threshold.
OSV_BASE_URL = env_str("OSV_BASE_URL", "https://osv-vulnerabilities.storage.googleapis.com").rstrip(
    "/"
)
OSV_TIMEOUT = env_int("OSV_TIMEOUT", 60, minimum=1)
OSV_ECOSYSTEMS = env_list("OSV_ECOSYSTEMS", [])
OSV_MAX_DOWNLOAD_BYTES = env_int("OSV_MAX_DOWNLOAD_BYTES", 2 * 1024**3, minimum=1)
OSV_MAX_UNCOMPRESSED_BYTES = env_int("OSV_MAX_UNCOMPRESSED_BYTES", 8 * 1024**3, minimum=1)
OSV_MAX_RECORD_BYTES = env_int("OSV_MAX_RECORD_BYTES", 16 * 1024**2, minimum=1)
OSV_NOT_COVERED_PACKAGES = env_list(
    "OSV_NOT_COVERED_PACKAGES",
    ["docker-ce*", "docker-buildx-plugin", "docker-compose-plugin", "containerd.io", "gitlab-*"],
)
VULN_REBUILD_MIN_SEVERITY = env_str("VULN_REBUILD_MIN_SEVERITY", "high").lower()
if VULN_REBUILD_MIN_SEVERITY not in ("negligible", "low", "medium", "high", "critical"):
    raise ImproperlyConfigured(
        "VULN_REBUILD_MIN_SEVERITY must be one of negligible, low, medium, high, critical"
    )
# Every image gets a new release at least this often; the overview flags it stale after.
REFRESH_DAYS = env_int("REFRESH_DAYS", 90, minimum=1)
STALE_AFTER_DAYS = REFRESH_DAYS
REFRESH_MARGIN_DAYS = env_int("REFRESH_MARGIN_DAYS", 14, minimum=0)
RETENTION_DAYS = env_int("RETENTION_DAYS", 180, minimum=0)
NOTICE_OFFSETS_DAYS = [
    int(days) for days in env_list("NOTICE_OFFSETS_DAYS", ["90", "30", "7", "0"])
]
UPSTREAM_CHECK_TIMEOUT = env_int("UPSTREAM_CHECK_TIMEOUT", 60, minimum=1)
EOL_WARNING_DAYS = env_int("EOL_WARNING_DAYS", 90, minimum=1)
DEPRECATION_GRACE_DAYS = env_int("DEPRECATION_GRACE_DAYS", 90, minimum=0)

# --- Builds ----------------------------------------------------------------------------------
ARTEFACT_DIR = env_path("ARTEFACT_DIR", VAR_DIR / "artefacts")
DOWNLOAD_CACHE_DIR = env_path("DOWNLOAD_CACHE_DIR", VAR_DIR / "cache")
DOWNLOAD_CACHE_MAX_BYTES = env_int("DOWNLOAD_CACHE_MAX_BYTES", 20 * 1024**3, minimum=0)
# Where artefacts and downloaded upstream files are kept beyond the worker's own disk:
# "local" (nothing more than ARTEFACT_DIR and DOWNLOAD_CACHE_DIR) or "s3" (also a bucket, so
# that a worker on another machine can resume any build); see builds/store.py.
ARTEFACT_STORE = env_str("ARTEFACT_STORE", "local").strip().lower() or "local"
if ARTEFACT_STORE not in ("local", "s3"):
    raise ImproperlyConfigured(f"ARTEFACT_STORE={ARTEFACT_STORE!r} is not one of: local, s3.")
ARTEFACT_STORE_BUCKET = env_str("ARTEFACT_STORE_BUCKET", "image-factory-store")
ARTEFACT_STORE_REGION = env_str("ARTEFACT_STORE_REGION", "fr-par")
WORKER_ARCHITECTURES = env_list("WORKER_ARCHITECTURES", ["x86_64"])
FILES_DIR = env_path("FACTORY_FILES_DIR", BASE_DIR / "files")
BUILD_HEARTBEAT_SECONDS = env_int("BUILD_HEARTBEAT_SECONDS", 10, minimum=1)
BUILD_LEASE_SECONDS = env_int("BUILD_LEASE_SECONDS", 60, minimum=5)
STEP_TIMEOUT_SECONDS = env_int("STEP_TIMEOUT_SECONDS", 1800, minimum=1)
GUESTFS_MEMSIZE_MB = env_int("GUESTFS_MEMSIZE_MB", 2048, minimum=512)
# The only environment variables a recipe may read as ${secret:NAME} (comma-separated names;
# empty: recipes use no secrets). Each must be set on the workers that build such a recipe.
RECIPE_SECRETS = env_list("RECIPE_SECRETS", [])
_FACTORY_CREDENTIALS = {
    "DJANGO_SECRET_KEY",
    "DATABASE_URL",
    "REDIS_URL",
    "SCW_ACCESS_KEY",
    "SCW_SECRET_KEY",
    "EMAIL_HOST_PASSWORD",
    "FEED_TOKENS",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
}
if _bad_names := [n for n in RECIPE_SECRETS if not (n.isascii() and n.isidentifier())]:
    raise ImproperlyConfigured(f"RECIPE_SECRETS: not a variable name: {', '.join(_bad_names)}.")
if _own := sorted(_FACTORY_CREDENTIALS.intersection(RECIPE_SECRETS)):
    # A recipe's secret ends up in the image or its log; the factory's own never may.
    raise ImproperlyConfigured(
        f"RECIPE_SECRETS must not name the factory's own credentials: {', '.join(_own)}."
    )

# --- Test runs: the checks on booted servers in every enabled zone (builds/testing/) --------
BUILD_TEST_STAGE = env_bool("BUILD_TEST_STAGE", True)
TEST_CHECK_CONCURRENCY = env_int("TEST_CHECK_CONCURRENCY", 3, minimum=1)
# The server types the checks boot, per storage type of the image under test: one with local
# storage for local images (TEST_COMMERCIAL_TYPE, its former name, still read), and one
# without (Block Storage only, as PLAY2, PRO2, POP2 and COPARM1 types) for Block images.
TEST_COMMERCIAL_TYPE_LOCAL = env_str(
    "TEST_COMMERCIAL_TYPE_LOCAL", env_str("TEST_COMMERCIAL_TYPE", "DEV1-S")
)
TEST_COMMERCIAL_TYPE_BLOCK = env_str("TEST_COMMERCIAL_TYPE_BLOCK", "PLAY2-PICO")
# manage.py scaleway_smoke prices the storage its snapshots and images used at this rate
# (an estimate: set it from your price list); servers are priced from the product list.
SMOKE_STORAGE_EUR_PER_GB_MONTH = env_float("SMOKE_STORAGE_EUR_PER_GB_MONTH", 0.05)
# The user the checks log in as over SSH (with the test run's own key).
TEST_SSH_USER = env_str("TEST_SSH_USER", "root")
TEST_BOOT_TIMEOUT_SECONDS = env_int("TEST_BOOT_TIMEOUT_SECONDS", 600, minimum=10)
TEST_SSH_TIMEOUT_SECONDS = env_int("TEST_SSH_TIMEOUT_SECONDS", 30, minimum=1)
TEST_ACTION_TIMEOUT_SECONDS = env_int("TEST_ACTION_TIMEOUT_SECONDS", 300, minimum=10)
# A test run whose worker sent no heartbeat (every 10 s) for this long is taken over.
TEST_LEASE_SECONDS = env_int("TEST_LEASE_SECONDS", 60, minimum=30)

# --- Publishing and the cloud (credentials: SCW_* in the environment, read by cloud/) ------
PUBLISH_BUCKET = env_str("PUBLISH_BUCKET", "image-factory-artefacts")
PUBLISH_ZONE_CONCURRENCY = env_int("PUBLISH_ZONE_CONCURRENCY", 8, minimum=1)
PUBLISH_IMPORT_TIMEOUT_SECONDS = env_int("PUBLISH_IMPORT_TIMEOUT_SECONDS", 3600, minimum=10)
# How long an image made from the imported snapshot may take to become available.
PUBLISH_IMAGE_TIMEOUT_SECONDS = env_int("PUBLISH_IMAGE_TIMEOUT_SECONDS", 900, minimum=10)
# Transfers to and from Object Storage (the publish bucket and the artefact store): parts of
# this size (at least S3's 5 MiB; grown so that a file fits in 1000 parts), this many at once.
PUBLISH_PART_BYTES = env_int("PUBLISH_PART_BYTES", 64 * 1024**2, minimum=5 * 1024**2)
PUBLISH_UPLOAD_CONCURRENCY = env_int("PUBLISH_UPLOAD_CONCURRENCY", 4, minimum=1)
CLOUD_REQUEST_TIMEOUT_SECONDS = env_int("CLOUD_REQUEST_TIMEOUT_SECONDS", 60, minimum=1)
CLOUD_RETRY_ATTEMPTS = env_int("CLOUD_RETRY_ATTEMPTS", 5, minimum=1)
# The wait before a retry doubles from BASE up to MAX (a longer Retry-After is cut to MAX).
CLOUD_RETRY_BASE_SECONDS = env_float("CLOUD_RETRY_BASE_SECONDS", 1.0, minimum=0)
CLOUD_RETRY_MAX_SECONDS = env_float("CLOUD_RETRY_MAX_SECONDS", 60.0, minimum=0)
# After a create that timed out, how long to look (by tag) for what it may have made anyway,
# before trying again.
CLOUD_RECOVER_SECONDS = env_float("CLOUD_RECOVER_SECONDS", 30.0, minimum=0)
# A wait for a resource's state polls every CLOUD_POLL_SECONDS at first, less often later, up
# to every CLOUD_POLL_MAX_SECONDS.
CLOUD_POLL_SECONDS = env_float("CLOUD_POLL_SECONDS", 2.0, minimum=0.01)
CLOUD_POLL_MAX_SECONDS = env_float("CLOUD_POLL_MAX_SECONDS", 15.0, minimum=0.01)
# A resource back in the state a failed action leaves (a server stopped again after its start
# failed), with no reason given, ends the wait as a failure after this long.
CLOUD_FALLBACK_GRACE_SECONDS = env_float("CLOUD_FALLBACK_GRACE_SECONDS", 60.0, minimum=0)
# How long a deletion waits for the resource to be gone.
CLOUD_DELETE_WAIT_SECONDS = env_int("CLOUD_DELETE_WAIT_SECONDS", 600, minimum=1)
JANITOR_OLDER_THAN_HOURS = env_int("JANITOR_OLDER_THAN_HOURS", 24, minimum=0)
if JANITOR_OLDER_THAN_HOURS > 24 * 3650:  # the janitor's own form refuses more than ten years
    raise ImproperlyConfigured("JANITOR_OLDER_THAN_HOURS must be at most 87600 (ten years).")
JANITOR_DRY_RUN = env_bool("JANITOR_DRY_RUN", False)
# How long the janitor waits for one orphan to be gone.
JANITOR_WAIT_SECONDS = env_int("JANITOR_WAIT_SECONDS", 600, minimum=1)

# --- Team alerts and image requests ----------------------------------------------------------
ALERT_EMAILS = env_list("ALERT_EMAILS", [])
ALERT_WEBHOOK_URL = env_str("ALERT_WEBHOOK_URL")
IMAGE_REQUEST_RATE_LIMIT = env_int("IMAGE_REQUEST_RATE_LIMIT", 5, minimum=1)
IMAGE_REQUEST_RATE_WINDOW_MINUTES = env_int("IMAGE_REQUEST_RATE_WINDOW_MINUTES", 60, minimum=1)
IMAGE_REQUEST_CONFIRM_MAX_AGE_HOURS = env_int("IMAGE_REQUEST_CONFIRM_MAX_AGE_HOURS", 48, minimum=1)
# How many reverse proxies of ours stand in front of the dashboard: the public form's rate
# limit counts the Nth address from the right of X-Forwarded-For (0: REMOTE_ADDR).
TRUSTED_PROXY_COUNT = env_int("TRUSTED_PROXY_COUNT", 0, minimum=0)

# --- The catalogue feed for scripts ----------------------------------------------------------
# Bearer tokens that may read /lifecycle/feed.json without a session (comma- or line-separated;
# FEED_TOKENS_FILE for a file). Empty: only logged-in users read the feed. Never logged.
FEED_TOKEN_MIN_LENGTH = 32
FEED_TOKENS = [
    token.strip() for token in env_str("FEED_TOKENS").replace("\n", ",").split(",") if token.strip()
]
if any(len(token) < FEED_TOKEN_MIN_LENGTH for token in FEED_TOKENS):
    # The message names no token: settings errors end up in logs.
    raise ImproperlyConfigured(
        f"FEED_TOKENS: every token must be at least {FEED_TOKEN_MIN_LENGTH} characters "
        "(python -c 'import secrets; print(secrets.token_urlsafe(32))')."
    )

# --- Email -----------------------------------------------------------------------------------
EMAIL_HOST = env_str("EMAIL_HOST", "127.0.0.1")
EMAIL_PORT = env_int("EMAIL_PORT", 1025, minimum=1)
EMAIL_HOST_USER = env_str("EMAIL_HOST_USER")
EMAIL_HOST_PASSWORD = env_str("EMAIL_HOST_PASSWORD")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", False)
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "image-factory@localhost")
EMAIL_TIMEOUT = env_int("EMAIL_TIMEOUT", 30, minimum=1)
SITE_URL = env_str("SITE_URL", "http://127.0.0.1:8000").rstrip("/")  # for links in emails
NOTICE_SEND_HOUR = env_int("NOTICE_SEND_HOUR", 8, minimum=0)
NOTICE_RATE_PER_SECOND = env_int("NOTICE_RATE_PER_SECOND", 10, minimum=0)
NOTICE_SMTP_RETRIES = env_int("NOTICE_SMTP_RETRIES", 3, minimum=0)
# The wait before the first retry; it doubles with each one.
NOTICE_RETRY_BASE_SECONDS = env_float("NOTICE_RETRY_BASE_SECONDS", 1.0, minimum=0)
# Rows claimed (and sent) per ledger statement; a crash leaves at most this many "uncertain".
NOTICE_CLAIM_PAGE_SIZE = env_int("NOTICE_CLAIM_PAGE_SIZE", 50, minimum=1)
NOTICE_CLAIM_LEASE_SECONDS = env_int("NOTICE_CLAIM_LEASE_SECONDS", 600, minimum=10)
NOTICE_UNSUBSCRIBE_MAX_AGE_DAYS = env_int("NOTICE_UNSUBSCRIBE_MAX_AGE_DAYS", 730, minimum=1)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    # Under pytest, records go to its own capture (caplog) instead of a stream it closes.
    "root": {
        "handlers": [] if os.environ.get("PYTEST_VERSION") else ["console"],
        "level": env_str("LOG_LEVEL", "INFO"),
    },
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        # Not a line per process start; axes' lockouts and logins stay at INFO.
        "axes.apps": {"level": "WARNING"},
    },
}
