"""Portal fleet pages through the Django test client: anonymous -> login, sibling organization
-> 404, role without the permission -> 403, allowed -> the exact state."""

from __future__ import annotations

import csv
import io
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from apps.accounts.models import Organization
from apps.core.actors import SYSTEM
from apps.core.models import AuditLog, Job
from apps.devices import replacement, services, transfers, views_fleet
from apps.devices.models import Device, Transfer
from apps.profiles.models import DeviceProfile, ProfileVersion


def make_version(organization: Organization, name: str = "Sign") -> ProfileVersion:
    profile = DeviceProfile.objects.create(
        organization=organization, name=name, slug=name.lower().replace(" ", "-")
    )
    return ProfileVersion.objects.create(profile=profile, number=1)


def register(
    version: ProfileVersion, organization: Organization, serial: str, **fields: Any
) -> Device:
    return services.device_register(
        actor=SYSTEM, organization=organization, profile_version=version, serial=serial, **fields
    )


def transition(device: Device, name: str) -> Device:
    return services.device_transition(actor=SYSTEM, device=device, transition=name)


@pytest.fixture
def version(tree) -> ProfileVersion:
    return make_version(tree["acme"])


@pytest.fixture
def fleet(tree, version) -> dict[str, Device]:
    """Four acme devices (one in retail), one globex device."""
    devices = {
        "a1": register(version, tree["acme"], "SN-001", name="Lobby", tags=["eu", "lobby"]),
        "a2": register(version, tree["acme"], "SN-002", name="Hall", tags=["eu"]),
        "a3": register(version, tree["retail"], "SN-003", name="Store front"),
        "b1": register(version, tree["acme"], "AB-100", name="Spare"),
        "g1": register(make_version(tree["globex"], "Robot"), tree["globex"], "GX-1"),
    }
    devices["a2"] = transition(devices["a2"], "activate")
    devices["a3"] = transition(devices["a3"], "activate")
    Device.objects.filter(pk=devices["a3"].pk).update(firmware_version="2.0.1")
    return devices


def url(name: str, organization: Organization, **kwargs: Any) -> str:
    return reverse(f"fleet:{name}", kwargs={"organization_id": organization.pk, **kwargs})


def serials(response) -> list[str]:
    return [device.serial for device in response.context["devices"]]


# --- access ------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["list", "transfers"])
def test_it_sends_an_anonymous_visitor_to_the_login_page(client, tree, name):
    page = url(name, tree["acme"])
    response = client.get(page)
    assert response.status_code == 302
    assert response.url == f"/accounts/login/?next={page}"


def test_it_sends_an_anonymous_visitor_from_a_device_to_the_login_page(client, tree, fleet):
    page = url("device", tree["acme"], device_id=fleet["a1"].pk)
    response = client.get(page)
    assert response.status_code == 302
    assert response.url == f"/accounts/login/?next={page}"


@pytest.mark.parametrize("name", ["list", "transfers"])
def test_it_hides_a_sibling_organization_with_404(client, tree, people, name):
    client.force_login(people["stranger"])
    assert client.get(url(name, tree["acme"])).status_code == 404


def test_it_hides_another_organizations_device_with_404(client, tree, people, fleet):
    client.force_login(people["stranger"])
    assert client.get(url("device", tree["globex"], device_id=fleet["a1"].pk)).status_code == 404
    assert client.get(url("device", tree["acme"], device_id=fleet["a1"].pk)).status_code == 404
    response = client.post(
        url("device-transition", tree["globex"], device_id=fleet["a1"].pk),
        {"transition": "activate"},
    )
    assert response.status_code == 404
    assert Device.objects.get(pk=fleet["a1"].pk).state == "escrow"


def test_it_hides_a_parent_organizations_device_from_a_child_page(client, tree, people, fleet):
    client.force_login(people["owner"])
    response = client.get(url("device", tree["retail"], device_id=fleet["a1"].pk))
    assert response.status_code == 404


