"""Portal alerting pages: anonymous -> login, sibling -> 404, role without the permission -> 403,
allowed -> the exact state; htmx actions answer with the updated row."""

from __future__ import annotations

import re

import pytest
from django.urls import reverse

from apps.accounts.roles import Role
from apps.telemetry.alerting import evaluate_batch
from apps.telemetry.models import Alert, AlertRule
from tests.portal.conftest import verified_member

from .alert_support import at, fresh_alert_cache, make_rule, sample  # noqa: F401
from .conftest import make_device, make_version

pytestmark = pytest.mark.django_db


@pytest.fixture
def people(tree):
    acme = tree["acme"]
    return {
        role: verified_member(acme, role, f"{role}@acme.test")
        for role in (Role.OWNER, Role.OPERATOR, Role.TECHNICIAN, Role.VIEWER, Role.BILLING)
    } | {"stranger": verified_member(tree["globex"], Role.OWNER, "owner@globex.test")}


@pytest.fixture
def world(tree):
    version = make_version(tree["acme"], name="Thermo")
    device = make_device(version, tree["retail"])
    rule = make_rule(tree["acme"], name="Hot", severity="critical")
    evaluate_batch([sample(device, at(0), temperature=91)], [], at(0))
    return {"device": device, "rule": rule, "alert": Alert.objects.get()}


def page_urls(tree, world) -> list[str]:
    acme, alert = tree["acme"], world["alert"]
    return [
        reverse("alerts:list", kwargs={"organization_id": acme.pk}),
        reverse("alerts:count", kwargs={"organization_id": acme.pk}),
        reverse("alerts:detail", kwargs={"alert_id": alert.pk}),
        reverse("alerts:rules", kwargs={"organization_id": acme.pk}),
        reverse("alerts:rule", kwargs={"organization_id": acme.pk, "rule_id": world["rule"].pk}),
        reverse("alerts:device-panel", kwargs={"device_id": world["device"].pk}),
    ]


def attr(response, name: str) -> list[str]:
    return re.findall(rf'data-{name}="([^"]+)"', response.content.decode())


def test_every_page_sends_an_anonymous_visitor_to_sign_in(client, tree, world):
    for url in page_urls(tree, world):
        response = client.get(url)
        assert response.status_code == 302, url
        assert response["Location"].startswith("/accounts/login/"), url


def test_a_sibling_gets_404_and_billing_403(client, tree, world, people):
    client.force_login(people["stranger"])
    for url in page_urls(tree, world):
        assert client.get(url).status_code == 404, url
    client.force_login(people[Role.BILLING])
    statuses = [client.get(url).status_code for url in page_urls(tree, world)]
    assert statuses == [403, 403, 404, 403, 404, 404]  # by id: not even visible


def test_the_list_shows_the_alert_the_count_and_the_buttons_by_role(client, tree, world, people):
    url = reverse("alerts:list", kwargs={"organization_id": tree["acme"].pk})
    client.force_login(people[Role.TECHNICIAN])
    page = client.get(url)
    assert page.status_code == 200
    assert attr(page, "alert-id") == [str(world["alert"].pk)]
    assert attr(page, "severity") == ["critical"]
    assert attr(page, "action") == ["acknowledge", "resolve"]
    assert re.search(r"data-open-count>1<", page.content.decode())
    assert 'href="/o/' in page.content.decode() and ">Alerts</a>" in page.content.decode()

    client.force_login(people[Role.VIEWER])
    assert attr(client.get(url), "action") == []  # sees, may not change
    assert attr(client.get(url, {"status": "resolved"}), "alert-id") == []


