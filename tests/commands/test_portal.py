"""Portal pages of commands: the form rendered from the command's schema, the request it
creates, and the progress page."""

from __future__ import annotations

import pytest
from django.test import Client

from apps.accounts.roles import Role
from apps.changes.models import ChangeRequest
from apps.commands.forms import CommandRequestForm
from tests.factories import make_member

from .support import commands_of, run

pytestmark = pytest.mark.django_db


def login(organization, role) -> Client:
    client = Client()
    client.force_login(make_member(organization, role))
    return client


def test_the_form_renders_fields_from_the_schema_and_falls_back_to_json():
    simple = CommandRequestForm(
        schema={
            "type": "object",
            "properties": {
                "level": {"type": "string", "enum": ["debug", "info"]},
                "lines": {"type": "integer", "minimum": 1, "maximum": 200},
                "ratio": {"type": "number"},
                "verbose": {"type": "boolean"},
                "note": {"type": "string", "maxLength": 20, "description": "Why"},
            },
            "required": ["level"],
        }
    )
    assert list(simple.fields) == [
        "title",
        "target",
        "timeout_s",
        "arg_level",
        "arg_lines",
        "arg_ratio",
        "arg_verbose",
        "arg_note",
    ]
    assert simple.fields["arg_level"].required is True
    assert simple.fields["arg_lines"].max_value == 200
    assert simple.fields["arg_note"].help_text == "Why"
    nested = CommandRequestForm(
        schema={"type": "object", "properties": {"points": {"type": "array"}}}
    )
    assert "arguments" in nested.fields and not nested.simple
    bound = CommandRequestForm(
        {
            "title": "t",
            "target": '{"device": "x"}',
            "timeout_s": 60,
            "arg_level": '"info"',
            "arg_lines": "5",
            "arg_verbose": "on",
        },
        schema=simple.schema,
    )
    assert bound.is_valid(), bound.errors
    assert bound.arguments() == {"level": "info", "lines": 5, "verbose": True}


def test_an_operator_creates_a_command_request_from_the_form(tree, devices, version):
    client = login(tree["acme"], Role.OPERATOR)
    listing = client.get(f"/o/{tree['acme'].pk}/commands/new/")
    assert listing.status_code == 200
    assert b'data-command="set_log_level"' in listing.content
    path = f"/o/{tree['acme'].pk}/commands/new/?version={version.pk}&command=set_log_level"
    page = client.get(path)
    assert page.status_code == 200
    assert b'name="arg_level"' in page.content
    bad = client.post(
        path, {"title": "Quiet", "target": f'{{"device": "{devices[0].pk}"}}', "timeout_s": 60}
    )
    assert bad.status_code == 400
    assert ChangeRequest.objects.count() == 0
    done = client.post(
        path,
        {
            "title": "Quiet",
            "target": f'{{"device": "{devices[0].pk}"}}',
            "timeout_s": 60,
            "arg_level": '"warning"',
        },
    )
    created = ChangeRequest.objects.get()
    assert done.status_code == 302 and done["Location"] == f"/change-requests/{created.pk}/"
    assert (created.kind, created.status) == ("command", "approved")
    assert created.spec == {
        "command": "set_log_level",
        "arguments": {"level": "warning"},
        "timeout_s": 60,
        "profile": str(version.profile_id),
    }


def test_the_form_is_403_without_the_permission_and_404_outside(tree, devices):
    assert (
        login(tree["acme"], Role.VIEWER).get(f"/o/{tree['acme'].pk}/commands/new/").status_code
        == 403
    )
    assert (
        login(tree["globex"], Role.OWNER).get(f"/o/{tree['acme'].pk}/commands/new/").status_code
        == 404
    )


def test_the_progress_page_shows_counts_and_devices(tree, devices):
    request = run(tree["acme"], devices)
    commands = commands_of(request)
    client = login(tree["acme"], Role.VIEWER)
    page = client.get(f"/change-requests/{request.pk}/commands/")
    assert page.status_code == 200
    text = page.content.decode()
    assert 'data-count="total">4<' in text
    assert 'data-count="queued">4<' in text
    assert all(f'data-command="{c.pk}"' in text for c in commands.values())
    retail_only = login(tree["retail"], Role.VIEWER)
    assert retail_only.get(f"/change-requests/{request.pk}/commands/").status_code == 404
    assert (
        login(tree["globex"], Role.OWNER)
        .get(f"/change-requests/{request.pk}/commands/")
        .status_code
        == 404
    )


def test_an_executed_command_request_links_to_its_progress_page(tree, devices):
    request = run(tree["acme"], devices)
    page = login(tree["acme"], Role.VIEWER).get(f"/change-requests/{request.pk}/")
    assert page.status_code == 200
    assert (
        f'<a class="btn btn-secondary" href="/change-requests/{request.pk}/commands/" '
        'id="request-details">Progress per device</a>'
    ) in page.content.decode()