def test_it_refuses_pages_to_a_role_without_device_view(client, tree, people):
    client.force_login(people["billing"])
    assert client.get(url("list", tree["acme"])).status_code == 403
    assert client.get(url("transfers", tree["acme"])).status_code == 403


def test_it_refuses_writes_to_a_viewer_with_403(client, tree, people, fleet):
    client.force_login(people["viewer"])
    device = fleet["a1"]
    response = client.post(
        url("device-transition", tree["acme"], device_id=device.pk), {"transition": "activate"}
    )
    assert response.status_code == 403
    response = client.post(
        url("bulk-transition", tree["acme"]),
        {"transition": "activate", "devices": [str(device.pk)]},
    )
    assert response.status_code == 403
    transfer = transfers.transfer_create(
        actor=SYSTEM, device=device, to_organization=tree["retail"]
    )
    for decision in ("accept", "reject"):
        response = client.post(
            url("transfer-decide", tree["retail"], transfer_id=transfer.pk, decision=decision)
        )
        assert response.status_code == 403
    response = client.post(
        url("transfer-decide", tree["acme"], transfer_id=transfer.pk, decision="cancel")
    )
    assert response.status_code == 403
    assert client.post(url("claim", tree["retail"]), {}).status_code == 403
    assert Device.objects.get(pk=device.pk).state == "escrow"
    assert Transfer.objects.get(pk=transfer.pk).status == "pending"
    assert Job.objects.count() == 0


# --- list --------------------------------------------------------------------------------------


def test_it_lists_the_subtree_newest_first_with_state_counts(client, tree, people, fleet):
    client.force_login(people["viewer"])
    response = client.get(url("list", tree["acme"]))
    assert response.status_code == 200
    assert serials(response) == ["AB-100", "SN-003", "SN-002", "SN-001"]
    counts = {item["value"]: item["total"] for item in response.context["state_counts"]}
    assert counts == {
        "escrow": 2,
        "discovered": 0,
        "active": 2,
        "maintenance": 0,
        "suspended": 0,
        "decommissioned": 0,
        "replaced": 0,
    }
    html = response.content.decode()
    assert f'data-device-id="{fleet["a1"].pk}"' in html
    assert 'name="devices"' not in html  # a viewer gets no bulk selection
    assert response.context["next_url"] == ""
    assert response.context["prev_url"] == ""


def test_a_child_organizations_list_holds_only_its_devices(client, tree, people, fleet):
    client.force_login(people["owner"])
    response = client.get(url("list", tree["retail"]))
    assert serials(response) == ["SN-003"]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({"state": "active"}, ["SN-003", "SN-002"]),
        ({"search": "SN-00"}, ["SN-003", "SN-002", "SN-001"]),
        ({"search": "front"}, ["SN-003"]),
        ({"tags": "eu, lobby"}, ["SN-001"]),
        ({"tags": "eu"}, ["SN-002", "SN-001"]),
        ({"firmware": "2.0.1"}, ["SN-003"]),
        ({"connectivity": "online"}, []),
        ({"sort": "serial"}, ["AB-100", "SN-001", "SN-002", "SN-003"]),
        ({"sort": "last_seen"}, ["SN-001", "SN-002", "AB-100", "SN-003"]),
        ({"state": "active", "sort": "serial"}, ["SN-002", "SN-003"]),
    ],
)
def test_it_filters_and_sorts(client, tree, people, fleet, query, expected):
    Device.objects.filter(pk=fleet["a1"].pk).update(last_seen_at="2026-01-02T00:00:00Z")
    Device.objects.filter(pk=fleet["a2"].pk).update(last_seen_at="2026-01-01T00:00:00Z")
    client.force_login(people["viewer"])
    response = client.get(url("list", tree["acme"]), query)
    assert response.status_code == 200
    assert serials(response) == expected


def test_it_filters_by_profile(client, tree, people, fleet):
    other = make_version(tree["acme"], "Kiosk")
    register(other, tree["acme"], "KI-1")
    client.force_login(people["viewer"])
    response = client.get(url("list", tree["acme"]), {"profile": str(other.profile_id)})
    assert serials(response) == ["KI-1"]


