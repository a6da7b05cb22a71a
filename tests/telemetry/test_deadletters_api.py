"""The dead letters API: the authorization matrix on the list, the detail, replay and discard;
exact documents; filters; 409 on a dead letter already handled; dead letters of unknown devices
stay with platform staff."""

from __future__ import annotations

import base64
import itertools
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from apps.accounts.roles import Role
from apps.core.models import AuditLog
from apps.devices.choices import DeviceState
from apps.telemetry.models import DeadLetter, TelemetrySample
from tests.authz import (
    API_KEY,
    SESSION,
    Call,
    Case,
    World,
    assert_authz_matrix,
    build_world,
    error,
    ids,
    iso,
)

from .conftest import make_device, make_version

pytestmark = pytest.mark.django_db

URL = "/api/v1/telemetry/dead-letters/"
VIEWERS = {Role.OWNER, Role.ADMIN, Role.OPERATOR, Role.APPROVER, Role.TECHNICIAN, Role.VIEWER}
ACTORS = {Role.OWNER, Role.ADMIN, Role.OPERATOR}


@pytest.fixture(params=[SESSION, API_KEY])
def world(request, tree) -> World:
    return build_world(tree, kind=request.param)


def body(seq: int = 1, **extra: Any) -> bytes:
    now = datetime.now(tz=UTC).isoformat().replace("+00:00", "Z")
    return orjson.dumps({"boot": 3, "seq": seq, "ts": now, "metrics": {"temperature": 21.5}})


_profiles = itertools.count(1)


def letter(organization: Any, *, reason: str = "device_state", **fields: Any) -> DeadLetter:
    """A dead letter of a new active device of ``organization`` whose payload is valid now (it
    was refused while the device was suspended): replaying it stores it."""
    device = fields.pop("device", None) or make_device(
        make_version(organization, f"Thermo {next(_profiles)}"), organization
    )
    return DeadLetter.objects.create(
        organization=organization,
        device=device,
        topic=f"devices/{device.pk}/telemetry",
        reason=reason,
        detail="device is suspended",
        payload=fields.pop("payload", body()),
        **fields,
    )


def document(dead: DeadLetter) -> dict[str, Any]:
    dead.refresh_from_db()
    payload = bytes(dead.payload)
    return {
        "id": str(dead.pk),
        "received_at": iso(dead.received_at),
        "organization": str(dead.organization_id) if dead.organization_id else None,
        "device": str(dead.device_id) if dead.device_id else None,
        "device_serial": dead.device.serial if dead.device else None,
        "source": dead.source,
        "topic": dead.topic,
        "reason": dead.reason,
        "detail": dead.detail,
        "status": dead.status,
        "replay_count": dead.replay_count,
        "handled_at": iso(dead.handled_at),
        "handled_by": dead.handled_by.email if dead.handled_by else None,
        "payload": payload.decode("utf-8", errors="replace"),
        "payload_base64": base64.b64encode(payload).decode(),
        "payload_size": len(payload),
    }


def stored(dead: DeadLetter) -> int:
    return TelemetrySample.objects.filter(device_id=dead.device_id).count()


def state(attempt: Any) -> tuple[Any, ...]:
    dead = DeadLetter.objects.get(pk=attempt.target.pk)
    return dead.status, dead.replay_count, dead.handled_at, stored(dead)


def test_list_matrix(world):
    assert_authz_matrix(
        world,
        Case(
            permission="telemetry.view",
            allowed=VIEWERS,
            listing=True,
            setup=lambda w: letter(w.home),
            request=lambda a: Call("get", URL),
            expect=lambda a, response: (
                response.json()["results"] == [document(a.target)] or pytest.fail(response.json())
            ),
        ),
    )


def test_detail_matrix(world):
    assert_authz_matrix(
        world,
        Case(
            permission="telemetry.view",
            allowed=VIEWERS,
            setup=lambda w: letter(w.tree["retail"]),  # below home: in scope
            request=lambda a: Call("get", f"{URL}{a.target.pk}/"),
            expect=lambda a, response: (
                response.json() == document(a.target) or pytest.fail(response.json())
            ),
        ),
    )


def _replayed(attempt: Any, response: Any) -> None:
    dead = attempt.target
    assert response.json() == document(dead)
    assert (dead.status, dead.replay_count, stored(dead)) == ("replayed", 1, 1)
    assert dead.handled_by == attempt.principal.user  # None for an API key
    audit = AuditLog.objects.get(action="deadletter.replay")
    assert (audit.object_id, audit.actor_label) == (str(dead.pk), attempt.principal.label)


