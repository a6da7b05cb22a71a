"""``/api/v1/commands/``: list, retrieve and progress, against every role and a sibling."""

from __future__ import annotations

import pytest
from django.utils import timezone

from apps.accounts.roles import ROLE_PERMISSIONS
from apps.commands.models import Command
from apps.commands.services import Report, results_record
from apps.core.actors import SYSTEM
from tests.authz import Call, Case, assert_authz_matrix

from .support import commands_of, make_device, make_version, run

pytestmark = pytest.mark.django_db

VIEWERS = {role for role, permissions in ROLE_PERMISSIONS.items() if "command.view" in permissions}


def executed(world):
    version = make_version(world.home, "Matrix")
    devices = [make_device(version, world.home), make_device(version, world.home)]
    request = run(world.home, devices)
    first = commands_of(request)[devices[0].pk]
    results_record(
        reports=[
            Report(
                device_id=devices[0].pk,
                command_id=str(first.pk),
                document={"status": "succeeded", "output": {"pong": True}},
                at=timezone.now(),
            )
        ],
        actor=SYSTEM,
    )
    return request, first


def test_commands_list_matrix(authz_world):
    def expect(attempt, response):
        request, first = attempt.target
        rows = response.json()["results"]
        assert [(row["id"], row["status"]) for row in rows] == [(str(first.pk), "succeeded")]
        assert rows[0]["output"] == {"pong": True}
        assert rows[0]["request"] == str(request.pk)

    assert_authz_matrix(
        authz_world,
        Case(
            permission="command.view",
            allowed=VIEWERS,
            setup=executed,
            request=lambda a: Call(
                "get", "/api/v1/commands/", {"request": str(a.target[0].pk), "status": "succeeded"}
            ),
            listing=True,
            expect=expect,
        ),
    )


def test_commands_retrieve_matrix(authz_world):
    def expect(attempt, response):
        _, first = attempt.target
        body = response.json()
        assert (body["id"], body["status"], body["name"]) == (str(first.pk), "succeeded", "ping")
        assert body["device_serial"] == first.device.serial

    assert_authz_matrix(
        authz_world,
        Case(
            permission="command.view",
            allowed=VIEWERS,
            setup=executed,
            request=lambda a: Call("get", f"/api/v1/commands/{a.target[1].pk}/"),
            expect=expect,
        ),
    )


def test_commands_progress_matrix(authz_world):
    def expect(attempt, response):
        request, _ = attempt.target
        counts = response.json()["counts"]
        assert response.json()["request"] == str(request.pk)
        assert (counts["succeeded"], counts["queued"], counts["total"]) == (1, 1, 2)

    assert_authz_matrix(
        authz_world,
        Case(
            permission="command.view",
            allowed=VIEWERS,
            setup=executed,
            request=lambda a: Call(
                "get", "/api/v1/commands/progress/", {"request": str(a.target[0].pk)}
            ),
            expect=expect,
        ),
    )


def test_the_list_filters_by_device_within_a_query_budget(
    tree, devices, django_assert_max_num_queries
):
    from tests.authz import make_principal

    request = run(tree["acme"], devices)
    principal = make_principal("api_key", tree["acme"], "viewer")
    with django_assert_max_num_queries(6):
        response = principal.client.get("/api/v1/commands/", {"device": str(devices[1].pk)})
    assert [row["device"] for row in response.json()["results"]] == [str(devices[1].pk)]
    assert Command.objects.filter(request=request).count() == 4
