"""Switchboard settings: one file, configured only through environment variables.

Every variable is documented in README's table. The embedded defaults (SQLite,
in-memory channel layer and rate limiter, console email) make `make run` work on a
fresh machine; production sets DATABASE_URL, REDIS_URL, SECRET_KEY and friends.
"""

from __future__ import annotations

import sys
from pathlib import Path

import dj_database_url
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.retry import Retry

from console.env import envbool, envint, envlist, envstr

BASE_DIR = Path(__file__).resolve().parent.parent

DEBUG = envbool("DEBUG", "true")
SECRET_KEY = envstr("SECRET_KEY", "insecure-development-key-change-me-in-production-0123456789")
ALLOWED_HOSTS = envlist("ALLOWED_HOSTS", "localhost,127.0.0.1,[::1],testserver")
CSRF_TRUSTED_ORIGINS = envlist("CSRF_TRUSTED_ORIGINS")
# Empty: every page and email uses the host the request came to (console/site.py).
SITE_URL = envstr("SITE_URL").rstrip("/")
SITE_NAME = envstr("SITE_NAME", "Switchboard")
TESTING = "pytest" in sys.modules

# Daphne only serves `manage.py runserver` (development); under uvicorn its Twisted
# reactor would only cost every worker about 15 MB of memory.
DEV_SERVER_APPS = ["daphne"] if "runserver" in sys.argv else []

INSTALLED_APPS = [
    *DEV_SERVER_APPS,
    "console.apps.SwitchboardAdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "django.contrib.sites",
    "django_htmx",
    "channels",
    "allauth",
    "allauth.account",
    "allauth.mfa",
    "allauth.socialaccount",
    "allauth.socialaccount.providers.github",
    "allauth.socialaccount.providers.discord",
    "console",
    "accounts",
    "billing",
    "gateway",
    "chat",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "console.middleware.ContentSecurityPolicyMiddleware",
    # Inside the middleware that add headers (its page gets them too) and those that
    # reach the database only lazily (sessions, users, messages): while the database
    # is away every page is templates/503.html, at once.
    "console.unavailable.OutageMiddleware",
    # Reads the user (the database): inside OutageMiddleware.
    "accounts.middleware.TimeZoneMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "allauth.account.middleware.AccountMiddleware",
]

ROOT_URLCONF = "console.urls"
# What /v1 and the probes resolve through (console.lean_handler): console.urls is imported
# only when a request needs it.
API_URLCONF = "console.lean_urls"
ASGI_APPLICATION = "console.asgi.application"
WSGI_APPLICATION = None

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
                "console.context_processors.site",
            ],
        },
    },
]

# --- Database -------------------------------------------------------------------
DATABASE_URL = envstr("DATABASE_URL", f"sqlite:///{BASE_DIR / 'db.sqlite3'}")
DATABASES = {"default": dj_database_url.parse(DATABASE_URL)}
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # Django's backend, refusing connections at once while the database is away.
    DATABASES["default"]["ENGINE"] = "console.postgresql"
    DATABASES["default"]["OPTIONS"] = {
        # A server that does not answer is given up on within seconds (libpq's minimum
        # is 2), not the operating system's minutes; gateway.outages probes it back.
        "connect_timeout": 2,
        # The URL's own options (`?sslmode=require&connect_timeout=5`) are kept.
        **DATABASES["default"].get("OPTIONS", {}),
        "pool": {
            "min_size": envint("DB_POOL_MIN", "1"),
            "max_size": envint("DB_POOL_MAX", "20"),
            # The longest a query waits for a connection: a request's worst case while
            # the database goes away (README, "When Redis or PostgreSQL is down").
            "timeout": float(envstr("DB_POOL_TIMEOUT", "2")),
        },
    }
else:
    # A file, not memory: the gateway's worker threads and test servers share it.
    DATABASES["default"]["TEST"] = {
        "NAME": envstr("SQLITE_TEST_NAME", str(BASE_DIR / ".test-db.sqlite3"))
    }
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 20,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Redis: channel layer, cache, rate limits -------------------------------------
REDIS_URL = envstr("REDIS_URL")
REDIS_TIMEOUT_SECONDS = float(envstr("REDIS_TIMEOUT_SECONDS", "1"))
# For every Redis client: give up within the timeout, and retry once, at once, only a
# dropped connection (a Redis that restarted leaves pooled connections dead).
REDIS_CLIENT_OPTIONS = {
    "socket_timeout": REDIS_TIMEOUT_SECONDS,
    "socket_connect_timeout": REDIS_TIMEOUT_SECONDS,
    "retry": Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)),
}
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": "sb",
            "OPTIONS": REDIS_CLIENT_OPTIONS,
        }
    }
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [REDIS_URL]},
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