def test_replay_matrix(world):
    assert_authz_matrix(
        world,
        Case(
            permission="telemetry.replay",
            allowed=ACTORS,
            setup=lambda w: letter(w.home),
            request=lambda a: Call("post", f"{URL}{a.target.pk}/replay/"),
            state=state,
            expect=_replayed,
        ),
    )


def _discarded(attempt: Any, response: Any) -> None:
    dead = attempt.target
    assert response.json() == document(dead)
    assert (dead.status, dead.replay_count, stored(dead)) == ("discarded", 0, 0)
    assert dead.handled_at is not None
    assert orjson.loads(bytes(dead.payload))["seq"] == 1  # the payload is kept
    assert AuditLog.objects.get(action="deadletter.discard").object_id == str(dead.pk)


def test_discard_matrix(world):
    assert_authz_matrix(
        world,
        Case(
            permission="telemetry.replay",
            allowed=ACTORS,
            setup=lambda w: letter(w.home),
            request=lambda a: Call("post", f"{URL}{a.target.pk}/discard/"),
            state=state,
            expect=_discarded,
        ),
    )


def owner(tree: dict[str, Any]) -> Any:
    world = build_world(tree, kind=SESSION)
    return world.members[Role.OWNER].client


def test_a_dead_letter_refused_again_stays_new_with_the_new_reason(tree):
    client = owner(tree)
    dead = letter(tree["acme"], reason="schema", payload=b'{"boot": 1, "seq": 1}')
    response = client.post(f"{URL}{dead.pk}/replay/")
    assert response.status_code == 200
    assert response.json() == document(dead)
    assert (dead.status, dead.replay_count, dead.reason, stored(dead)) == (
        "new",
        1,
        "bad_timestamp",
        0,
    )


def test_replaying_or_discarding_a_handled_dead_letter_is_409_and_changes_nothing(tree):
    client = owner(tree)
    dead = letter(tree["acme"], status="discarded")
    for operation in ("replay", "discard"):
        response = client.post(f"{URL}{dead.pk}/{operation}/")
        assert response.status_code == 409
        assert error(response)["code"] == "conflict"
    assert document(dead)["status"] == "discarded"
    assert AuditLog.objects.filter(action__startswith="deadletter.").count() == 0


def test_filters_and_cursor_pages(tree, django_assert_num_queries):
    client = owner(tree)
    version = make_version(tree["acme"])
    device = make_device(version, tree["acme"])
    other = make_device(version, tree["acme"], state=DeviceState.SUSPENDED)
    first = letter(tree["acme"], device=device, reason="schema")
    second = letter(tree["acme"], device=other, reason="device_state")
    third = letter(tree["acme"], device=device, reason="schema", status="replayed")
    newest_first = [str(third.pk), str(second.pk), str(first.pk)]

    assert ids(client.get(URL)) == newest_first
    assert ids(client.get(URL, {"reason": "schema"})) == [str(third.pk), str(first.pk)]
    assert ids(client.get(URL, {"status": "new"})) == [str(second.pk), str(first.pk)]
    assert ids(client.get(URL, {"device": str(other.pk)})) == [str(second.pk)]
    assert ids(client.get(URL, {"reason": "schema", "status": "new"})) == [str(first.pk)]
    bad = client.get(URL, {"reason": "nonsense"})
    assert (bad.status_code, list(error(bad)["fields"])) == (400, ["reason"])

    page = client.get(URL, {"page_size": 2})
    assert ids(page) == newest_first[:2]
    assert ids(client.get(page.json()["next"])) == newest_first[2:]
    with django_assert_num_queries(4):  # session, user, memberships, the page
        client.get(URL)


def test_dead_letters_of_unknown_devices_stay_with_platform_staff(tree):
    client = owner(tree)
    orphan = DeadLetter.objects.create(
        topic="devices/00000000-0000-0000-0000-000000000000/telemetry",
        reason="unknown_device",
        payload=body(),
    )
    assert ids(client.get(URL)) == []
    assert client.get(f"{URL}{orphan.pk}/").status_code == 404
    assert client.post(f"{URL}{orphan.pk}/discard/").status_code == 404
    assert DeadLetter.objects.get(pk=orphan.pk).status == "new"
