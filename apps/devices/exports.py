"""CSV out: the device export (in the import format) and an import's rejected rows.

Both stream: rows come from a server-side cursor (``values_list().iterator()``) or from the
stored input file, never as ORM objects or a list in memory.

The device export's columns are the import's columns, in the import's format (tags separated by
``;``, attributes as one JSON object, the profile by id), followed by ``id`` and
``organization`` which the import ignores, so an export re-imports cleanly.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from django.core.exceptions import ValidationError
from django.db.models import QuerySet

from apps.core.actors import Actor
from apps.core.models import Job

from .import_files import ImportFileError, csv_header, file_format, read_rows
from .imports import COLUMNS, rejected_messages
from .models import Device, DeviceGroup
from .selection import selection_q

EXPORT_COLUMNS = (*COLUMNS, "id", "organization")
EXPORT_FIELDS = (
    "serial",
    "profile_version__profile_id",
    "profile_version__number",
    "name",
    "tags",
    "attributes",
    "latitude",
    "longitude",
    "state",
    "id",
    "organization_id",
)
LIST_KEYS: tuple[str, ...] = ("state", "connectivity", "profile", "profile_version", "tags_all")
LIST_KEYS += ("tags_any", "firmware", "organization", "group")
CHUNK = 5000


def selection_from_query(query: Any) -> dict[str, Any]:
    """A selection spec from query parameters: ``filter=<JSON selection>`` and/or one parameter
    per selection key (lists repeated or comma-separated, ``attributes`` as JSON, ``bbox`` as
    four comma-separated numbers, ``search`` as text)."""
    spec: dict[str, Any] = {}
    if query.get("filter"):
        try:
            spec = json.loads(query["filter"])
        except json.JSONDecodeError:
            raise ValidationError({"filter": "Must be a JSON object."}) from None
        if not isinstance(spec, dict):
            raise ValidationError({"filter": "Must be a JSON object."})
    for key in LIST_KEYS:
        values = [part for value in query.getlist(key) for part in value.split(",") if part]
        if values:
            spec[key] = values
    if query.get("search"):
        spec["search"] = query["search"]
    if query.get("attributes"):
        try:
            spec["attributes"] = json.loads(query["attributes"])
        except json.JSONDecodeError:
            raise ValidationError({"attributes": "Must be a JSON object."}) from None
    if query.get("bbox"):
        try:
            spec["bbox"] = [float(part) for part in query["bbox"].split(",")]
        except ValueError:
            raise ValidationError({"bbox": "Must be min_lat,min_lon,max_lat,max_lon."}) from None
    return spec


def device_export_queryset(*, actor: Actor, spec: dict[str, Any]) -> QuerySet[Device]:
    """Every device ``actor`` may view that matches the selection."""
    groups = DeviceGroup.objects.for_actor(actor, "view")
    condition = selection_q(spec, groups=groups)
    return Device.objects.for_actor(actor, "view").filter(condition).order_by("-id")


class _Lines:
    """A csv writer whose output is collected and handed out line by line."""

    def __init__(self) -> None:
        self.buffer = io.StringIO()
        self.writer = csv.writer(self.buffer)

    def row(self, values: Iterable[Any]) -> str:
        self.writer.writerow(values)
        value = self.buffer.getvalue()
        self.buffer.seek(0)
        self.buffer.truncate(0)
        return value


def _cell(value: Any) -> Any:
    """Spreadsheet formulas are neutralised in free text (``name``) only: serials, tags and
    JSON must survive a round trip byte for byte."""
    if isinstance(value, str) and value[:1] in ("=", "+", "@"):
        return "'" + value
    return value


def device_csv(rows: QuerySet[Device]) -> Iterator[str]:
    """Stream the export: header first, then one line per device."""
    lines = _Lines()
    yield lines.row(EXPORT_COLUMNS)
    for row in rows.values_list(*EXPORT_FIELDS).iterator(chunk_size=CHUNK):
        serial, profile, number, name, tags, attributes, lat, lon, state, pk, organization = row
        yield lines.row(
            [
                serial,
                profile,
                number,
                _cell(name),
                ";".join(tags),
                json.dumps(attributes, sort_keys=True, separators=(",", ":")),
                "" if lat is None else repr(lat),
                "" if lon is None else repr(lon),
                state,
                pk,
                organization,
            ]
        )


def _json_cell(key: str, value: Any) -> Any:
    if value is None:
        return ""
    if key == "tags" and isinstance(value, list):
        return ";".join(str(tag) for tag in value)
    if isinstance(value, (dict, list, bool)):
        return json.dumps(value)
    return value


def rejected_csv(job: Job) -> Iterator[str]:
    """The rejected rows of an import as they were uploaded, each with an ``error`` column.

    A CSV upload keeps its own header; a JSON upload comes out in the import's columns."""
    lines = _Lines()
    messages = rejected_messages(job)
    path = Path(job.input_file.path) if job.input_file else None
    name = job.params.get("file_name", "")
    try:
        fmt = file_format(path, name) if path is not None and path.exists() else "csv"
        header = csv_header(path) if fmt == "csv" and path is not None else list(COLUMNS)
        yield lines.row([*header, "error"])
        if not messages or path is None:
            return
        for row in read_rows(path, fmt):
            message = messages.get(row.number)
            if message is None:
                continue
            if fmt == "csv":
                yield lines.row([*row.raw, message])
            elif isinstance(row.raw, dict):
                yield lines.row([*(_json_cell(k, row.raw.get(k)) for k in COLUMNS), message])
            else:
                yield lines.row([*([""] * len(COLUMNS)), message])
    except ImportFileError:
        return
