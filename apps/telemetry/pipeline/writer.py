"""Writing a batch's rows: one binary COPY, de-duplicated only when it has to be.

Fast path: one ``COPY ... FROM STDIN (FORMAT BINARY)`` straight into the partitioned table,
inside a savepoint. Almost every batch holds only new rows (duplicates come from redeliveries
after a crash or a lost acknowledgement), so this is the common case and costs no more than the
COPY itself. When the table already holds one of the rows, the COPY fails with a unique
violation: the savepoint is rolled back and the batch takes the de-duplicating path: a COPY
into a per-connection temporary staging table (``ON COMMIT DELETE ROWS``), then one
``INSERT ... SELECT ... ON CONFLICT DO NOTHING RETURNING`` the keys of the rows actually
stored, so that only those go on to latest values, alerting and events.

jsonb columns travel as dicts, encoded by orjson inside psycopg's binary COPY (measured faster
than handing COPY pre-encoded bytes: ``bench/telemetry_writer.py``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from django.db import IntegrityError, connection, transaction
from psycopg import errors
from psycopg.types.json import set_json_dumps

__all__ = ["EVENTS", "SAMPLES", "Table", "write"]

Row = tuple[Any, ...]


@dataclass(frozen=True)
class Table:
    name: str
    columns: tuple[str, ...]
    types: tuple[str, ...]
    key: tuple[int, ...]  # positions of the primary key's columns in a row

    @property
    def staging(self) -> str:
        return f"{self.name}_staging"


SAMPLES = Table(
    name="telemetry_sample",
    columns=("device_id", "ts", "kind", "boot", "seq", "idx", "received_at", "metrics", "extra"),
    types=("uuid", "timestamptz", "int2", "int8", "int8", "int2", "timestamptz", "jsonb", "jsonb"),
    key=(0, 1, 2, 3, 4, 5),
)
EVENTS = Table(
    name="telemetry_device_event",
    columns=(
        "device_id",
        "ts",
        "boot",
        "seq",
        "received_at",
        "type",
        "severity",
        "message",
        "data",
    ),
    types=("uuid", "timestamptz", "int8", "int8", "timestamptz", "text", "text", "text", "jsonb"),
    key=(0, 1, 2, 3),
)


def _copy(cursor: Any, target: str, table: Table, rows: Sequence[Row]) -> None:
    """One binary COPY of ``rows`` (dicts for the jsonb columns, encoded by orjson). Errors
    come out as Django's database errors, like every other statement's."""
    set_json_dumps(orjson.dumps, cursor)
    statement = f"COPY {target} ({', '.join(table.columns)}) FROM STDIN (FORMAT BINARY)"
    with connection.wrap_database_errors, cursor.copy(statement) as copy:
        copy.set_types(list(table.types))
        write_row = copy.write_row
        for row in rows:
            write_row(row)


def write(table: Table, rows: Sequence[Row], *, deduplicate: bool = False) -> Sequence[Row]:
    """Store ``rows`` (unique among themselves) in ``table``; returns the ones that were not
    there yet, in their original order. ``deduplicate`` skips the fast path (the bench)."""
    if not rows:
        return []
    if not deduplicate:
        try:
            with transaction.atomic(), connection.cursor() as cursor:
                _copy(cursor.cursor, table.name, table, rows)
            return rows
        except IntegrityError as error:
            if not isinstance(error.__cause__, errors.UniqueViolation):
                raise
            # some rows are already stored: the savepoint is rolled back
    return [rows[position] for position in _deduplicated(table, rows)]


def _deduplicated(table: Table, rows: Sequence[Row]) -> list[int]:
    """The positions in ``rows`` of the rows stored now. The staging table numbers the rows
    as COPY writes them (an identity column), so the statement returns small integers rather
    than the keys (decoding thousands of uuids and timestamps costs more than the insert)."""
    columns = ", ".join(table.columns)
    keys = ", ".join(table.columns[position] for position in table.key)
    with connection.cursor() as cursor:
        cursor.execute(
            f"CREATE TEMPORARY TABLE IF NOT EXISTS {table.staging} (LIKE {table.name}, "
            "position bigint GENERATED ALWAYS AS IDENTITY) ON COMMIT DELETE ROWS"
        )
        _copy(cursor.cursor, table.staging, table, rows)
        # table and column names are this module's constants; no value is interpolated
        cursor.execute(
            f"WITH stored AS (INSERT INTO {table.name} ({columns}) "  # noqa: S608
            f"SELECT {columns} FROM {table.staging} ON CONFLICT DO NOTHING RETURNING {keys}) "
            f"SELECT s.position - (SELECT min(position) FROM {table.staging}) "
            f"FROM {table.staging} s JOIN stored USING ({keys})"
        )
        positions = sorted(row[0] for row in cursor.fetchall())
        # emptied at commit anyway; now too, for a caller that stores again in this transaction
        cursor.execute(f"TRUNCATE {table.staging}")
    return positions
