"""``/device/v1/commands``: the poll and the result, for devices without MQTT."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from apps.commands.models import Command
from apps.core.actors import SYSTEM
from apps.devices.pki import services as credential_services

from .support import commands_of, run

pytestmark = pytest.mark.django_db


def client_of(device) -> APIClient:
    _, token = credential_services.device_token_create(actor=SYSTEM, device=device)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client


def test_a_polling_device_gets_its_pending_commands_and_reports_results(tree, devices):
    request = run(tree["acme"], devices[:2], command="set_log_level", arguments={"level": "info"})
    mine = commands_of(request)[devices[0].pk]
    client = client_of(devices[0])
    answer = client.get("/device/v1/commands")
    assert answer.status_code == 200
    assert answer.json() == {
        "commands": [
            {
                "id": str(mine.pk),
                "name": "set_log_level",
                "arguments": {"level": "info"},
                "timeout_s": 300,
                "issued_at": mine.issued_at.isoformat(),
                "expires_at": mine.expires_at.isoformat(),
            }
        ]
    }
    mine.refresh_from_db()
    assert mine.status == "sent"
    assert client.get("/device/v1/commands/").json()["commands"][0]["id"] == str(mine.pk)
    path = f"/device/v1/commands/{mine.pk}/result"
    done = {"status": "succeeded", "output": {"level": "info"}}
    assert client.post(path, {"status": "received"}, format="json").status_code == 202
    assert client.post(path, done, format="json").status_code == 202
    assert client.post(path, done, format="json").status_code == 202  # again: no change
    mine.refresh_from_db()
    assert (mine.status, mine.output) == ("succeeded", {"level": "info"})
    assert client.get("/device/v1/commands").json() == {"commands": []}


def test_a_result_for_another_devices_command_is_404_and_changes_nothing(tree, devices):
    request = run(tree["acme"], devices[:2])
    theirs = commands_of(request)[devices[1].pk]
    client = client_of(devices[0])
    answer = client.post(
        f"/device/v1/commands/{theirs.pk}/result", {"status": "succeeded"}, format="json"
    )
    assert answer.status_code == 404
    assert answer.json()["error"]["code"] == "not_found"
    bad = client.post(
        f"/device/v1/commands/{commands_of(request)[devices[0].pk].pk}/result",
        {"status": "done"},
        format="json",
    )
    assert bad.status_code == 400
    assert bad.json()["error"]["fields"] == {
        "status": ["status must be one of received, in_progress, succeeded, failed, not 'done'."]
    }
    assert set(Command.objects.values_list("status", flat=True)) == {"queued"}


def test_the_device_api_needs_a_device(tree, devices):
    assert APIClient().get("/device/v1/commands").status_code == 401
