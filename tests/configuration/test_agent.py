"""The reference agent's configuration handling: apply once, report, refuse a bad document,
and the HTTPS checksum pull against the running platform."""

from __future__ import annotations

import json

import pytest

from agent.configuration import Applier, canonical_checksum, pull
from apps.configuration.models import DeviceConfigurationState
from tests.broker_support import create_token

from .support import make_device, run, set_spec

CONFIGURATION = {"brightness": 70}


def desired(version: int = 1, configuration=None, checksum: str | None = None) -> bytes:
    configuration = CONFIGURATION if configuration is None else configuration
    document = {
        "version": version,
        "checksum": checksum or canonical_checksum(configuration),
        "configuration": configuration,
    }
    return json.dumps(document).encode()


@pytest.fixture
def reports() -> list[dict]:
    return []


def test_it_applies_a_document_once_and_reports_it(tmp_path, reports):
    applier = Applier(tmp_path, reports.append, fsync=False)
    applier.accept(desired())
    applier.accept(desired())  # the retained message again, after a reconnect
    checksum = canonical_checksum(CONFIGURATION)
    assert reports == [{"version": 1, "checksum": checksum, "status": "applied"}]
    assert applier.applied() == {"version": 1, "checksum": checksum, "configuration": CONFIGURATION}


@pytest.mark.parametrize(
    ("payload", "error"),
    [
        (b"nope", "not JSON"),
        (b"[]", "not a JSON object"),
        (json.dumps({"version": "1"}).encode(), "version: not a non-negative integer"),
        (desired(2, checksum="0" * 64), "checksum: does not match the configuration"),
    ],
)
def test_a_bad_document_is_reported_as_an_error_and_not_applied(tmp_path, reports, payload, error):
    applier = Applier(tmp_path, reports.append, fsync=False)
    applier.accept(desired())
    applier.accept(payload)
    assert reports[-1]["status"] == "error" and reports[-1]["error"] == error
    assert applier.applied()["version"] == 1


def test_the_makers_apply_step_can_refuse(tmp_path, reports):
    def apply(configuration):
        if configuration["brightness"] > 50:
            raise ValueError("the panel cannot go above 50")

    applier = Applier(tmp_path, reports.append, apply=apply, fsync=False)
    applier.accept(desired())
    assert reports == [
        {
            "version": 1,
            "checksum": canonical_checksum(CONFIGURATION),
            "status": "error",
            "error": "the panel cannot go above 50",
        }
    ]
    assert applier.applied() == {}


@pytest.mark.django_db(transaction=True)
def test_an_https_only_device_pulls_by_checksum_and_reports(tree, live_server, tmp_path):
    from .support import make_version

    version = make_version(tree["acme"])
    device = make_device(version, tree["acme"])
    headers = {"Authorization": f"Bearer {create_token(device)}"}
    applier = Applier(tmp_path, lambda body: None, fsync=False)
    first = pull(applier, live_server.url, headers=headers)
    assert first is not None and first["status"] == "applied"
    assert pull(applier, live_server.url, headers=headers) is None  # 304: unchanged
    run(tree["acme"], set_spec("device", device.pk, values={"brightness": 5}))
    second = pull(applier, live_server.url, headers=headers)
    assert second is not None and (second["version"], second["status"]) == (2, "applied")
    state = DeviceConfigurationState.objects.get(device=device)
    assert (state.status, state.reported_version, state.reported_checksum) == (
        "in_sync",
        2,
        applier.applied()["checksum"],
    )
    assert applier.applied()["configuration"]["brightness"] == 5
