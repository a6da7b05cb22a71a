"""Local development: embedded services, verbose errors, mail to the console."""

from __future__ import annotations

from .base import *  # noqa: F403

DEBUG = True
ACCOUNT_EMAIL_VERIFICATION = "optional"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
