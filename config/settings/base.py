"""Settings shared by every environment.

Every environment variable the platform reads is read here, through django-environ, and
nowhere else. When a URL is not set in the environment, the values written by the embedded
services bootstrap (``var/run/services.env``) are used.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import environ

BASE_DIR = Path(__file__).resolve().parent.parent.parent
VAR_DIR = BASE_DIR / "var"

env = environ.Env()
_services_env = Path(
    env.str("FLEETOPS_SERVICES_ENV", default=str(VAR_DIR / "run" / "services.env"))
)
if _services_env.exists():
    environ.Env.read_env(str(_services_env), overwrite=False)

# --- environment (the one place) ---------------------------------------------------------------
DEV_SECRET_KEY = "dev-insecure-only-for-local-use-0123456789abcdefghij"
SECRET_KEY = env.str("SECRET_KEY", default=DEV_SECRET_KEY)
DEBUG = env.bool("DEBUG", default=False)
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])
DATABASE_URL = env.str("DATABASE_URL", default="")
REDIS_URL = env.str("REDIS_URL", default="")
MQTT_URL = env.str("MQTT_URL", default="")
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default=REDIS_URL)
EMAIL_URL = env.str("EMAIL_URL", default="consolemail://")
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="Fleetops <noreply@localhost>")
SITE_URL = env.str("SITE_URL", default="http://localhost:8000")
STATIC_ROOT = Path(env.str("STATIC_ROOT", default=str(VAR_DIR / "static")))
MEDIA_ROOT = Path(env.str("MEDIA_ROOT", default=str(VAR_DIR / "media")))
LOG_LEVEL = env.str("LOG_LEVEL", default="INFO")
OUTBOX_MAX_ATTEMPTS = env.int("OUTBOX_MAX_ATTEMPTS", default=10)
OUTBOX_LEASE_SECONDS = env.int("OUTBOX_LEASE_SECONDS", default=60)
TEST_DATABASE_NAME = env.str("TEST_DATABASE_NAME", default="test_fleetops")
# Notification channels may post to loopback / private / link-local addresses only when this
# is true; unset: only with DEBUG (SSRF, docs/notifications.md).
NOTIFY_ALLOW_PRIVATE_ADDRESSES = env.bool("NOTIFY_ALLOW_PRIVATE_ADDRESSES", default=None)

# --- PKI, broker and enrollment (docs/operations.md, docs/device-protocol.md) -----------------
# CA private keys are stored encrypted with a key derived from this secret (SECRET_KEY if unset).
PKI_KEY_ENCRYPTION_KEY = env.str("PKI_KEY_ENCRYPTION_KEY", default="")
# The installation root CA from configuration (PEM files; the key may be passphrase-protected).
# Unset: a root is generated on first use and kept, encrypted, in the database.
PKI_ROOT_CERT_FILE = env.str("PKI_ROOT_CERT_FILE", default="")
PKI_ROOT_KEY_FILE = env.str("PKI_ROOT_KEY_FILE", default="")
PKI_ROOT_KEY_PASSPHRASE = env.str("PKI_ROOT_KEY_PASSPHRASE", default="")
PKI_DEVICE_CERT_DAYS = env.int("PKI_DEVICE_CERT_DAYS", default=365)
PKI_RENEW_BEFORE_DAYS = env.int("PKI_RENEW_BEFORE_DAYS", default=30)
PKI_MAX_AGE_DAYS = env.int("PKI_MAX_AGE_DAYS", default=730)  # older certificates are "aged"
PKI_CRL_DAYS = env.int("PKI_CRL_DAYS", default=7)
# The broker as devices see it (enrollment answers) and where its generated files live.
MQTT_PUBLIC_HOST = env.str("MQTT_PUBLIC_HOST", default="127.0.0.1")
MQTT_DEVICE_PORT = env.int("MQTT_DEVICE_PORT", default=8883)  # TLS + client certificate
MQTT_TOKEN_PORT = env.int("MQTT_TOKEN_PORT", default=8884)  # TLS + device token as password
MQTT_BROKER_DIR = env.str("MQTT_BROKER_DIR", default=str(VAR_DIR / "mosquitto" / "fleetops"))
MQTT_BROKER_PIDFILE = env.str("MQTT_BROKER_PIDFILE", default="")  # SIGHUP after a sync
MQTT_MAX_MESSAGE_BYTES = env.int("MQTT_MAX_MESSAGE_BYTES", default=262_144)
# The device listeners' ACL as a Mosquitto plugin that reports what it refuses (built at
# broker_config; off or unbuildable: the same ACL as a pattern file, refusals unreported).
MQTT_ACL_PLUGIN = env.bool("MQTT_ACL_PLUGIN", default=True)
# The reverse proxy's verified client certificate (nginx: $ssl_client_escaped_cert), trusted
# only from these addresses (deploy/nginx/fleetops.conf).
DEVICE_CERT_HEADER = env.str("DEVICE_CERT_HEADER", default="X-SSL-Client-Cert")
DEVICE_TRUSTED_PROXIES = env.list("DEVICE_TRUSTED_PROXIES", default=["127.0.0.1", "::1"])
ENROLL_RATE_PER_SOURCE = env.int("ENROLL_RATE_PER_SOURCE", default=120)  # per minute
ENROLL_RATE_PER_TOKEN = env.int("ENROLL_RATE_PER_TOKEN", default=600)  # per minute

# --- telemetry (docs/telemetry.md) -------------------------------------------------------------
# Accepted device timestamps: [now - MAX_AGE (never before the oldest partition), now + FUTURE].
TELEMETRY_MAX_AGE = timedelta(days=env.int("TELEMETRY_MAX_AGE_DAYS", default=7))
TELEMETRY_MAX_FUTURE = timedelta(seconds=env.int("TELEMETRY_MAX_FUTURE_SECONDS", default=300))
TELEMETRY_MAX_SAMPLES_PER_MESSAGE = env.int("TELEMETRY_MAX_SAMPLES_PER_MESSAGE", default=1000)
TELEMETRY_DEVICE_CACHE_SECONDS = env.float("TELEMETRY_DEVICE_CACHE_SECONDS", default=10.0)
# last_seen_at moves only when it is this much older than a batch's newest message
TELEMETRY_LAST_SEEN_GRANULARITY = timedelta(
    seconds=env.int("TELEMETRY_LAST_SEEN_GRANULARITY_SECONDS", default=15)
)
TELEMETRY_PARTITIONS_AHEAD = env.int("TELEMETRY_PARTITIONS_AHEAD", default=7)
# Retention until plans exist (billing issue): a default and a per-organization override.
TELEMETRY_RETENTION_DAYS = env.int("TELEMETRY_RETENTION_DAYS", default=30)
TELEMETRY_RETENTION_DAYS_BY_ORGANIZATION: dict[str, int] = {
    slug: int(days)
    for slug, days in env.dict("TELEMETRY_RETENTION_DAYS_BY_ORGANIZATION", default={}).items()
}
# Bearer token of GET /metrics (Prometheus); empty: the endpoint answers 404 (docs/operations.md)
METRICS_TOKEN = env.str("METRICS_TOKEN", default="")

if not DATABASE_URL:
    raise environ.ImproperlyConfigured(
        "DATABASE_URL is not set and no embedded services are running: run `make run` or "
        "`make services`, or set DATABASE_URL/REDIS_URL/MQTT_URL for external services."
    )

# --- Django ------------------------------------------------------------------------------------
INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "guardian",
    "allauth",
    "allauth.account",
    "allauth.mfa",
    "channels",
    "django_celery_beat",
    "apps.core",
    "apps.accounts",
    "apps.profiles",
    "apps.devices",
    "apps.changes",
    "apps.commands",
    "apps.configuration",
    "apps.telemetry",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "apps.core.middleware.RequestIdMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "allauth.account.middleware.AccountMiddleware",
    "apps.accounts.middleware.ActorMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "apps.accounts.middleware.MFARequiredMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "config.urls"
ASGI_APPLICATION = "config.asgi.application"
WSGI_APPLICATION = "config.wsgi.application"
AUTH_USER_MODEL = "accounts.User"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

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
                "apps.accounts.context_processors.portal",
            ],
        },
    },
]

DATABASES = {"default": env.db_url_config(DATABASE_URL)}
DATABASES["default"]["CONN_MAX_AGE"] = env.int("DB_CONN_MAX_AGE", default=0)
DATABASES["default"]["TEST"] = {"NAME": TEST_DATABASE_NAME}

CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": "fleetops",
    }
}
CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        "CONFIG": {
            # redis-py 8 defaults to a 5 s socket timeout, which kills channels_redis's long
            # blocking reads (channels_redis #422): every websocket would drop every 5 s.
            "hosts": [{"address": REDIS_URL, "socket_timeout": None}],
            "prefix": "fleetops:channels",
        },
    }
}
SESSION_ENGINE = "django.contrib.sessions.backends.cached_db"

AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",
    "allauth.account.auth_backends.AuthenticationBackend",
    "guardian.backends.ObjectPermissionBackend",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "/static/"
MEDIA_URL = "/media/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}

vars().update(env.email_url_config(EMAIL_URL))  # EMAIL_BACKEND, EMAIL_HOST, ...

LOGIN_URL = "account_login"
LOGIN_REDIRECT_URL = "portal:home"

# --- allauth -----------------------------------------------------------------------------------
ACCOUNT_LOGIN_METHODS = {"email"}
ACCOUNT_SIGNUP_FIELDS = ["email*", "password1*", "password2*"]
ACCOUNT_USER_MODEL_USERNAME_FIELD = None
ACCOUNT_OPEN_SIGNUP = env.bool("ACCOUNT_OPEN_SIGNUP", default=False)  # else by invitation
ACCOUNT_EMAIL_VERIFICATION = env.str("ACCOUNT_EMAIL_VERIFICATION", default="mandatory")
ACCOUNT_UNIQUE_EMAIL = True
ACCOUNT_LOGOUT_REDIRECT_URL = "account_login"
ACCOUNT_ADAPTER = "apps.accounts.adapters.AccountAdapter"
ACCOUNT_EMAIL_SUBJECT_PREFIX = "[Fleetops] "
ACCOUNT_DEFAULT_HTTP_PROTOCOL = "https" if SITE_URL.startswith("https") else "http"
ACCOUNT_RATE_LIMITS: dict[str, str] | bool = {"login_failed": "10/m/ip,5/5m/key"}
MFA_SUPPORTED_TYPES = ["totp", "recovery_codes"]
MFA_TOTP_ISSUER = "Fleetops"

# --- guardian ----------------------------------------------------------------------------------
ANONYMOUS_USER_NAME = None
GUARDIAN_RAISE_403 = False

# --- REST framework ----------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "apps.accounts.api.authentication.APIKeyAuthentication",
        "apps.accounts.api.authentication.SessionActorAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PAGINATION_CLASS": "apps.core.api.pagination.CursorPagination",
    "PAGE_SIZE": 50,
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "apps.core.api.exceptions.exception_handler",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Fleetops API",
    "DESCRIPTION": "DeviceOps platform API. Every error uses one envelope: {error: {...}}.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    "SCHEMA_PATH_PREFIX": "/api/v1",
    "ENUM_NAME_OVERRIDES": {
        "OrganizationKindEnum": "apps.accounts.models.Organization.Kind",
        "GroupKindEnum": "apps.devices.choices.GroupKind",
        "DeviceStateEnum": "apps.devices.choices.DeviceState",
        "TransferStatusEnum": "apps.devices.choices.TransferStatus",
        "JobStatusEnum": "apps.core.models.JobStatus",
        "DeliveryStatusEnum": "apps.core.models.DeliveryStatus",
        "CredentialStatusEnum": "apps.devices.choices.CredentialStatus",
        "CertificateAuthorityStatusEnum": "apps.devices.pki.external.STATUSES",
        "DeviceTokenStatusEnum": "apps.devices.pki.services.TOKEN_STATUSES",
        "ChannelKindEnum": "apps.telemetry.choices.ChannelKind",
        "SeverityEnum": "apps.telemetry.choices.Severity",
        "AlertRuleKindEnum": "apps.telemetry.choices.RuleKind",
        "AlertStatusEnum": "apps.telemetry.choices.AlertStatus",
    },
}

# --- Celery ------------------------------------------------------------------------------------
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SOFT_TIME_LIMIT = 60
CELERY_TASK_TIME_LIMIT = 90
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
CELERY_TIMEZONE = "UTC"
# Every periodic schedule of the platform is declared here, in one place.
CELERY_BEAT_SCHEDULE = {
    "core.sweep_outbox": {"task": "core.sweep_outbox", "schedule": timedelta(seconds=30)},
    "devices.certificate_audit": {
        "task": "devices.certificate_audit",
        "schedule": timedelta(days=1),
    },
    "devices.publish_downlinks": {  # after a lost wake-up (apps/devices/downlinks.py)
        "task": "devices.publish_downlinks",
        "schedule": timedelta(seconds=5),
        "options": {"expires": 5},
    },
    # change requests (docs/changes.md): scheduled executions, expiry
    "changes.run_due": {
        "task": "changes.run_due",
        "schedule": timedelta(seconds=30),
        "options": {"expires": 30},
    },
    "changes.expire": {
        "task": "changes.expire",
        "schedule": timedelta(seconds=60),
        "options": {"expires": 60},
    },
    "commands.sweep": {  # retries, timeouts and expiry of commands (docs/commands.md)
        "task": "commands.sweep",
        "schedule": timedelta(seconds=10),
        "options": {"expires": 10},
    },
    "configuration.drift_sweep": {  # docs/configuration.md
        "task": "configuration.drift_sweep",
        "schedule": timedelta(seconds=30),
        "options": {"expires": 30},
    },
    "telemetry.maintain_partitions": {
        "task": "telemetry.maintain_partitions",
        "schedule": timedelta(hours=1),
    },
    "telemetry.heartbeat_sweep": {
        "task": "telemetry.heartbeat_sweep",
        "schedule": timedelta(seconds=20),
        "options": {"expires": 20},
    },
    # alerting (docs/alerts.md): periodic rule kinds and state-change damping
    **{
        f"telemetry.alerts_{name}": {
            "task": f"telemetry.alerts_{name}",
            "schedule": timedelta(seconds=30),
            "options": {"expires": 30},
        }
        for name in ("missing_data", "missed_heartbeats", "fleet_offline", "state_pending")
    },
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {"django.db.backends": {"level": "INFO"}},
}
