"""The fleet pages in Debian's Chromium, served by a real daphne (HTTP + websockets) against the
test database: filters, the device page with its map and timeline, a transition by button and
a state badge that changes live, without a reload.

Screenshots land in test-artifacts/screenshots/fleet-*.png.
"""

from __future__ import annotations

import datetime
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import connection, connections

from apps.core.actors import SYSTEM
from apps.core.models import Job
from apps.devices import services
from apps.devices.models import Device

from .test_browser import CHROMIUM, CHROMIUM_ARGS, SCREENSHOTS, sign_in
from .test_fleet_pages import make_version, register

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def served(tmp_path) -> Iterator[str]:
    """daphne serving config.asgi against the test database, static files collected for
    WhiteNoise (the portal's JavaScript and Leaflet)."""
    settings = connection.settings_dict
    env = dict(
        os.environ,
        DJANGO_SETTINGS_MODULE="config.settings.test",
        DATABASE_URL=(
            f"postgres://{settings['USER']}@{settings['HOST']}:{settings['PORT']}/"
            f"{settings['NAME']}"
        ),
        STATIC_ROOT=str(tmp_path / "static"),
    )
    subprocess.run(
        [str(ROOT / ".venv/bin/python"), "manage.py", "collectstatic", "--noinput", "-v0"],
        cwd=ROOT,
        env=env,
        check=True,
    )
    port = _free_port()
    log = (tmp_path / "daphne.log").open("wb")
    process = subprocess.Popen(
        [
            str(ROOT / ".venv/bin/daphne"),
            "-b",
            "127.0.0.1",
            "-p",
            str(port),
            "config.asgi:application",
        ],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            time.sleep(0.2)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=15)
        log.close()
        _wait_for_other_sessions_to_end()


def _wait_for_other_sessions_to_end() -> None:
    """PostgreSQL ends a dead client's backend a moment later; the test database can only be
    dropped once it has."""
    deadline = time.monotonic() + 10
    with connection.cursor() as cursor:
        while time.monotonic() < deadline:
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND pid <> pg_backend_pid()"
            )
            if cursor.fetchone()[0] == 0:
                return
            time.sleep(0.1)


@pytest.fixture
def page(served, monkeypatch):
    if not CHROMIUM.exists():
        pytest.skip("/usr/bin/chromium is not installed")
    from playwright.sync_api import sync_playwright

    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1360, "height": 900}, base_url=served)
        context.set_default_timeout(15_000)
        page = context.new_page()
        page.on("dialog", lambda dialog: dialog.accept())
        try:
            yield page
        finally:
            context.close()
            browser.close()
            # The test's ORM calls ran beside Playwright's greenlets, on a connection of their
            # own context: close it so the test database can be dropped.
            connections.close_all()


def shot(page, step: str, *, full_page: bool = True) -> None:
    path = SCREENSHOTS / f"fleet-{step}.png"
    page.screenshot(path=str(path), full_page=full_page)
    assert path.stat().st_size > 0


@pytest.fixture
def devices(tree) -> dict[str, Device]:
    version = make_version(tree["acme"], "Digital sign")
    found = {
        "lobby": register(
            version,
            tree["acme"],
            "SN-001",
            name="Lobby screen",
            tags=["eu", "lobby"],
            latitude=48.8566,
            longitude=2.3522,
            attributes={"color": "red", "size": 55},
        ),
        "hall": register(version, tree["acme"], "SN-002", name="Hall screen", tags=["eu"]),
        "store": register(version, tree["retail"], "SN-003", name="Store front"),
        "spare": register(version, tree["acme"], "AB-100", name="Spare"),
    }
    for key in ("hall", "store"):
        found[key] = services.device_transition(
            actor=SYSTEM, device=found[key], transition="activate"
        )
    now = datetime.datetime.now(tz=datetime.UTC)
    Device.objects.filter(pk=found["hall"].pk).update(
        connectivity="online", last_seen_at=now, firmware_version="1.4.2"
    )
    Device.objects.filter(pk=found["store"].pk).update(
        connectivity="offline", last_seen_at=now - datetime.timedelta(hours=3)
    )
    Device.objects.filter(pk=found["lobby"].pk).update(
        inventory={"firmware": "1.4.2", "model": "S-55"}
    )
    return found