def test_it_pages_forward_and_back_by_keyset(client, tree, people, fleet, monkeypatch):
    monkeypatch.setattr(views_fleet, "PAGE_SIZE", 3)
    client.force_login(people["viewer"])
    first = client.get(url("list", tree["acme"]), {"sort": "serial"})
    assert serials(first) == ["AB-100", "SN-001", "SN-002"]
    assert first.context["prev_url"] == ""
    second = client.get(url("list", tree["acme"]) + first.context["next_url"])
    assert serials(second) == ["SN-003"]
    assert second.context["next_url"] == ""
    back = client.get(url("list", tree["acme"]) + second.context["prev_url"])
    assert serials(back) == ["AB-100", "SN-001", "SN-002"]
    assert back.context["prev_url"] == ""
    assert back.context["next_url"] != ""


def test_it_ignores_a_forged_cursor(client, tree, people, fleet):
    client.force_login(people["viewer"])
    response = client.get(url("list", tree["acme"]), {"cursor": "not-a-cursor"})
    assert serials(response) == ["AB-100", "SN-003", "SN-002", "SN-001"]


def test_the_export_link_carries_the_filters(client, tree, people, fleet):
    client.force_login(people["viewer"])
    query = {"search": "SN", "tags": "eu,lobby", "sort": "serial"}
    response = client.get(url("list", tree["acme"]), query)
    assert response.context["export_url"] == (
        f"/api/v1/device-exports/devices.csv?organization={tree['acme'].pk}"
        "&tags_all=eu%2Clobby&search=SN"
    )
    assert serials(response) == ["SN-001"]
    response = client.get(url("list", tree["acme"]), {"state": "active", "search": "SN"})
    export = client.get(response.context["export_url"])
    assert export.status_code == 200
    rows = list(csv.DictReader(io.StringIO(b"".join(export.streaming_content).decode())))
    assert [row["serial"] for row in rows] == serials(response) == ["SN-003", "SN-002"]


def _list_queries(client, organization: Organization) -> int:
    with CaptureQueriesContext(connection) as captured:
        response = client.get(url("list", organization))
    assert response.status_code == 200
    return len(captured)


def test_the_list_costs_the_same_queries_for_5_and_50_devices(client, tree, people, version):
    client.force_login(people["owner"])
    for number in range(5):
        register(version, tree["acme"], f"Q-{number:03}", tags=["t"])
    small = _list_queries(client, tree["acme"])
    for number in range(5, 50):
        register(version, tree["retail"], f"Q-{number:03}", tags=["t"])
    large = _list_queries(client, tree["acme"])
    assert (small, large) == (small, small)
    assert small == 12  # 11, and the header bell's unread count


# --- bulk transition ---------------------------------------------------------------------------


def test_a_bulk_transition_runs_as_one_job(client, tree, people, fleet):
    client.force_login(people["admin"])
    response = client.post(
        url("bulk-transition", tree["acme"]),
        {"transition": "enter_maintenance", "devices": [str(fleet["a2"].pk), str(fleet["a3"].pk)]},
    )
    job = Job.objects.get()
    assert response.status_code == 302
    assert response.url == url("list", tree["acme"]) + f"?job={job.pk}"
    assert (job.kind, job.params["transition"], job.organization_id) == (
        "devices.bulk_transition",
        "enter_maintenance",
        tree["acme"].pk,
    )
    assert sorted(job.params["selection"]["ids"]) == sorted(
        [str(fleet["a2"].pk), str(fleet["a3"].pk)]
    )
    services.bulk_transition_run(job_id=job.pk)  # what the Celery worker does
    states = dict(Device.objects.values_list("serial", "state"))
    assert (states["SN-002"], states["SN-003"], states["SN-001"]) == (
        "maintenance",
        "maintenance",
        "escrow",
    )
    page = client.get(response.url)
    assert page.context["job"].pk == job.pk
    assert 'id="fleet-job"' in page.content.decode()