def test_acknowledge_by_htmx_answers_with_the_updated_row(client, world, people):
    client.force_login(people[Role.TECHNICIAN])
    url = reverse("alerts:action", kwargs={"alert_id": world["alert"].pk, "verb": "acknowledge"})

    response = client.post(url, {"note": "checking"}, HTTP_HX_REQUEST="true")

    assert response.status_code == 200
    assert response["HX-Trigger"] == "alerts-changed"
    assert attr(response, "status") == ["acknowledged", "acknowledged"]  # the row and its badge
    assert attr(response, "action") == ["resolve"]
    alert = Alert.objects.get()
    assert (alert.status, alert.acknowledged_by_id) == ("acknowledged", people[Role.TECHNICIAN].pk)

    again = client.post(url, {}, HTTP_HX_REQUEST="true")
    assert "Only an open alert can be acknowledged." in again.content.decode()


def test_a_viewer_may_not_act_and_nothing_changes(client, world, people):
    client.force_login(people[Role.VIEWER])
    url = reverse("alerts:action", kwargs={"alert_id": world["alert"].pk, "verb": "resolve"})

    assert client.post(url, HTTP_HX_REQUEST="true").status_code == 403
    assert Alert.objects.get().status == "open"


def test_the_detail_page_tells_who_did_what(client, world, people):
    client.force_login(people[Role.OPERATOR])
    alert = world["alert"]
    client.post(reverse("alerts:action", kwargs={"alert_id": alert.pk, "verb": "acknowledge"}))
    response = client.post(
        reverse("alerts:action", kwargs={"alert_id": alert.pk, "verb": "resolve"}),
        {"note": "replaced the fan"},
    )
    assert response.status_code == 302

    page = client.get(reverse("alerts:detail", kwargs={"alert_id": alert.pk}))

    assert attr(page, "action") == ["reopen", "open", "acknowledge", "resolve"]
    text = page.content.decode()
    assert "by the system" in text and "by operator@acme.test" in text
    assert "replaced the fan" in text


def test_a_rule_is_created_from_the_form_and_field_errors_land_on_fields(client, tree, people):
    client.force_login(people[Role.OPERATOR])
    url = reverse("alerts:rule-new", kwargs={"organization_id": tree["acme"].pk})
    base = {
        "name": "Damp",
        "kind": "range",
        "severity": "minor",
        "enabled": "on",
        "open_after_seconds": "60",
        "clear_after_seconds": "0",
        "low": "20",
        "high": "60",
    }

    refused = client.post(url, base)  # no metric
    assert refused.status_code == 400
    assert 'id="id_metric-error"' in refused.content.decode()
    assert AlertRule.objects.count() == 0

    created = client.post(url, base | {"metric": "humidity"})
    assert created.status_code == 302
    rule = AlertRule.objects.get()
    assert (rule.kind, rule.condition, rule.open_after_seconds, rule.auto_resolve) == (
        "range",
        {"metric": "humidity", "low": 20, "high": 60, "inside": False},
        60,
        False,
    )


def test_a_viewer_sees_rules_but_may_not_add_or_edit(client, tree, world, people):
    client.force_login(people[Role.VIEWER])
    new = reverse("alerts:rule-new", kwargs={"organization_id": tree["acme"].pk})
    edit = reverse(
        "alerts:rule", kwargs={"organization_id": tree["acme"].pk, "rule_id": world["rule"].pk}
    )

    assert client.get(new).status_code == 403
    assert client.get(edit).status_code == 200
    assert client.post(edit, {"name": "Mine", "kind": "threshold"}).status_code == 403
    assert AlertRule.objects.get().name == "Hot"


def test_the_device_panel_lists_its_open_alerts(client, world, people):
    client.force_login(people[Role.VIEWER])
    panel = client.get(reverse("alerts:device-panel", kwargs={"device_id": world["device"].pk}))

    assert panel.status_code == 200
    assert attr(panel, "alert-id") == [str(world["alert"].pk)]
    page = client.get(
        reverse(
            "fleet:device",
            kwargs={
                "organization_id": world["device"].organization_id,
                "device_id": world["device"].pk,
            },
        )
    )
    assert 'id="device-alerts"' in page.content.decode()