def in_thread(function: Any, *args: Any, **kwargs: Any) -> Any:
    def run() -> Any:
        try:
            return function(*args, **kwargs)
        finally:
            connections.close_all()  # this thread's own database connection

    with ThreadPoolExecutor(max_workers=1) as executor:
        return executor.submit(run).result(timeout=30)


def row(page, device: Device):
    return page.locator(f'#fleet tr[data-device-id="{device.pk}"]')


def test_fleet_list_filters_and_live_badges(tree, people, devices, page):
    sign_in(page, "owner@acme.test")
    page.wait_for_url(f"**/o/{tree['acme'].pk}/")
    page.goto(f"/o/{tree['acme'].pk}/devices/")
    page.wait_for_url(f"**/o/{tree['acme'].pk}/devices/")
    serials = page.locator("#fleet tbody tr td[data-label=Serial]").all_inner_texts()
    assert serials == ["AB-100", "SN-003", "SN-002", "SN-001"]
    assert page.locator("[data-state-count=active] strong").inner_text() == "2"
    assert page.locator("[data-state-count=escrow] strong").inner_text() == "2"
    page.wait_for_selector("body[data-live=open]")
    shot(page, "1-list")

    page.fill("#id_search", "SN-00")
    page.select_option("#id_state", "active")
    page.click("#fleet-filter button[type=submit]")
    page.wait_for_url("**/devices/?*state=active*")
    serials = page.locator("#fleet tbody tr td[data-label=Serial]").all_inner_texts()
    assert serials == ["SN-003", "SN-002"]
    page.wait_for_selector("body[data-live=open]")
    shot(page, "2-filtered")

    # A state change through the service reaches the open page after commit. (Off this thread:
    # Playwright's event loop runs in it, and the service's push uses async_to_sync.)
    in_thread(
        services.device_transition,
        actor=SYSTEM,
        device=devices["hall"],
        transition="enter_maintenance",
    )
    badge = row(page, devices["hall"]).locator("[data-state]")
    page.wait_for_function(
        "id => document.querySelector(`#fleet tr[data-device-id='${id}'] [data-state]`)"
        ".textContent === 'Maintenance'",
        arg=str(devices["hall"].pk),
    )
    assert badge.inner_text() == "Maintenance"
    assert badge.get_attribute("class") == "badge badge-state state-maintenance"
    # No service reports connectivity yet (ingest comes later): push what it will send.
    in_thread(
        async_to_sync(get_channel_layer().group_send),
        f"org.{tree['retail'].pk}",
        {
            "type": "live.message",
            "data": {
                "type": "device.connectivity",
                "id": str(devices["store"].pk),
                "connectivity": "online",
                "last_seen_at": "2026-01-01T00:00:00Z",
            },
        },
    )
    dot = row(page, devices["store"]).locator("[data-connectivity]")
    page.wait_for_function(
        "id => document.querySelector(`#fleet tr[data-device-id='${id}'] [data-connectivity]`)"
        ".dataset.connectivity === 'online'",
        arg=str(devices["store"].pk),
    )
    assert dot.inner_text() == "Online"
    assert row(page, devices["store"]).locator("[data-last-seen]").inner_text() == "just now"
    assert page.evaluate("performance.getEntriesByType('navigation').length") == 1
    shot(page, "3-live-update")

    # Bulk: suspend both rows as one job; its panel follows the job to the end.
    assert page.locator("#bulk-apply").is_disabled() is True
    page.check(f"#fleet input[value='{devices['hall'].pk}']")
    page.check(f"#fleet input[value='{devices['store'].pk}']")
    assert page.locator("[data-selected-count]").inner_text() == "2 selected"
    page.select_option("#bulk-transition", "suspend")
    page.click("#bulk-apply")
    page.wait_for_url("**/devices/?job=*")
    assert page.locator(".alert-success").inner_text() == "Suspend: a job for 2 devices."
    assert page.locator("#fleet-job [data-job-status]").inner_text() == "Queued"
    job = Job.objects.get(kind="devices.bulk_transition")
    in_thread(services.bulk_transition_run, job_id=job.pk)  # what the Celery worker does
    page.wait_for_selector("#fleet-job[data-job-state=succeeded]")
    assert page.locator("#fleet-job [data-job-counts]").inner_text() == (
        "2 of 2 processed · 2 succeeded · 0 failed"
    )
    states = dict(Device.objects.values_list("serial", "state"))
    assert (states["SN-002"], states["SN-003"]) == ("suspended", "suspended")
    # No message per device from a bulk job: the page re-reads its rows once the job ends.
    page.wait_for_function(
        "() => [...document.querySelectorAll('#fleet tbody [data-state]')]"
        ".map(badge => badge.textContent).join() === 'Escrow,Suspended,Suspended,Escrow'"
    )
    assert page.locator("#fleet tbody [data-state]").all_inner_texts() == [
        "Escrow",
        "Suspended",
        "Suspended",
        "Escrow",
    ]
    assert page.locator("[data-state-count=suspended] strong").inner_text() == "2"
    assert page.locator("[data-selected-count]").inner_text() == "0 selected"
    page.wait_for_function(
        "() => { const bar = document.querySelector('[data-job-bar]');"
        " return bar.getBoundingClientRect().width === bar.parentElement.clientWidth; }"
    )
    shot(page, "7-bulk-job")


