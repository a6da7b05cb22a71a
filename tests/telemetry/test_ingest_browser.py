"""The operations page's Ingest panel and the dead letters pages in Debian's Chromium, served by
a real daphne against the test database: from the panel's dead letters by reason to one dead
letter, its escaped payload, and a replay by button.
Screenshots land in test-artifacts/screenshots/ingest-*.png.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from apps.accounts.roles import Role
from apps.telemetry.ingest_stats import WorkerStats
from apps.telemetry.models import DeadLetter, TelemetrySample
from apps.telemetry.types import BatchResult
from tests.portal.conftest import verified_member
from tests.portal.test_browser import PASSWORD, SCREENSHOTS
from tests.portal.test_fleet_browser import page, served  # noqa: F401  (fixtures)

from .ingest_support import clear_worker_stats
from .test_deadletters_api import letter

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.django_db(transaction=True)]


@pytest.fixture(autouse=True)
def _workers() -> Iterator[None]:
    clear_worker_stats()
    for name, size, lag in (("ingest-1-0", 1000, 0.18), ("ingest-2-0", 640, 0.09)):
        stats = WorkerStats(name)
        stats.connected, stats.state = True, "running"
        result = BatchResult(
            received=size, stored=size - 3, dead_lettered=3, by_reason={"schema": 3}
        )
        stats.record_batch(size=size, result=result, latency=0.042, lag=lag)
        stats.publish(force=True)
    yield
    clear_worker_stats()


def shot(page, step: str) -> None:  # noqa: F811
    path = SCREENSHOTS / f"ingest-{step}.png"
    page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 0


def test_from_the_operations_page_to_a_replayed_dead_letter(tree, page):  # noqa: F811
    verified_member(tree["platform"], Role.ADMIN, "ops@platform.test")
    schema = letter(
        tree["acme"],
        reason="schema",
        payload=b'{"boot": 3, "seq": 9, "metrics": {"temprature": "<b>hot</b>"}}',
    )
    schema.detail = "unknown metric 'temprature'"
    schema.save()
    replayable = letter(tree["retail"], reason="device_state")

    page.goto("/accounts/login/")
    page.fill("input[name=login]", "ops@platform.test")
    page.fill("input[name=password]", PASSWORD)
    page.click("form.form button[type=submit]")
    page.goto("/operations/")
    assert page.locator("#ingest-workers").inner_text() == "2"
    assert page.locator("#ingest-batch").inner_text() == "1000 / 820"
    assert page.locator("#ingest-worker-table tbody tr").count() == 2
    assert page.locator("#ingest-dead-letters tbody tr").count() == 2
    shot(page, "1-operations")

    page.click("#ingest-dead-letters a:has-text('telemetry schema')")
    page.wait_for_url("**/dead-letters/?reason=schema")
    assert page.locator("#deadletter-rows tr").count() == 1
    shot(page, "2-dead-letters")

    page.click(f"tr[data-id='{schema.pk}'] td a >> nth=0")
    page.wait_for_url(f"**/dead-letters/{schema.pk}/")
    assert "<b>hot</b>" in page.locator("#deadletter-pretty").inner_text()
    assert "<b>hot</b>" in page.locator("#deadletter-payload").text_content()
    assert page.locator("#deadletter-pretty b").count() == 0  # shown as text, not markup
    shot(page, "3-dead-letter")

    page.goto(f"/o/{tree['retail'].pk}/dead-letters/{replayable.pk}/")
    page.click("#deadletter-replay")
    page.wait_for_selector("text=Replayed: the message is stored.")
    assert page.locator("#deadletter-status").inner_text() == "Replayed"
    assert page.locator("#deadletter-replay").count() == 0
    shot(page, "4-replayed")
    assert DeadLetter.objects.get(pk=replayable.pk).status == "replayed"
    assert TelemetrySample.objects.filter(device_id=replayable.device_id).count() == 1
