"""Reading import files: UTF-8 check, CSV / JSON array / NDJSON detection and streaming parsers.

Parsers stream: a million-row file is never held in memory. ``inspect`` reads the whole file
once before anything is written, so a structural problem (not UTF-8, not CSV or JSON, no
``serial`` column, no rows, too many rows) fails the job with one clear message.
"""

from __future__ import annotations

import codecs
import csv
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, NamedTuple

from django.conf import settings

JSON_SUFFIXES = (".json", ".ndjson", ".jsonl")
READ_BLOCK = 1 << 20


class ImportFileError(Exception):
    """The file as a whole is unusable; the job fails with this message and writes nothing."""


def max_rows() -> int:
    return int(getattr(settings, "DEVICE_IMPORT_MAX_ROWS", 1_000_000))


def max_bytes() -> int:
    return int(getattr(settings, "DEVICE_IMPORT_MAX_BYTES", 512 * 1024 * 1024))


def inspect(path: Path, name: str) -> tuple[str, int]:
    """Check the whole file before any write; returns its format and row count."""
    check_utf8(path)
    fmt = file_format(path, name)
    limit, total = max_rows(), 0
    if fmt == "csv":
        total = _csv_count(path, limit)
    else:
        for _ in read_rows(path, fmt):
            total += 1
            if total > limit:
                break
    if total > limit:
        raise ImportFileError(f"File has more than {limit} rows.")
    if total == 0:
        raise ImportFileError("File has no rows.")
    return fmt, total


# --- reading -----------------------------------------------------------------------------------


class Row(NamedTuple):  # a tuple: a million of them are built per file
    number: int
    values: dict[str, Any] | None  # None: not an object (JSON) or a ragged line (CSV)
    raw: Any  # the cells (CSV) or the element (JSON), for the rejected-rows file
    problem: str = ""


def check_utf8(path: Path) -> None:
    """Raise ``ImportFileError`` naming the first byte (counted from 1) that is not UTF-8."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    offset = 0
    with path.open("rb") as stream:
        while True:
            block = stream.read(READ_BLOCK)
            pending = len(decoder.getstate()[0])
            try:
                decoder.decode(block, final=not block)
            except UnicodeDecodeError as error:
                raise ImportFileError(
                    f"File is not UTF-8 (byte {offset - pending + error.start + 1})."
                ) from None
            if not block:
                return
            offset += len(block)


def file_format(path: Path, name: str) -> str:
    """``csv``, ``json`` (an array) or ``ndjson`` (one object per line)."""
    with path.open("r", encoding="utf-8-sig") as stream:
        head = stream.read(4096).lstrip()
    suffix = Path(name).suffix.lower()
    if suffix in JSON_SUFFIXES or (suffix != ".csv" and head[:1] in ("[", "{")):
        if head.startswith("["):
            return "json"
        if head.startswith("{"):
            return "ndjson"
        raise ImportFileError("File is not valid JSON: expected an array or one object per line.")
    if suffix not in (".csv", ".txt", ""):
        raise ImportFileError("File is neither CSV nor JSON.")
    return "csv"


def read_rows(path: Path, fmt: str) -> Iterator[Row]:
    """Every row of the file, in order; ``ImportFileError`` for a structural problem."""
    with path.open("r", encoding="utf-8-sig", newline="") as stream:
        if fmt == "csv":
            yield from _csv_rows(stream)
        elif fmt == "ndjson":
            yield from _ndjson_rows(stream)
        else:
            yield from _json_rows(stream)


def csv_header(path: Path) -> list[str]:
    with path.open("r", encoding="utf-8-sig", newline="") as stream:
        return [cell.strip() for cell in next(csv.reader(stream), [])]


def _csv_count(path: Path, limit: int) -> int:
    """The CSV rows (up to ``limit + 1``), with the structural checks of ``_csv_rows`` (the rows
    unbuilt)."""
    total = 0
    with path.open("r", encoding="utf-8-sig", newline="") as stream:
        reader = csv.reader(stream)
        try:
            _csv_header(reader)
            for cells in reader:
                if cells and cells != [""]:
                    total += 1
                    if total > limit:
                        return total
            return total
        except csv.Error as error:
            raise ImportFileError(
                f"File is not valid CSV (line {reader.line_num}): {error}."
            ) from None


def _csv_header(reader: Any) -> list[str]:
    header = [cell.strip() for cell in next(reader, [])]
    if not any(header):
        raise ImportFileError("File is empty.")
    if "serial" not in header:
        raise ImportFileError("Missing column: serial.")
    return header


def _csv_rows(stream: IO[str]) -> Iterator[Row]:
    reader = csv.reader(stream)
    try:
        header = _csv_header(reader)
        number = 0
        for cells in reader:
            if not cells or cells == [""]:
                continue
            number += 1
            if len(cells) != len(header):
                problem = f"row: has {len(cells)} cells, the header has {len(header)}"
                yield Row(number, None, cells, problem)
            else:
                yield Row(number, dict(zip(header, cells, strict=True)), cells)
    except csv.Error as error:
        raise ImportFileError(f"File is not valid CSV (line {reader.line_num}): {error}.") from None


def _element(number: int, element: Any) -> Row:
    if isinstance(element, dict):
        return Row(number, element, element)
    return Row(number, None, element, "row: must be a JSON object")


def _ndjson_rows(stream: IO[str]) -> Iterator[Row]:
    number = 0
    for line_number, line in enumerate(stream, start=1):
        if not line.strip():
            continue
        try:
            element = json.loads(line)
        except json.JSONDecodeError as error:
            raise ImportFileError(
                f"File is not valid JSON (line {line_number}): {error.msg}."
            ) from None
        number += 1
        yield _element(number, element)


def _json_rows(stream: IO[str]) -> Iterator[Row]:
    """Stream the elements of a top-level array without loading the whole file."""
    decoder = json.JSONDecoder()
    reader = _Buffer(stream)
    reader.skip_space()
    if not reader.take("["):
        raise ImportFileError("File is not valid JSON: expected an array.")
    number = 0
    reader.skip_space()
    if reader.take("]"):
        return reader.expect_end()
    while True:
        number += 1
        yield _element(number, reader.decode(decoder, number))
        reader.skip_space()
        if reader.take("]"):
            return reader.expect_end()
        if not reader.take(","):
            raise ImportFileError(
                f"File is not valid JSON: expected ',' or ']' after element {number}."
            )
        reader.skip_space()


@dataclass
class _Buffer:
    stream: IO[str]
    text: str = ""
    position: int = 0
    eof: bool = False

    def fill(self) -> bool:
        if self.eof:
            return False
        block = self.stream.read(READ_BLOCK)
        self.text = self.text[self.position :] + block
        self.position = 0
        self.eof = not block
        return bool(block)

    def skip_space(self) -> None:
        while True:
            while self.position < len(self.text) and self.text[self.position] in " \t\r\n":
                self.position += 1
            if self.position < len(self.text) or not self.fill():
                return

    def take(self, char: str) -> bool:
        if self.position >= len(self.text):
            self.fill()
        if self.text[self.position : self.position + 1] == char:
            self.position += 1
            return True
        return False

    def decode(self, decoder: json.JSONDecoder, number: int) -> Any:
        while True:
            try:
                element, self.position = decoder.raw_decode(self.text, self.position)
                return element
            except json.JSONDecodeError as error:
                if not self.fill():
                    raise ImportFileError(
                        f"File is not valid JSON (element {number}): {error.msg}."
                    ) from None

    def expect_end(self) -> None:
        self.skip_space()
        if self.position < len(self.text):
            raise ImportFileError("File is not valid JSON: extra data after the array.")
