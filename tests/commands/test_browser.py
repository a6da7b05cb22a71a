"""The command pages in headless Chromium: an operator creates a command from the schema form,
and the progress page counts results as they are recorded (pushed, or polled when the page's
socket is away: live_server serves no websockets)."""

from __future__ import annotations

import pytest
from django.utils import timezone

from apps.accounts.roles import Role
from apps.changes.execution import change_request_execute
from apps.changes.models import ChangeRequest
from apps.commands.services import Report, results_record
from apps.core.actors import SYSTEM
from tests.portal.conftest import verified_member
from tests.portal.test_browser import Shots, browser, page, sign_in  # noqa: F401

from .support import commands_of, make_device, make_version

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_an_operator_runs_a_command_and_watches_its_progress(page, tree):  # noqa: F811
    acme = tree["acme"]
    version = make_version(acme)
    devices = [make_device(version, acme) for _ in range(3)]
    verified_member(acme, Role.OPERATOR, "operator@acme.test")
    shots = Shots(page, "commands")
    sign_in(page, "operator@acme.test")
    page.goto(f"/o/{acme.pk}/commands/new/")
    page.click('a[data-command="set_log_level"]')
    page.fill("input[name=title]", "Debug logs on the fleet")
    page.fill("textarea[name=target]", f'{{"filter": {{"profile": ["{version.profile_id}"]}}}}')
    page.select_option("select[name=arg_level]", label="debug")
    shots("1-form")
    page.click("#create-command")
    page.wait_for_url("**/change-requests/**")
    request = ChangeRequest.objects.get()
    assert request.spec["arguments"] == {"level": "debug"}
    change_request_execute(actor=SYSTEM, request=request)
    page.goto(f"/change-requests/{request.pk}/commands/")
    assert page.inner_text('[data-count="queued"]') == "3"
    commands = commands_of(request)
    results_record(
        reports=[
            Report(
                device_id=device.pk,
                command_id=str(commands[device.pk].pk),
                document={"status": "succeeded", "output": {"level": "debug"}},
                at=timezone.now(),
            )
            for device in devices[:2]
        ],
        actor=SYSTEM,
    )
    page.wait_for_function(
        "document.querySelector('[data-count=\"succeeded\"]').textContent === '2'", timeout=15_000
    )
    assert page.inner_text('[data-count="queued"]') == "1"
    page.wait_for_timeout(500)  # the bars' width transition
    width = page.eval_on_selector('[data-bar="succeeded"]', "bar => bar.style.width")
    assert width.startswith("66.66")
    shots("2-progress")
