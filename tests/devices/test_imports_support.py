"""Builders shared by the import and export tests (no tests here)."""

from __future__ import annotations

import io
from typing import Any

from django.core.files.uploadedfile import SimpleUploadedFile

from apps.accounts.models import Organization
from apps.core.actors import Actor
from apps.core.models import Job, JobItem
from apps.devices import imports
from apps.profiles.models import DeviceProfile, ProfileVersion

SCHEMA = {
    "type": "object",
    "properties": {
        "color": {"enum": ["red", "blue"]},
        "floor": {"type": "integer"},
        "indoor": {"type": "boolean"},
    },
    "additionalProperties": False,
}
HEADER = "serial,profile,profile_version,name,tags,attributes,latitude,longitude,state"


def make_profile(
    organization: Organization, slug: str, *, versions: int = 1, schema: Any = None
) -> DeviceProfile:
    profile = DeviceProfile.objects.create(
        organization=organization, name=slug.title(), slug=slug, latest_number=versions
    )
    for number in range(1, versions + 1):
        ProfileVersion.objects.create(
            profile=profile, number=number, attributes_schema=schema or {"type": "object"}
        )
    return profile


def make_catalog(tree: dict[str, Organization]) -> dict[str, DeviceProfile]:
    """acme's "sensor" (two versions, a strict schema), acme's "plain", globex's "camera"."""
    return {
        "sensor": make_profile(tree["acme"], "sensor", versions=2, schema=SCHEMA),
        "plain": make_profile(tree["acme"], "plain"),
        "camera": make_profile(tree["globex"], "camera"),
    }


def upload(content: str | bytes, name: str = "devices.csv") -> SimpleUploadedFile:
    data = content.encode() if isinstance(content, str) else content
    return SimpleUploadedFile(name, data, content_type="text/csv")


def run(
    actor: Actor, organization: Organization, content: str | bytes, name: str = "devices.csv"
) -> Job:
    """Start an import and run it here (on_commit never fires inside a test transaction)."""
    job = imports.import_start(actor=actor, organization=organization, upload=upload(content, name))
    return imports.import_run(job_id=job.pk)


def rejected(job: Job) -> list[tuple[str, str]]:
    return list(
        JobItem.objects.filter(job=job, ok=False).order_by("id").values_list("key", "message")
    )


def csv_text(rows: list[str]) -> str:
    return "\n".join([HEADER, *rows]) + "\n"


def generate(count: int, *, prefix: str = "SN", bad_every: int = 0) -> str:
    """``count`` rows of the "plain" profile; every ``bad_every``-th row has an illegal state."""
    out = io.StringIO()
    out.write(HEADER + "\n")
    for i in range(1, count + 1):
        state = "maintenance" if bad_every and i % bad_every == 0 else "escrow"
        out.write(f'{prefix}-{i:07d},plain,,Device {i},eu;lab,"{{""n"": {i}}}",1.5,2.5,{state}\n')
    return out.getvalue()
