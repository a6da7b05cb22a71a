"""The alerts page in Debian's Chromium, served by a real daphne against the test database:
acknowledge an alert with its htmx button (the row and the live count change without a reload),
then the alert's timeline and the device page's open-alerts panel.

Screenshots land in test-artifacts/screenshots/alerts-*.png.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import transaction
from django.utils import timezone

from apps.accounts.roles import Role
from apps.telemetry.alerting import evaluate_batch
from apps.telemetry.models import Alert
from tests.portal.conftest import verified_member
from tests.portal.test_browser import SCREENSHOTS, sign_in
from tests.portal.test_fleet_browser import page, served  # noqa: F401

from .alert_support import fresh_alert_cache, make_rule, sample  # noqa: F401
from .conftest import make_device, make_version

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def shot(page, step: str) -> None:  # noqa: F811  (the page fixture's name)
    path = SCREENSHOTS / f"alerts-{step}.png"
    page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 0


@pytest.fixture
def alerting(tree):
    verified_member(tree["acme"], Role.OPERATOR, "operator@acme.test")
    version = make_version(tree["acme"], name="Freezer")
    freezer, fridge = make_device(version, tree["retail"]), make_device(version, tree["retail"])
    with transaction.atomic():
        make_rule(
            tree["acme"],
            name="Freezer too warm",
            condition={"metric": "temperature", "operator": "gt", "value": -15},
            severity="critical",
        )
        make_rule(
            tree["acme"],
            "range",
            {"metric": "humidity", "low": 20, "high": 70},
            name="Humidity out of range",
            severity="minor",
        )
    now = timezone.now()
    with transaction.atomic():
        evaluate_batch(
            [
                sample(freezer, now - timedelta(minutes=4), temperature=-9.5, humidity=50),
                sample(fridge, now - timedelta(minutes=2), temperature=-20, humidity=82),
            ],
            [],
            now,
        )
    return {"freezer": freezer, "fridge": fridge}


def test_acknowledge_an_alert_from_the_alerts_page(tree, alerting, page):  # noqa: F811
    freezer = alerting["freezer"]
    warm = Alert.objects.get(device=freezer)
    sign_in(page, "operator@acme.test")
    page.wait_for_url(f"**/o/{tree['acme'].pk}/")
    page.click("nav#sidenav >> text=Alerts")
    page.wait_for_url(f"**/o/{tree['acme'].pk}/alerts/")
    assert page.locator("#alerts tbody tr").count() == 2
    assert page.locator("[data-open-count]").inner_text() == "2"
    row = page.locator(f"#alert-{warm.pk}")
    assert row.locator("[data-severity]").text_content() == "critical"
    assert row.locator("[data-status]").text_content() == "open"
    shot(page, "1-list")

    row.locator("button[data-action=acknowledge]").click()
    page.wait_for_selector(f"#alert-{warm.pk}[data-status=acknowledged]")
    page.wait_for_function("document.querySelector('[data-open-count]').textContent === '1'")
    assert page.locator("[data-acknowledged-count]").inner_text() == "1"
    assert page.locator(f"#alert-{warm.pk} button").all_inner_texts() == ["Resolve"]
    assert page.url.endswith(f"/o/{tree['acme'].pk}/alerts/")  # no reload, no navigation
    shot(page, "2-acknowledged")
    warm.refresh_from_db()
    assert warm.status == "acknowledged"

    page.click(f"#alert-{warm.pk} a")
    page.wait_for_url(f"**/alerts/{warm.pk}/")
    assert page.locator("#alert-timeline .timeline-entry").evaluate_all(
        "items => items.map(item => item.dataset.action)"
    ) == ["open", "acknowledge"]
    shot(page, "3-detail")

    page.goto(f"/o/{tree['acme'].pk}/devices/{freezer.pk}/")
    page.wait_for_selector("#device-alert-list li")
    assert page.locator("#device-alert-list li [data-severity]").all_text_contents() == ["critical"]
    shot(page, "4-device-panel")


def test_the_rule_form_shows_the_fields_of_the_chosen_kind(tree, alerting, page):  # noqa: F811
    sign_in(page, "operator@acme.test")
    page.wait_for_url(f"**/o/{tree['acme'].pk}/")
    page.goto(f"/o/{tree['acme'].pk}/alert-rules/new/")
    page.select_option("#id_kind", "state_change")
    assert page.locator("[data-kind-fields=state_change]").is_visible()
    assert not page.locator("[data-kind-fields=threshold]").is_visible()
    page.fill("#id_name", "Offline")
    page.select_option("#id_state_field", "connectivity")
    page.select_option("#id_to_value", "offline")
    page.fill("#id_open_after_seconds", "600")
    shot(page, "5-rule-form")
    page.click("#rule-save")
    page.wait_for_url(f"**/o/{tree['acme'].pk}/alert-rules/")
    assert page.locator("#alert-rules [data-rule=Offline] [data-condition]").inner_text() == (
        "connectivity → offline"
    )
    shot(page, "6-rules")