def test_device_page_map_timeline_and_transition_button(tree, people, devices, page):
    lobby = devices["lobby"]
    sign_in(page, "owner@acme.test")
    page.wait_for_url(f"**/o/{tree['acme'].pk}/")
    page.goto(f"/o/{tree['acme'].pk}/devices/")
    page.click("text=SN-001")
    page.wait_for_url(f"**/devices/{lobby.pk}/")
    assert page.locator("#device-serial").inner_text() == "SN-001"
    assert page.locator("#device-header [data-state]").inner_text() == "Escrow"
    assert page.locator("#device-transitions button").all_inner_texts() == [
        "Activate",
        "Decommission",
    ]
    assert page.locator("#device-map .leaflet-marker-icon").count() == 1
    assert page.locator("#device-attributes th").all_inner_texts() == ["color", "size"]
    assert page.locator("#device-inventory td").all_inner_texts() == ["1.4.2", "S-55"]
    assert page.locator("#device-timeline .timeline-entry").evaluate_all(
        "items => items.map(item => item.dataset.action)"
    ) == ["device.register"]
    shot(page, "4-device")

    page.click("#device-transitions button[data-transition=activate]")
    page.wait_for_selector(".alert-success")
    assert page.locator(".alert-success").inner_text() == "SN-001 is now Active."
    assert page.locator("#device-header [data-state]").inner_text() == "Active"
    assert page.locator("#device-transitions button").all_inner_texts() == [
        "Enter maintenance",
        "Suspend",
        "Decommission",
    ]
    assert page.locator("#device-timeline .timeline-entry").evaluate_all(
        "items => items.map(item => item.dataset.action)"
    ) == ["device.transition", "device.register"]
    assert Device.objects.get(pk=lobby.pk).state == "active"
    shot(page, "5-device-activated")

    page.goto(f"/o/{tree['acme'].pk}/transfers/")
    assert page.locator("h1").inner_text() == "Transfers"
    shot(page, "6-transfers")

    page.set_viewport_size({"width": 390, "height": 844})
    for name in ("devices/", f"devices/{lobby.pk}/"):
        page.goto(f"/o/{tree['acme'].pk}/{name}")
        assert page.evaluate("document.documentElement.scrollWidth") == 390
    shot(page, "8-phone-device")
    page.goto(f"/o/{tree['acme'].pk}/devices/")
    shot(page, "9-phone-list")
