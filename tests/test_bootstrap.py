"""The two-command bootstrap: production settings pass the deploy checks; given URLs, the
embedded-services script starts nothing."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_production_settings_pass_check_deploy():
    env = dict(
        os.environ,
        DJANGO_SETTINGS_MODULE="config.settings.prod",
        SECRET_KEY=secrets.token_urlsafe(60),
    )
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "System check identified no issues (0 silenced)." in result.stdout


def test_production_settings_refuse_the_development_secret():
    env = {k: v for k, v in os.environ.items() if k != "SECRET_KEY"}
    env["DJANGO_SETTINGS_MODULE"] = "config.settings.prod"
    result = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 1
    assert "Set SECRET_KEY (50+ random characters) for production." in result.stderr


def test_with_urls_given_the_bootstrap_starts_no_service(tmp_path):
    env = dict(
        os.environ,
        FLEETOPS_VAR=str(tmp_path),
        DATABASE_URL="postgres://db.example:5432/x",
        REDIS_URL="redis://cache.example/0",
        MQTT_URL="mqtt://broker.example:1883",
    )
    result = subprocess.run(
        [sys.executable, "deploy/embedded.py", "up"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert result.stdout == ""
    assert not (tmp_path / "pg").exists()
    assert not (tmp_path / "redis").exists()
    assert not (tmp_path / "mosquitto").exists()
    written = (tmp_path / "run" / "services.env").read_text().splitlines()
    assert written == ["# written by deploy/embedded.py; values of the running embedded services"]


def test_every_model_change_has_its_migration():
    env = dict(os.environ, DJANGO_SETTINGS_MODULE="config.settings.test")
    result = subprocess.run(
        [sys.executable, "manage.py", "makemigrations", "--check", "--dry-run"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout
    assert result.stdout.strip() == "No changes detected"
