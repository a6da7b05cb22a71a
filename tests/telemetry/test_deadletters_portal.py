"""The dead letters in the portal and the admin: anonymous -> login, sibling -> 404, role without
the permission -> 403 with nothing changed, allowed -> the exact state; the raw payload is
shown escaped."""

from __future__ import annotations

from typing import Any

import pytest
from django.urls import reverse

from apps.accounts.roles import Role
from apps.core.models import AuditLog
from apps.telemetry.models import DeadLetter, TelemetrySample
from tests.factories import UserFactory, make_member

from .test_deadletters_api import body, letter

pytestmark = pytest.mark.django_db


def list_url(organization: Any) -> str:
    return reverse("telemetry:dead-letters", kwargs={"organization_id": organization.pk})


def detail_url(dead: DeadLetter, operation: str = "") -> str:
    name = f"telemetry:dead-letter-{operation}" if operation else "telemetry:dead-letter"
    return reverse(name, kwargs={"organization_id": dead.organization_id, "letter_id": dead.pk})


def signed_in(client: Any, organization: Any, role: str) -> Any:
    client.force_login(make_member(organization, role))
    return client


def test_anonymous_visitors_go_to_the_login_page(client, tree):
    dead = letter(tree["acme"])
    for url in (list_url(tree["acme"]), detail_url(dead)):
        response = client.get(url)
        assert (response.status_code, response.url) == (302, f"/accounts/login/?next={url}")
    response = client.post(detail_url(dead, "replay"))
    assert response.status_code == 302
    assert DeadLetter.objects.get(pk=dead.pk).status == "new"


def test_a_sibling_organization_sees_nothing(client, tree):
    dead = letter(tree["acme"])
    signed_in(client, tree["globex"], Role.OWNER)
    assert client.get(list_url(tree["acme"])).status_code == 404
    assert client.get(detail_url(dead)).status_code == 404
    assert client.post(detail_url(dead, "discard")).status_code == 404
    assert DeadLetter.objects.get(pk=dead.pk).status == "new"


def test_a_role_without_telemetry_view_is_refused(client, tree):
    dead = letter(tree["acme"])
    signed_in(client, tree["acme"], Role.BILLING)
    assert client.get(list_url(tree["acme"])).status_code == 403
    assert client.get(detail_url(dead)).status_code == 403


def test_the_list_shows_new_dead_letters_by_default_and_filters(client, tree):
    schema = letter(tree["acme"], reason="schema")
    state = letter(tree["retail"], reason="device_state")
    letter(tree["acme"], reason="schema", status="discarded")
    letter(tree["globex"], reason="schema")  # another manufacturer's
    signed_in(client, tree["acme"], Role.VIEWER)

    response = client.get(list_url(tree["acme"]))
    assert response.status_code == 200
    assert [row.pk for row in response.context["letters"]] == [state.pk, schema.pk]
    filtered = client.get(list_url(tree["acme"]), {"reason": "schema"})
    assert [row.pk for row in filtered.context["letters"]] == [schema.pk]
    everything = client.get(list_url(tree["acme"]), {"status": "all"})
    assert len(everything.context["letters"]) == 3
    assert 'data-reason="device_state"' in response.content.decode()


def test_the_detail_shows_the_payload_escaped_and_no_buttons_to_a_viewer(client, tree):
    dead = letter(tree["acme"], reason="malformed_json", payload=b"<script>alert(1)</script>\xff")
    signed_in(client, tree["acme"], Role.VIEWER)
    response = client.get(detail_url(dead))
    html = response.content.decode()
    assert response.status_code == 200
    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;\ufffd" in html
    assert "not valid UTF-8" in html
    assert 'id="deadletter-replay"' not in html
    assert client.post(detail_url(dead, "replay")).status_code == 403
    assert DeadLetter.objects.get(pk=dead.pk).status == "new"


def test_an_operator_replays_a_dead_letter(client, tree):
    dead = letter(tree["acme"])
    signed_in(client, tree["acme"], Role.OPERATOR)
    assert 'id="deadletter-replay"' in client.get(detail_url(dead)).content.decode()

    response = client.post(detail_url(dead, "replay"), follow=True)
    assert response.redirect_chain == [(detail_url(dead), 302)]
    assert "Replayed: the message is stored." in response.content.decode()
    dead.refresh_from_db()
    assert (dead.status, dead.replay_count) == ("replayed", 1)
    assert TelemetrySample.objects.filter(device_id=dead.device_id).count() == 1
    assert AuditLog.objects.get(action="deadletter.replay").object_id == str(dead.pk)


def test_an_admin_discards_a_dead_letter(client, tree):
    dead = letter(tree["acme"])
    signed_in(client, tree["acme"], Role.ADMIN)
    response = client.post(detail_url(dead, "discard"), follow=True)
    assert "Discarded." in response.content.decode()
    dead.refresh_from_db()
    assert (dead.status, bytes(dead.payload)[:1]) == ("discarded", b"{")
    assert TelemetrySample.objects.filter(device_id=dead.device_id).count() == 0


# --- admin ---------------------------------------------------------------------------------------


def superuser() -> Any:
    return UserFactory(email="staff@platform.test", is_staff=True, is_superuser=True)


def test_the_admin_lists_and_replays_dead_letters(client, tree):
    dead = letter(tree["acme"], payload=body(seq=4))
    orphan = DeadLetter.objects.create(
        topic="devices/x/telemetry", reason="bad_topic", payload=b"<b>raw</b>"
    )
    client.force_login(superuser())
    changelist = reverse("admin:telemetry_deadletter_changelist")
    response = client.get(changelist)
    assert response.status_code == 200
    assert {row.pk for row in response.context["cl"].result_list} == {dead.pk, orphan.pk}
    by_device = client.get(changelist, {"q": str(dead.device_id)})
    assert [row.pk for row in by_device.context["cl"].result_list] == [dead.pk]
    by_topic = client.get(changelist, {"q": "devices/x"})
    assert [row.pk for row in by_topic.context["cl"].result_list] == [orphan.pk]
    page = client.get(reverse("admin:telemetry_deadletter_change", args=[orphan.pk]))
    assert "&lt;b&gt;raw&lt;/b&gt;" in page.content.decode()

    client.post(changelist, {"action": "replay", "_selected_action": [dead.pk, orphan.pk]})
    dead.refresh_from_db()
    orphan.refresh_from_db()
    assert (dead.status, orphan.status, orphan.replay_count) == ("replayed", "new", 1)
    client.post(changelist, {"action": "discard", "_selected_action": [orphan.pk]})
    orphan.refresh_from_db()
    assert orphan.status == "discarded"
