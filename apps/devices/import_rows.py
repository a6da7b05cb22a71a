"""Validating import rows: fields, the profile (by id or slug), its attributes schema, state.

One ``Validator`` per job: profiles are resolved once and each version's JSON Schema is
compiled once (Draft 2020-12). A row comes out as the line the staging COPY takes, or as the
message of its errors (``"field: reason; field: reason"``).

Speed: a schema written in the common subset (types, properties, ``additionalProperties``,
``required``, enums, constants, numeric bounds, string lengths) is also compiled to a plain
Python predicate that only ever answers "valid" for objects jsonschema accepts; any other answer
(or any other keyword) goes to jsonschema, which words the errors exactly as before.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from jsonschema import Draft202012Validator

from apps.core.actors import Actor
from apps.core.ids import uuid7_hex_batch
from apps.core.scoping import ancestor_ids
from apps.profiles.models import DeviceProfile, ProfileVersion

from .choices import DeviceState
from .import_files import Row
from .import_schema import Check, fast_check

ALLOWED_STATES = (DeviceState.ESCROW, DeviceState.ACTIVE, DeviceState.DISCOVERED)


@dataclass
class Chunk:
    good: list[str] = field(default_factory=list)  # staging rows, as COPY text lines
    rejected: list[tuple[int, str]] = field(default_factory=list)
    # What the writer needs to check the good rows again should a version change meanwhile:
    # the versions they were validated against (by ``VersionInfo.key``), the validator that
    # read them, and the chunk's rows (in file order, numbers consecutive) when the lines do not
    # hold the attributes as given (cells of ``attr.<name>`` columns merged in and typed).
    versions: dict[str, VersionInfo] = field(default_factory=dict)
    validator: Validator | None = None
    rows: list[Row] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.good) + len(self.rejected)


def _text(row: dict[str, Any], key: str, errors: list[str], limit: int) -> str:
    value = row.get(key)
    if value is None:
        return ""
    if type(value) is str:
        text = value.strip()
    elif isinstance(value, bool) or not isinstance(value, (str, int, float)):
        errors.append(f"{key}: must be text")
        return ""
    else:
        text = str(value).strip()
    if "\x00" in text:
        errors.append(f"{key}: must not contain NUL characters")
    elif len(text) > limit:
        errors.append(f"{key}: at most {limit} characters")
    return text


def _coordinate(row: dict[str, Any], key: str, bound: float, errors: list[str]) -> float | None:
    value = row.get(key)
    if value is None or value == "":
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        errors.append(f"{key}: must be a number")
        return None
    if isinstance(value, bool) or not -bound <= number <= bound:
        errors.append(f"{key}: must be between -{bound:g} and {bound:g}")
        return None
    return number


def _tags(row: dict[str, Any], errors: list[str]) -> list[str]:
    value = row.get("tags")
    if value is None or value == "":
        return []
    if isinstance(value, str):
        value = value.split(";")
    elif not isinstance(value, list) or not all(isinstance(tag, str) for tag in value):
        errors.append("tags: must be text separated by ';' (CSV) or a list of strings")
        return []
    found = dict.fromkeys([tag.strip() for tag in value])  # in order, once each
    found.pop("", None)
    tags = list(found)
    text = "".join(tags)
    if "\x00" in text:
        errors.append("tags: must not contain NUL characters")
    elif len(text) > 64 and max(map(len, tags)) > 64:
        errors.append("tags: each tag at most 64 characters")
    return tags


def _attributes(
    row: dict[str, Any], names: list[str], errors: list[str]
) -> tuple[dict[str, Any], str | None]:
    """The attributes object, and its JSON text when it can go to the database as written."""
    value = row.get("attributes")
    text = value if isinstance(value, str) and not names else None
    if isinstance(value, str):
        try:
            value = _DECODER.decode(value) if value.strip() else {}
        except ValueError:  # JSONDecodeError included
            errors.append("attributes: not valid JSON")
            return {}, None
    elif names and isinstance(value, dict):
        value = dict(value)  # filled in below: the row's own object stays as read
    value = {} if value is None else value
    if not isinstance(value, dict):
        errors.append("attributes: must be a JSON object")
        return {}, None
    for name in names:
        cell = row.get(f"attr.{name}")
        if cell not in ("", None):
            value[name] = cell
    return value, text if value else None


@dataclass
class VersionInfo:
    """A profile version as the import needs it; its schema is compiled on first use."""

    id: uuid.UUID
    manufacturer_id: uuid.UUID
    schema: dict[str, Any]
    label: str = ""  # "<profile slug> v<number>", for the job's log
    validator: Draft202012Validator | None = None
    check: Check | None = None  # the plain-Python fast path, when the schema allows one
    compiled: bool = False

    def __post_init__(self) -> None:
        self.key = str(self.id)  # hashes faster than a UUID; the staging COPY's text too
        self.manufacturer_key = str(self.manufacturer_id)
        self.cells = f"{self.manufacturer_id}\t{self.id}"  # as the staging COPY takes them
        self.fingerprint = schema_fingerprint(self.schema)

    def coerce(self, attributes: dict[str, Any], names: list[str]) -> dict[str, Any]:
        """Cells of ``attr.<name>`` CSV columns are text: read the numbers and booleans the
        schema asks for."""
        properties = self.schema.get("properties", {}) if isinstance(self.schema, dict) else {}
        for name in names:
            wanted = properties.get(name, {}).get("type") if name in properties else None
            value = attributes.get(name)
            if isinstance(value, str) and wanted in ("integer", "number", "boolean"):
                attributes[name] = _typed(value, wanted)
        return attributes

    def errors(self, attributes: dict[str, Any]) -> list[str]:
        if not self.compiled:
            self.check, self.compiled = fast_check(self.schema), True
        if self.check is not None and self.check(attributes):
            return []
        if self.validator is None:
            self.validator = Draft202012Validator(self.schema)
        if self.validator.is_valid(attributes):
            return []
        found = sorted(self.validator.iter_errors(attributes), key=lambda e: list(map(str, e.path)))
        return [f"{'.'.join(['attributes', *map(str, e.path)])}: {e.message}" for e in found]


def schema_fingerprint(schema: Any) -> str:
    """The schema as canonical JSON: equal for equal schemas, and ``true`` is not ``1`` here
    (as it is for ``==`` in Python)."""
    return json.dumps(schema, sort_keys=True, separators=(",", ":"))


def _typed(value: str, wanted: str) -> Any:
    text = value.strip()
    try:
        if wanted == "integer":
            return int(text)
        if wanted == "number":
            return float(text)
    except ValueError:
        return value
    return {"true": True, "false": False}.get(text.lower(), value)


class ProfileIndex:
    """The profiles ``actor`` may use in ``organization``: its own and those shared down from
    its ancestors, by id or by slug (the nearest organization's slug wins)."""

    def __init__(self, *, actor: Actor, organization: Any) -> None:
        owners = [*ancestor_ids([organization.path]), organization.pk]
        profiles = (
            DeviceProfile.objects.for_actor(actor, "view")
            .filter(organization_id__in=owners)
            .order_by("organization__depth")
            .values_list("id", "slug", "organization_id")
        )
        self.by_id: dict[str, uuid.UUID] = {}
        self.by_slug: dict[str, uuid.UUID] = {}
        self.manufacturer: dict[uuid.UUID, uuid.UUID] = {}
        slugs: dict[uuid.UUID, str] = {}
        for profile_id, slug, owner in profiles:
            slugs[profile_id] = slug
            self.by_id[str(profile_id)] = profile_id
            self.by_slug[slug] = profile_id  # deeper organizations come later and win
            self.manufacturer[profile_id] = owner
        self.versions: dict[tuple[uuid.UUID, int], VersionInfo] = {}
        self.resolved: dict[tuple[Any, ...], tuple[VersionInfo | None, list[str]]] = {}
        self.latest: dict[uuid.UUID, int] = {}
        rows = ProfileVersion.objects.filter(profile_id__in=list(self.manufacturer)).values_list(
            "id", "profile_id", "number", "attributes_schema"
        )
        for version_id, profile_id, number, schema in rows:
            owner, label = self.manufacturer[profile_id], f"{slugs[profile_id]} v{number}"
            self.versions[(profile_id, number)] = VersionInfo(version_id, owner, schema, label)
            self.latest[profile_id] = max(number, self.latest.get(profile_id, 0))

    def resolve(self, values: dict[str, Any], errors: list[str]) -> VersionInfo | None:
        """The row's profile version, or None with the reason in ``errors``. Remembered per
        distinct (profile, profile_version) cell pair: most files name a handful."""
        profile, number = values.get("profile"), values.get("profile_version")
        key = (type(profile), profile, type(number), number)  # True is not 1 here
        try:
            found = self.resolved.get(key)
        except TypeError:  # a JSON list or object in the cell
            return self._resolve(values, errors)
        if found is None:
            problems: list[str] = []
            found = (self._resolve(values, problems), problems)
            if len(self.resolved) < 10_000:
                self.resolved[key] = found
        errors += found[1]
        return found[0]

    def _resolve(self, values: dict[str, Any], errors: list[str]) -> VersionInfo | None:
        key = values.get("profile")
        key = str(key).strip() if key is not None else ""
        if not key:
            errors.append("profile: required")
            return None
        profile_id = self.by_id.get(key.lower()) or self.by_slug.get(key)
        if profile_id is None:
            errors.append(f"profile: no profile {key!r} available in this organization")
            return None
        number = values.get("profile_version")
        if number is None or number == "":
            number = self.latest.get(profile_id, 0)
        try:
            version = self.versions.get((profile_id, int(str(number).strip())))
        except ValueError:
            errors.append("profile_version: must be a whole number")
            return None
        if version is None:
            errors.append(f"profile_version: profile {key!r} has no version {number}")
        return version


_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def _array(tags: list[str]) -> str:
    if not tags:
        return "{}"
    text = "".join(tags)  # the separator has quotes: look at the tags themselves
    if "\\" in text or '"' in text:
        tags = [tag.replace("\\", "\\\\").replace('"', '\\"') for tag in tags]
    return '{"' + '","'.join(tags) + '"}'


def _cell(value: str) -> str:
    if "\\" in value or "\t" in value or "\n" in value or "\r" in value:
        return value.translate(_COPY_ESCAPES)
    return value


_COPY_UNESCAPES = {"\\\\": "\\", "\\t": "\t", "\\n": "\n", "\\r": "\r"}


def _uncell(text: str) -> str:
    return re.sub(r"\\[\\tnr]", lambda found: _COPY_UNESCAPES[found.group()], text)


def _float(value: float | None) -> str:
    return "\\N" if value is None else repr(value)


def _no_constant(name: str) -> Any:
    raise ValueError(name)  # NaN and Infinity are not JSON, and PostgreSQL refuses them


_DECODER = json.JSONDecoder(parse_constant=_no_constant)


def _json_text(attributes: dict[str, Any], text: str | None, errors: list[str]) -> str:
    """The attributes as JSON text PostgreSQL accepts (no NaN, no NUL character)."""
    try:
        text = text if text is not None else json.dumps(attributes, allow_nan=False)
    except ValueError:
        errors.append("attributes: numbers must be finite")
        return ""
    if "\\u0000" in text:
        errors.append("attributes: text must not contain NUL characters")
    return text


def _attribute_names(keys: Any) -> list[str]:
    return [key[5:] for key in keys if key.startswith("attr.")]


class Validator:
    """Validates rows for one job: profiles resolved and schemas compiled once."""

    def __init__(
        self, *, actor: Actor, organization: Any, columns: list[str] | None = None
    ) -> None:
        """``columns``: the CSV header when every row has the same keys (else read per row)."""
        self.profiles = ProfileIndex(actor=actor, organization=organization)
        self.attribute_columns = _attribute_names(columns) if columns is not None else None
        self.organization_id = organization.pk
        self.seen: dict[str, set[str]] = {}  # manufacturer -> serials already in the file
        # Versions as they are now, when the writer found one changed: (key, fingerprint) ->
        # version. The writing thread's own: the reading thread keeps validating against the
        # schemas read at the start, and each chunk is checked again before it is written.
        self.changed: dict[tuple[str, str], VersionInfo] = {}

    def chunk(self, rows: list[Row]) -> Chunk:
        chunk = Chunk(validator=self, rows=[] if self.attribute_columns == [] else rows)
        good, versions = chunk.good, chunk.versions
        ids = iter(uuid7_hex_batch(2 * len(rows)))
        for row in rows:
            version, outcome = self.row(row, ids)
            if version is not None:
                good.append(outcome)
                versions[version.key] = version
            else:
                chunk.rejected.append((row.number, outcome))
        return chunk

    def row(self, row: Row, ids: Iterator[str]) -> tuple[VersionInfo | None, str]:
        """``(version, staging row as a COPY text line)`` or ``(None, "field: reason; ...")``."""
        if row.values is None:
            return None, row.problem
        values, errors = row.values, list[str]()
        serial = _text(values, "serial", errors, 128)
        if not serial and not errors:
            errors.append("serial: required")
        name = _text(values, "name", errors, 200)
        state = _text(values, "state", errors, 16) or DeviceState.ESCROW
        if state not in ALLOWED_STATES:
            errors.append(f"state: must be one of {', '.join(ALLOWED_STATES)}")
        tags = _tags(values, errors)
        latitude = _coordinate(values, "latitude", 90, errors)
        longitude = _coordinate(values, "longitude", 180, errors)
        names = self.attribute_columns
        if names is None:
            names = _attribute_names(values)
        attributes, text = _attributes(values, names, errors)
        version = self.profiles.resolve(values, errors)
        if version is not None and not (errors and any(e[:10] == "attributes" for e in errors)):
            if names:
                attributes = version.coerce(attributes, names)
            errors += version.errors(attributes)
        json_text = ""
        if version is not None and not errors:
            json_text = _json_text(attributes, text, errors)
        if errors:
            return None, "; ".join(errors)
        assert version is not None  # no error means the profile resolved
        seen = self.seen.setdefault(version.manufacturer_key, set())
        if serial in seen:
            return None, "serial: appears earlier in this file"
        seen.add(serial)
        cells = (
            next(ids),
            next(ids),
            str(row.number),
            version.cells,
            _cell(serial),
            _cell(name),
            state,
            _cell(_array(tags)),
            _cell(json_text),
            _float(latitude),
            _float(longitude),
        )
        return version, "\t".join(cells) + "\n"

    def as_now(self, version: VersionInfo, schema: Any) -> tuple[VersionInfo, bool]:
        """``version`` with its attributes schema as it is now, and whether that is news."""
        key = (version.key, schema_fingerprint(schema))
        if key in self.changed:
            return self.changed[key], False
        now = VersionInfo(version.id, version.manufacturer_id, schema, version.label)
        self.changed[key] = now
        return now, True

    def recheck(self, chunk: Chunk, current: dict[str, VersionInfo | None]) -> None:
        """Validate again the attributes of the chunk's good rows whose version is a key of
        ``current``, against the version as it is now (None: it is gone). Rows that pass keep
        their line (and ids) with the attributes as read now; the others become rejected rows.
        A serial stays "seen" either way: a later duplicate in the file is still rejected."""
        first = chunk.rows[0].number if chunk.rows else 0
        good: list[str] = []
        for line in chunk.good:
            cells = line.split("\t")  # a tab inside a cell is escaped as \t
            if cells[4] not in current:
                good.append(line)
                continue
            if chunk.rows:
                row = chunk.rows[int(cells[2]) - first]
            else:  # the line holds the attributes' JSON text as given
                row = Row(int(cells[2]), {"attributes": _uncell(cells[9])}, None)
            version = current[cells[4]]
            if version is None:
                label = chunk.versions[cells[4]].label
                chunk.rejected.append((row.number, f"profile_version: {label} no longer exists"))
                continue
            text, problem = self.attributes_as_now(row, version)
            if problem:
                chunk.rejected.append((row.number, problem))
            else:
                cells[9] = _cell(text)
                good.append("\t".join(cells))
        chunk.good = good
        chunk.rejected.sort()

    def attributes_as_now(self, row: Row, version: VersionInfo) -> tuple[str, str]:
        """The row's attributes as JSON text for ``version``, or the errors' message."""
        values, errors = row.values or {}, list[str]()
        names = self.attribute_columns
        if names is None:
            names = _attribute_names(values)
        attributes, text = _attributes(values, names, errors)
        if names:
            attributes = version.coerce(attributes, names)
        errors += version.errors(attributes)
        json_text = "" if errors else _json_text(attributes, text, errors)
        return json_text, "; ".join(errors)
