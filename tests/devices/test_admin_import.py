"""The back office's "Import devices" page: the same import job as the API and the portal."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission
from django.test import Client

from apps.accounts.models import Membership, User
from apps.accounts.roles import Role
from apps.core.models import AuditLog, Job
from apps.devices import imports
from apps.devices.models import Device
from tests.factories import make_member

from .test_imports_support import csv_text, make_catalog, upload

pytestmark = pytest.mark.django_db
URL = "/admin/devices/device/import/"
ROWS = ["A-1,plain,,,,,,,", "A-2,plain,,,,,,,", "A-3,plain,,,,,,,broken"]


@pytest.fixture(autouse=True)
def media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"


@pytest.fixture
def root() -> Client:
    client = Client()
    client.force_login(User.objects.create_superuser("root@fleetops.example", "pw-12345678"))
    return client


def staff(organization, role: str) -> Client:
    user = make_member(organization, role)
    user.is_staff = True
    user.save()
    user.user_permissions.set(Permission.objects.filter(codename__in=["view_device", "view_job"]))
    client = Client()
    client.force_login(user)
    return client


def test_the_device_list_links_to_the_import_page(tree, root):
    page = root.get("/admin/devices/device/")
    assert page.status_code == 200
    assert f'<a href="{URL}" class="addlink">Import devices</a>'.encode() in page.content
    form = root.get(URL)
    assert form.status_code == 200
    assert b'name="organization"' in form.content
    assert b'class="vForeignKeyRawIdAdminField vUUIDField"' in form.content


def test_a_superuser_starts_an_import_job_and_lands_on_its_page(
    tree, root, django_capture_on_commit_callbacks
):
    make_catalog(tree)
    with django_capture_on_commit_callbacks() as queued:
        response = root.post(
            URL, {"organization": str(tree["acme"].pk), "file": upload(csv_text(ROWS))}
        )

    job = Job.objects.get()
    assert (response.status_code, response["Location"]) == (
        302,
        f"/admin/core/job/{job.pk}/change/",
    )
    root_user = User.objects.get(email="root@fleetops.example")
    assert (job.kind, job.organization_id, job.status, job.created_by_id) == (
        imports.KIND,
        tree["acme"].pk,
        "queued",
        root_user.pk,
    )
    assert job.params == {
        "actor": {
            "kind": "user",
            "user_id": str(root_user.pk),
            "api_key_id": None,
            "label": "root@fleetops.example",
            "source": "admin",
        },
        "file_name": "devices.csv",
    }
    assert job.input_file.read().decode() == csv_text(ROWS)
    audit = AuditLog.objects.get(action="device.import")
    assert (audit.object_id, audit.source, audit.changes) == (
        str(job.pk),
        "admin",
        {"file": [None, "devices.csv"]},
    )
    assert len(queued) == 1  # the enqueue, after commit
    assert Device.objects.count() == 0  # the worker does the rows


def test_the_job_page_shows_progress_and_the_rejected_rows_link(
    tree, root, settings, django_capture_on_commit_callbacks
):
    settings.DEVICE_IMPORT_INLINE = True  # enqueue runs the job here instead of in a worker
    make_catalog(tree)
    with django_capture_on_commit_callbacks(execute=True):
        response = root.post(
            URL, {"organization": str(tree["acme"].pk), "file": upload(csv_text(ROWS))}
        )
    job = Job.objects.get()
    assert (job.status, job.total, job.processed, job.succeeded, job.failed) == (
        "partial",
        3,
        3,
        2,
        1,
    )
    assert sorted(Device.objects.values_list("serial", flat=True)) == ["A-1", "A-2"]

    page = root.get(response["Location"])
    assert page.status_code == 200
    assert b"partial: 3 / 3 (100%), 1 failed" in page.content
    rejected = f"/api/v1/device-imports/{job.pk}/rejected.csv"
    assert f'1 (<a href="{rejected}">rejected rows as CSV</a>)'.encode() in page.content
    assert [str(m) for m in page.context["messages"]] == ["Import of devices.csv queued."]


def test_staff_with_device_add_import_into_their_organization_only(tree):
    make_catalog(tree)
    client = staff(tree["retail"], Role.OPERATOR)
    assert client.get(URL).status_code == 200

    outside = client.post(
        URL, {"organization": str(tree["hospital"].pk), "file": upload(csv_text(ROWS))}
    )
    assert outside.status_code == 400
    assert outside.context["form"].errors == {
        "organization": ["Select a valid choice. That choice is not one of the available choices."]
    }
    assert Job.objects.count() == 0

    inside = client.post(
        URL, {"organization": str(tree["retail"].pk), "file": upload(csv_text(ROWS))}
    )
    job = Job.objects.get()
    assert (inside.status_code, inside["Location"]) == (302, f"/admin/core/job/{job.pk}/change/")
    assert (job.kind, job.organization_id) == (imports.KIND, tree["retail"].pk)


def test_staff_without_device_add_are_refused(tree):
    make_catalog(tree)
    client = staff(tree["retail"], Role.VIEWER)
    assert client.get(URL).status_code == 403
    refused = client.post(
        URL, {"organization": str(tree["retail"].pk), "file": upload(csv_text(ROWS))}
    )
    assert refused.status_code == 403
    assert Job.objects.count() == 0


def test_staff_with_device_add_elsewhere_are_refused_here(tree):
    make_catalog(tree)
    user = make_member(tree["retail"], Role.OPERATOR)
    Membership.objects.create(organization=tree["hospital"], user=user, role=Role.VIEWER)
    user.is_staff = True
    user.save()
    client = Client()
    client.force_login(user)
    refused = client.post(
        URL, {"organization": str(tree["hospital"].pk), "file": upload(csv_text(ROWS))}
    )
    assert refused.status_code == 403
    assert Job.objects.count() == 0


def test_people_who_are_not_staff_are_sent_to_the_login_page(tree):
    make_catalog(tree)
    client = Client()
    client.force_login(make_member(tree["acme"], Role.OWNER))
    for response in (
        client.get(URL),
        client.post(URL, {"organization": str(tree["acme"].pk), "file": upload(csv_text(ROWS))}),
    ):
        assert (response.status_code, response["Location"]) == (
            302,
            f"/admin/login/?next={URL}",
        )
    assert Client().get(URL)["Location"] == f"/admin/login/?next={URL}"
    assert Job.objects.count() == 0


def test_a_refused_file_is_shown_on_the_form(tree, root):
    response = root.post(
        URL, {"organization": str(tree["acme"].pk), "file": upload(b"", "empty.csv")}
    )
    assert response.status_code == 400
    assert response.context["form"].errors == {"file": ["The submitted file is empty."]}
    assert Job.objects.count() == 0