# --- Auth -------------------------------------------------------------------------
AUTH_USER_MODEL = "accounts.User"
AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",
    "allauth.account.auth_backends.AuthenticationBackend",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
if TESTING:
    PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
LOGIN_URL = "account_login"
LOGIN_REDIRECT_URL = "/"
SITE_ID = 1

ACCOUNT_ADAPTER = "accounts.adapter.AccountAdapter"
ACCOUNT_USER_MODEL_USERNAME_FIELD = None
ACCOUNT_LOGIN_METHODS = {"email"}
ACCOUNT_SIGNUP_FIELDS = ["email*", "password1*", "password2*"]
ACCOUNT_EMAIL_VERIFICATION = envstr("ACCOUNT_EMAIL_VERIFICATION", "mandatory")
ACCOUNT_EMAIL_VERIFICATION_BY_CODE_ENABLED = True
ACCOUNT_LOGIN_BY_CODE_ENABLED = True
ACCOUNT_PASSWORD_RESET_BY_CODE_ENABLED = True
ACCOUNT_CHANGE_EMAIL = True
# allauth's defaults (sign-up, login, failed logins, code entry) apply unless disabled.
ACCOUNT_RATE_LIMITS: dict | bool = False if envbool("ACCOUNT_RATE_LIMITS_DISABLED", "false") else {}
ACCOUNT_LOGOUT_ON_GET = False
SOCIALACCOUNT_ADAPTER = "accounts.adapter.SocialAccountAdapter"
SOCIALACCOUNT_EMAIL_AUTHENTICATION = True
SOCIALACCOUNT_EMAIL_AUTHENTICATION_AUTO_CONNECT = True
GITHUB_CLIENT_ID = envstr("GITHUB_CLIENT_ID")
GITHUB_CLIENT_SECRET = envstr("GITHUB_CLIENT_SECRET")
GITHUB_URL = envstr("GITHUB_URL")
SOCIALACCOUNT_PROVIDERS: dict[str, dict] = {"github": {"SCOPE": ["read:user", "user:email"]}}
if GITHUB_CLIENT_ID:
    SOCIALACCOUNT_PROVIDERS["github"]["APPS"] = [
        {"client_id": GITHUB_CLIENT_ID, "secret": GITHUB_CLIENT_SECRET, "key": ""}
    ]
if GITHUB_URL:
    SOCIALACCOUNT_PROVIDERS["github"]["GITHUB_URL"] = GITHUB_URL
# Discord sign-in beside GitHub, hidden like it until its app is configured. Its scopes
# are allauth's default (identify, email): only a verified e-mail signs anyone in.
DISCORD_CLIENT_ID = envstr("DISCORD_CLIENT_ID")
DISCORD_CLIENT_SECRET = envstr("DISCORD_CLIENT_SECRET")
SOCIALACCOUNT_PROVIDERS["discord"] = {}
if DISCORD_CLIENT_ID:
    SOCIALACCOUNT_PROVIDERS["discord"]["APPS"] = [
        {"client_id": DISCORD_CLIENT_ID, "secret": DISCORD_CLIENT_SECRET, "key": ""}
    ]
MFA_ADAPTER = "accounts.adapter.MFAAdapter"
MFA_SUPPORTED_TYPES = ["totp", "recovery_codes", "webauthn"]
MFA_PASSKEY_LOGIN_ENABLED = True
MFA_PASSKEY_SIGNUP_ENABLED = True
MFA_WEBAUTHN_ALLOW_INSECURE_ORIGIN = DEBUG
# Staff reach /admin/ only after a second factor in this session (console/admin.py).
ADMIN_REQUIRE_2FA = envbool("ADMIN_REQUIRE_2FA", "false")

# --- Email -----------------------------------------------------------------------
EMAIL_HOST = envstr("EMAIL_HOST")
if EMAIL_HOST:
    EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    EMAIL_PORT = envint("EMAIL_PORT", "587")
    EMAIL_HOST_USER = envstr("EMAIL_HOST_USER")
    EMAIL_HOST_PASSWORD = envstr("EMAIL_HOST_PASSWORD")
    EMAIL_USE_TLS = envbool("EMAIL_USE_TLS", "true")
else:
    EMAIL_BACKEND = "django.core.mail.backends.console.EmailBackend"
DEFAULT_FROM_EMAIL = envstr("DEFAULT_FROM_EMAIL", "Switchboard <noreply@localhost>")

