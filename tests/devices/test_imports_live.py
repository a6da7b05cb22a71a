"""Import progress reaches the browsers of the job's organization (and only those) through the
live websocket, after commit, on the real ASGI application and Redis channel layer."""

from __future__ import annotations

from typing import Any

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from django.db import transaction

from apps.accounts.roles import Role
from apps.core.actors import SYSTEM
from apps.core.models import JobStatus
from apps.devices.jobs import job_create, job_finish, job_progress
from tests.accounts.test_consumers import headers_for, live
from tests.factories import make_member

pytestmark = pytest.mark.django_db(transaction=True)


def test_progress_is_pushed_after_commit_to_the_jobs_organization_only(tree):
    acme_viewer = headers_for(make_member(tree["acme"], Role.VIEWER))
    globex_viewer = headers_for(make_member(tree["globex"], Role.VIEWER))
    job = job_create(
        actor=SYSTEM, organization=tree["retail"], kind="devices.import", params={}, total=200
    )

    def report() -> None:
        with transaction.atomic():
            job_progress(job.pk, processed=50, succeeded=49, failed=1, status=JobStatus.RUNNING)
        with transaction.atomic():
            job_progress(job.pk, processed=200, succeeded=198, failed=2)
            job_finish(job.pk, status=JobStatus.PARTIAL, result={"created": 198})

    async def scenario() -> list[Any]:
        ours, theirs = live(acme_viewer), live(globex_viewer)
        await ours.connect()
        await theirs.connect()
        received = [await ours.receive_json_from(timeout=5), await theirs.receive_json_from()]
        await sync_to_async(report)()
        received += [await ours.receive_json_from(timeout=5) for _ in range(2)]
        received.append(await theirs.receive_nothing(timeout=0.5))
        await ours.disconnect()
        await theirs.disconnect()
        return received

    common = {"type": "job.progress", "id": str(job.pk), "kind": "devices.import", "total": 200}
    assert async_to_sync(scenario)() == [
        {"type": "hello", "organizations": 4},
        {"type": "hello", "organizations": 1},
        {**common, "processed": 50, "succeeded": 49, "failed": 1, "status": "running",
         "percent": 25},
        # one push for the second transaction's two updates, read after its commit
        {**common, "processed": 200, "succeeded": 198, "failed": 2, "status": "partial",
         "percent": 100},
        True,
    ]  # fmt: skip
