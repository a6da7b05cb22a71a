"""Test settings: the same real services as development (PostgreSQL, Redis, Mosquitto)."""

from __future__ import annotations

from .base import *  # noqa: F403
from .base import env

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
# Separate key spaces so a test run never meets a running `make run` in the same Redis.
CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": env.str("REDIS_URL"),
        "KEY_PREFIX": "fleetops-test-" + env.str("TEST_DATABASE_NAME", default="test_fleetops"),
    }
}
CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        "CONFIG": {
            # redis-py 8 defaults to a 5 s socket timeout, which kills channels_redis's long
            # blocking reads (channels_redis #422): every websocket would drop every 5 s.
            "hosts": [{"address": env.str("REDIS_URL"), "socket_timeout": None}],
            "prefix": "fleetops-test:channels",
        },
    }
}
CELERY_TASK_ALWAYS_EAGER = False
INSTALLED_APPS = [*INSTALLED_APPS, "tests.testapp"]