def test_a_bulk_transition_without_a_selection_is_refused(client, tree, people, fleet):
    client.force_login(people["admin"])
    response = client.post(url("bulk-transition", tree["acme"]), {"transition": "activate"})
    assert response.status_code == 302
    assert Job.objects.count() == 0
    page = client.get(response.url)
    assert [str(m) for m in page.context["messages"]] == ["Select at least one device."]


# --- device detail -----------------------------------------------------------------------------


def test_the_device_page_shows_identity_transitions_and_timeline(client, tree, people, fleet):
    device = fleet["a2"]
    Device.objects.filter(pk=device.pk).update(
        latitude=48.8566,
        longitude=2.3522,
        attributes={"color": "red"},
        inventory={"firmware": "1.4.2"},
    )
    client.force_login(people["owner"])
    response = client.get(url("device", tree["acme"], device_id=device.pk))
    assert response.status_code == 200
    assert [t["name"] for t in response.context["transitions"]] == [
        "enter_maintenance",
        "suspend",
        "decommission",
    ]
    assert response.context["attributes"] == [("color", "red")]
    assert response.context["inventory"] == [("firmware", "1.4.2")]
    assert [entry.action for entry in response.context["timeline"]] == [
        "device.transition",
        "device.register",
    ]
    html = response.content.decode()
    assert 'id="device-map" data-lat="48.856600" data-lon="2.352200"' in html
    assert f'data-device-id="{device.pk}"' in html


def test_a_technician_sees_no_decommission_and_a_viewer_no_buttons(client, tree, people, fleet):
    from tests.portal.conftest import verified_member

    technician = verified_member(tree["acme"], "technician", "tech@acme.test")
    client.force_login(technician)
    response = client.get(url("device", tree["acme"], device_id=fleet["a2"].pk))
    assert [t["name"] for t in response.context["transitions"]] == ["enter_maintenance", "suspend"]
    client.force_login(people["viewer"])
    response = client.get(url("device", tree["acme"], device_id=fleet["a2"].pk))
    assert response.context["transitions"] == []


def test_a_transition_button_moves_the_device(client, tree, people, fleet):
    client.force_login(people["owner"])
    device = fleet["a1"]
    response = client.post(
        url("device-transition", tree["acme"], device_id=device.pk), {"transition": "activate"}
    )
    assert response.status_code == 302
    assert response.url == url("device", tree["acme"], device_id=device.pk)
    assert Device.objects.get(pk=device.pk).state == "active"
    entry = AuditLog.objects.filter(action="device.transition", object_id=str(device.pk)).get()
    assert entry.actor_label == "owner@acme.test"
    assert entry.changes["state"] == ["escrow", "active"]


def test_an_illegal_transition_is_refused_with_a_message(client, tree, people, fleet):
    client.force_login(people["owner"])
    device = fleet["a1"]
    response = client.post(
        url("device-transition", tree["acme"], device_id=device.pk),
        {"transition": "resume"},
        follow=True,
    )
    assert [str(m) for m in response.context["messages"]] == [
        "SN-001: Cannot resume a device that is escrow."
    ]
    assert Device.objects.get(pk=device.pk).state == "escrow"


def test_the_timeline_pages_to_older_entries(client, tree, people, fleet, monkeypatch):
    from apps.devices import views_fleet_device

    monkeypatch.setattr(views_fleet_device, "TIMELINE_PAGE", 1)
    client.force_login(people["owner"])
    page = url("device", tree["acme"], device_id=fleet["a2"].pk)
    first = client.get(page)
    assert [entry.action for entry in first.context["timeline"]] == ["device.transition"]
    older = client.get(page + first.context["older_url"], headers={"HX-Request": "true"})
    assert [entry.action for entry in older.context["timeline"]] == ["device.register"]
    assert older.templates[0].name == "devices/device_timeline_rows.html"