# --- Static -----------------------------------------------------------------------
STATIC_URL = "static/"
WHITENOISE_USE_FINDERS = DEBUG or TESTING
WHITENOISE_AUTOREFRESH = DEBUG or TESTING
STATIC_ROOT = BASE_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "django.contrib.staticfiles.storage.StaticFilesStorage"
            if DEBUG or TESTING
            else "whitenoise.storage.CompressedManifestStaticFilesStorage"
        )
    },
}

LANGUAGE_CODE = "en-us"
# locale/en: allauth's Title Case headings and buttons in the console's sentence case.
LOCALE_PATHS = [BASE_DIR / "locale"]
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# --- Security (production) -------------------------------------------------------
SECURE_PROXY_SSL_HEADER = (
    ("HTTP_X_FORWARDED_PROTO", "https") if envbool("TRUST_X_FORWARDED_PROTO", "false") else None
)
SECURE_SSL_REDIRECT = envbool("SECURE_SSL_REDIRECT", "false" if DEBUG else "true")
SESSION_COOKIE_SECURE = not DEBUG
CSRF_COOKIE_SECURE = not DEBUG
SECURE_HSTS_SECONDS = envint("SECURE_HSTS_SECONDS", "0" if DEBUG else "31536000")
SECURE_HSTS_INCLUDE_SUBDOMAINS = not DEBUG
SECURE_HSTS_PRELOAD = not DEBUG
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
# Every script and style comes from static/ (htmx included): nothing inline runs. The
# one hash is allauth's email page, which hides an empty form with style="display: none".
CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "style-src-attr 'unsafe-hashes' 'sha256-ZdHxw9eWtnxUb3mk6tBS+gIiVUPE3pGM470keHPDFlE='",
        "img-src 'self' data:",
        "connect-src 'self'",
        "font-src 'self'",
        "object-src 'none'",
        "base-uri 'self'",
        "frame-ancestors 'none'",
    ]
)
SILENCED_SYSTEM_CHECKS = envlist("SILENCED_SYSTEM_CHECKS")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {
            "()": "console.logs.OneLineFormatter",
            "format": "%(asctime)s %(levelname)s %(name)s %(message)s",
        }
    },
    "filters": {"not_503": {"()": "console.unavailable.SkipServiceUnavailable"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": envstr("LOG_LEVEL", "INFO")},
    "loggers": {
        # Django's DEFAULT_LOGGING gives "django" a console handler of its own; records
        # also reach the root's, so the dev server printed every request twice.
        "django": {"handlers": [], "level": "INFO", "propagate": True},
        "httpx": {"level": "WARNING"},
        "httpcore": {"level": "WARNING"},
        # API clients' 4xx are answered with a clear error; logging each one is noise.
        # A 503 is an outage (logged once by gateway.outages) or a cooling provider.
        "django.request": {"level": "ERROR", "filters": ["not_503"]},
        # Every reconnection attempt of the pool: gateway.outages logs the outage once.
        "psycopg.pool": {"level": "ERROR"},
    },
}

# --- Gateway and money -----------------------------------------------------------
SIGNUP_GRANT_MICRO_USD = envint("SIGNUP_GRANT_MICRO_USD", "1000000")
PRICE_MARKUP_PERCENT = envint("PRICE_MARKUP_PERCENT", "0")
MAX_REQUEST_BYTES = envint("MAX_REQUEST_BYTES", str(4 * 1024 * 1024))
UPSTREAM_CONNECT_TIMEOUT = float(envstr("UPSTREAM_CONNECT_TIMEOUT", "5"))
UPSTREAM_READ_TIMEOUT = float(envstr("UPSTREAM_READ_TIMEOUT", "120"))
# Below the 5 s after which uvicorn (vLLM, SGLang, LiteLLM) and Node close an idle
# keep-alive connection: a request sent as the server closes it fails.
UPSTREAM_KEEPALIVE_SECONDS = float(envstr("UPSTREAM_KEEPALIVE_SECONDS", "4"))
PROVIDER_COOLDOWN_SECONDS = envint("PROVIDER_COOLDOWN_SECONDS", "30")
PROVIDER_PROBE_SECONDS = float(envstr("PROVIDER_PROBE_SECONDS", "1"))
HOLD_TTL_SECONDS = envint("HOLD_TTL_SECONDS", "900")
# Days raw usage records are kept (`manage.py pruneusage`); 0 keeps them for ever. The
# hourly rollups the dashboards read are kept regardless.
USAGE_RETENTION_DAYS = envint("USAGE_RETENTION_DAYS", "0")
# Limits for keys that set none of their own (0: unlimited).
DEFAULT_KEY_RPM = envint("DEFAULT_KEY_RPM", "0")
DEFAULT_KEY_TPM = envint("DEFAULT_KEY_TPM", "0")
HOLD_REFRESH_SECONDS = envint("HOLD_REFRESH_SECONDS", str(max(1, HOLD_TTL_SECONDS // 3)))
SETTLEMENT_JOURNAL_DIR = Path(
    envstr("SETTLEMENT_JOURNAL_DIR", str(BASE_DIR / "var" / "settlements"))
)
KEY_CACHE_SECONDS = float(envstr("KEY_CACHE_SECONDS", "2"))
CATALOG_CACHE_SECONDS = float(envstr("CATALOG_CACHE_SECONDS", "5"))
# The smart router remembers a conversation's model this long after its last turn.
ROUTER_CONVERSATION_SECONDS = envint("ROUTER_CONVERSATION_SECONDS", "3600")
# The cheap model that extracts a persona's memories after each exchange ("": none).
PERSONA_MEMORY_MODEL = envstr("PERSONA_MEMORY_MODEL", "demo")
DEMO_TOKEN_DELAY_MS = envint("DEMO_TOKEN_DELAY_MS", "20")
METRICS_TOKEN = envstr("METRICS_TOKEN")
DATA_UPLOAD_MAX_MEMORY_SIZE = MAX_REQUEST_BYTES
# The public estimate and failed key checks, counted per client address (REMOTE_ADDR).
ESTIMATE_MAX_BYTES = envint("ESTIMATE_MAX_BYTES", str(256 * 1024))
ESTIMATE_REQUESTS_PER_MINUTE = envint("ESTIMATE_REQUESTS_PER_MINUTE", "60")
AUTH_FAILURES_PER_MINUTE = envint("AUTH_FAILURES_PER_MINUTE", "20")
# The sign-up and sign-in API (/v1/auth/…): sign-ups per client address per minute, the
# youngest age allowed, and how many API sign-in keys a user keeps active.
SIGNUPS_PER_MINUTE = envint("SIGNUPS_PER_MINUTE", "5")
SIGNUP_MINIMUM_AGE = envint("SIGNUP_MINIMUM_AGE", "13")
API_LOGIN_KEYS_KEPT = envint("API_LOGIN_KEYS_KEPT", "5")
# POST /chat/stream without a `model` (empty: the first model the caller may use, by id).
CHAT_API_DEFAULT_MODEL = envstr("CHAT_API_DEFAULT_MODEL")
# The document library behind RAG (gateway/documents): per file, per document's text, per account.
DOCUMENT_MAX_BYTES = envint("DOCUMENT_MAX_BYTES", str(10 * 1024 * 1024))
DOCUMENT_MAX_CHARS = envint("DOCUMENT_MAX_CHARS", "2000000")
DOCUMENTS_MAX_PER_ACCOUNT = envint("DOCUMENTS_MAX_PER_ACCOUNT", "100")

# --- Billing: Stripe, unlimited mode, low-balance warning -------------------------
STRIPE_SECRET_KEY = envstr("STRIPE_SECRET_KEY")
STRIPE_WEBHOOK_SECRET = envstr("STRIPE_WEBHOOK_SECRET")
STRIPE_API_BASE = envstr("STRIPE_API_BASE", "https://api.stripe.com")
UNLIMITED_MODE_FLOOR_MICRO_USD = envint("UNLIMITED_MODE_FLOOR_MICRO_USD", "1000000")
LOW_BALANCE_WARNING_MICRO_USD = envint("LOW_BALANCE_WARNING_MICRO_USD", "1000000")

# --- Request log: refusals, stored prompts -----------------------------------------
# Refused calls (402/403/404/429 …) per key and worker logged in a minute; the rest
# are only counted (switchboard_refusals_unlogged_total), so a flood stays cheap.
REFUSALS_LOGGED_PER_KEY_PER_MINUTE = envint("REFUSALS_LOGGED_PER_KEY_PER_MINUTE", "120")
PROMPT_RETENTION_DAYS = envint("PROMPT_RETENTION_DAYS", "30")
# Branding: a named unit of credit shown beside USD (unset: USD only); see billing/money.py.
CREDIT_UNIT_NAME = envstr("CREDIT_UNIT_NAME").strip()
CREDIT_UNIT_MICRO_USD = envint("CREDIT_UNIT_MICRO_USD", "0")
# How new API keys start (Bentoo: btoo_sk_live_); keys minted under another keep working.
API_KEY_PREFIX = envstr("API_KEY_PREFIX", "sk-sb-")
