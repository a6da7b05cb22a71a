"""Crash-safe file writes.

Every file the agent keeps is replaced in one step: the new content goes to a temporary file in
the same directory, is flushed to the disk (``fsync``), then renamed over the old name, and the
directory itself is fsync'ed so that the rename survives a power cut. A reader therefore sees the
old file or the new one, never half of one. Temporary files start with ``.`` and end in ``.tmp``;
whatever a crash leaves behind is ignored and cleaned up (``remove_stale_temporaries``)."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
from pathlib import Path
from typing import Any

TEMPORARY_SUFFIX = ".tmp"


def write_atomic(path: Path, data: bytes, *, mode: int = 0o644, fsync: bool = True) -> None:
    """Replace ``path`` with ``data`` atomically (``mode`` applies from the first byte on, so a
    private key is never readable by others, not even briefly).

    ``fsync=False`` keeps the atomicity against a crash of the process (the kernel still has the
    data) but not against a power cut; the simulator uses it because ten thousand virtual
    devices share one disk."""
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(6)}{TEMPORARY_SUFFIX}")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        os.fchmod(descriptor, mode)  # os.open's mode is filtered by the umask
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
            handle.flush()
            if fsync:
                os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()
        raise
    if fsync:
        fsync_directory(path.parent)


def write_json(path: Path, value: Any, *, mode: int = 0o644, fsync: bool = True) -> None:
    text = json.dumps(value, indent=2, sort_keys=True) + "\n"
    write_atomic(path, text.encode(), mode=mode, fsync=fsync)


def read_json(path: Path) -> Any:
    return json.loads(path.read_text())


def fsync_directory(directory: Path) -> None:
    """Make a rename or a new file in ``directory`` durable."""
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def make_private_directory(directory: Path) -> Path:
    """``directory`` (and parents), readable by this user only."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    return directory


def remove_stale_temporaries(directory: Path) -> int:
    """Delete what interrupted writes left in ``directory``; how many files were removed."""
    removed = 0
    for leftover in directory.glob(f".*{TEMPORARY_SUFFIX}"):
        with contextlib.suppress(FileNotFoundError):
            leftover.unlink()
            removed += 1
    return removed