def test_replacement_links_show_on_both_devices(client, tree, people, fleet):
    old, new = fleet["a2"], fleet["b1"]
    replacement.device_replace(actor=SYSTEM, old=old, new=new)
    client.force_login(people["owner"])
    response = client.get(url("device", tree["acme"], device_id=old.pk))
    assert response.context["device"].replaced_by_id == new.pk
    response = client.get(url("device", tree["acme"], device_id=new.pk))
    assert [device.serial for device in response.context["replaces"]] == ["SN-002"]


# --- transfers ---------------------------------------------------------------------------------


def test_the_inbox_accepts_an_incoming_transfer(client, tree, people, fleet):
    transfer = transfers.transfer_create(
        actor=SYSTEM, device=fleet["a1"], to_organization=tree["retail"]
    )
    client.force_login(people["owner"])
    inbox = client.get(url("transfers", tree["retail"]))
    assert [t.pk for t in inbox.context["incoming"]] == [transfer.pk]
    outbox = client.get(url("transfers", tree["acme"]))
    assert [t.pk for t in outbox.context["outgoing"]] == [transfer.pk]
    response = client.post(
        url("transfer-decide", tree["retail"], transfer_id=transfer.pk, decision="accept")
    )
    assert response.status_code == 302
    assert Transfer.objects.get(pk=transfer.pk).status == "accepted"
    assert Device.objects.get(pk=fleet["a1"].pk).organization_id == tree["retail"].pk


def test_the_inbox_rejects_and_the_sender_cancels(client, tree, people, fleet):
    first = transfers.transfer_create(
        actor=SYSTEM, device=fleet["a1"], to_organization=tree["retail"]
    )
    second = transfers.transfer_create(
        actor=SYSTEM, device=fleet["b1"], to_organization=tree["hospital"]
    )
    client.force_login(people["owner"])
    client.post(url("transfer-decide", tree["retail"], transfer_id=first.pk, decision="reject"))
    client.post(url("transfer-decide", tree["acme"], transfer_id=second.pk, decision="cancel"))
    assert dict(Transfer.objects.values_list("pk", "status")) == {
        first.pk: "rejected",
        second.pk: "cancelled",
    }
    assert Device.objects.get(pk=fleet["a1"].pk).organization_id == tree["acme"].pk


def test_a_transfer_to_another_organization_is_not_in_this_inbox(client, tree, people, fleet):
    transfer = transfers.transfer_create(
        actor=SYSTEM, device=fleet["a1"], to_organization=tree["hospital"]
    )
    client.force_login(people["owner"])
    response = client.post(
        url("transfer-decide", tree["retail"], transfer_id=transfer.pk, decision="accept")
    )
    assert response.status_code == 404
    assert Transfer.objects.get(pk=transfer.pk).status == "pending"


def test_it_claims_a_device_with_its_code(client, tree, people, fleet):
    code = transfers.device_set_claim_code(actor=SYSTEM, device=fleet["a1"])
    client.force_login(people["owner"])
    form = {"serial": "SN-001", "manufacturer": str(tree["acme"].pk), "claim_code": "wrong"}
    response = client.post(url("claim", tree["retail"]), form)
    assert response.status_code == 400
    assert response.context["claim_form"].non_field_errors() == [
        "Unknown serial number or wrong claim code."
    ]
    response = client.post(url("claim", tree["retail"]), form | {"claim_code": code})
    assert response.status_code == 302
    assert response.url == url("device", tree["retail"], device_id=fleet["a1"].pk)
    assert Device.objects.get(pk=fleet["a1"].pk).organization_id == tree["retail"].pk


def test_the_side_navigation_has_devices_and_transfers_once(client, tree, people):
    from apps.accounts.portal import NAVIGATION

    names = [item.url_name for item in NAVIGATION]
    assert (names.count("fleet:list"), names.count("fleet:transfers")) == (1, 1)
    client.force_login(people["viewer"])
    response = client.get(url("list", tree["acme"]))
    nav = {item["label"]: (item["url"], item["active"]) for item in response.context["nav_items"]}
    assert nav["Devices"] == (url("list", tree["acme"]), True)
    assert nav["Transfers"] == (url("transfers", tree["acme"]), False)
