"""Test settings: the same real services as development (PostgreSQL, Redis, Mosquitto)."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

from django.core.exceptions import ImproperlyConfigured

from .base import *  # noqa: F403
from .base import CELERY_BROKER_URL, REDIS_URL, env

DEBUG = False
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # speed only
EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
NOTIFY_ALLOW_PRIVATE_ADDRESSES = True  # tests post to their own servers on 127.0.0.1
ACCOUNT_EMAIL_VERIFICATION = "mandatory"
ACCOUNT_RATE_LIMITS = False
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}


def _redis_database(url: str, number: int) -> str:
    return urlunsplit(urlsplit(url)._replace(path=f"/{number}"))


def _redis_database_of(url: str) -> int:
    return int(urlsplit(url).path.strip("/") or 0)


# A Redis database of the tests' own, emptied when a session starts (tests/conftest.py): the
# development one holds the Celery queue that `make run`'s worker and the demo's read, so a task
# a test enqueued there ran in them against rows that exist only in the test database. 11, 12
# and 13 are the benches' (bench/ingest.py, live_latency.py, connectivity.py).
TEST_REDIS_DB = env.int("TEST_REDIS_DB", default=15)
_RESERVED_REDIS_DBS = {_redis_database_of(REDIS_URL), 11, 12, 13}
if TEST_REDIS_DB in _RESERVED_REDIS_DBS:
    raise ImproperlyConfigured(
        f"TEST_REDIS_DB={TEST_REDIS_DB} is taken (development: "
        f"{_redis_database_of(REDIS_URL)}, benches: 11, 12, 13); choose another."
    )
if CELERY_BROKER_URL == REDIS_URL:  # the default; a broker set apart is used as given
    CELERY_BROKER_URL = _redis_database(REDIS_URL, TEST_REDIS_DB)
REDIS_URL = _redis_database(REDIS_URL, TEST_REDIS_DB)
# Key prefixes too, so test runs sharing that database (helpers in one tree) keep apart.
CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": "fleetops-test-" + env.str("TEST_DATABASE_NAME", default="test_fleetops"),
    }
}
CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        "CONFIG": {
            # redis-py 8 defaults to a 5 s socket timeout, which kills channels_redis's long
            # blocking reads (channels_redis #422): every websocket would drop every 5 s.
            "hosts": [{"address": REDIS_URL, "socket_timeout": None}],
            "prefix": "fleetops-test:channels",
        },
    }
}
CELERY_TASK_ALWAYS_EAGER = False
INSTALLED_APPS = [*INSTALLED_APPS, "tests.testapp"]
