"""A PostgreSQL server of a test's own, from the ``pgserver`` wheel's binaries (the ones the
embedded server runs), on a free port: a test may stop and restart it without touching the
shared server. ``copy_database`` fills it with a copy of the test database (pg_dump | psql).

PostgreSQL refuses to run as root: as root, the server runs as the ``pgserver`` system user
(created by ``deploy/embedded.py``), in a directory it owns. No tests here.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from pgserver._commands import POSTGRES_BIN_PATH  # type: ignore[import-untyped]

from tests.broker_support import free_port

BIN = Path(POSTGRES_BIN_PATH)


def _user() -> str | None:
    if os.geteuid() != 0:
        return None
    from pgserver.utils import ensure_user_exists  # type: ignore[import-untyped]

    ensure_user_exists("pgserver")
    return "pgserver"


@dataclass
class PrivatePostgres:
    directory: Path
    port: int
    user: str | None

    @classmethod
    def create(cls) -> PrivatePostgres:
        directory = Path(tempfile.mkdtemp(prefix="fleetops-pg-"))
        user = _user()
        if user:
            shutil.chown(directory, user, user)
        server = cls(directory, free_port(), user)
        server._run(
            "initdb",
            "-D",
            str(server.data),
            "-U",
            "postgres",
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C",
        )
        return server

    @property
    def data(self) -> Path:
        return self.directory / "data"

    def url(self, database: str) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{database}"

    def start(self) -> None:
        options = f"-h 127.0.0.1 -p {self.port} -k {self.directory} -c fsync=off"
        log = str(self.directory / "postgres.log")
        self._run(
            "pg_ctl", "-D", str(self.data), "-w", "-t", "60", "-o", options, "-l", log, "start"
        )

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    def destroy(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop", check=False)
        shutil.rmtree(self.directory, ignore_errors=True)

    def copy_database(self, *, source_url: str, name: str) -> None:
        """Create ``name`` here as a copy (schema and rows) of the database at ``source_url``."""
        self._run("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", name)
        dump = subprocess.Popen(
            [str(BIN / "pg_dump"), "--no-owner", "--no-privileges", "-d", source_url],
            stdout=subprocess.PIPE,
        )
        subprocess.run(
            [str(BIN / "psql"), "-q", "-v", "ON_ERROR_STOP=1", "-d", self.url(name)],
            stdin=dump.stdout,
            stdout=subprocess.DEVNULL,
            check=True,
        )
        assert dump.wait() == 0, "pg_dump failed"

    def _run(self, program: str, *args: str, check: bool = True) -> None:
        subprocess.run(
            [str(BIN / program), *args],
            user=self.user,
            cwd=self.directory,
            check=check,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
