"""The agent stays copyable: no Django, three dependencies, runnable as ``python -m agent``."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from .support import REPOSITORY

AGENT = REPOSITORY / "agent"


def imported_roots(path: Path) -> set[str]:
    roots = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            roots |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
    return roots


def test_the_agent_imports_only_the_standard_library_and_its_three_dependencies() -> None:
    third_party = set()
    for path in AGENT.glob("*.py"):
        third_party |= imported_roots(path) - set(sys.stdlib_module_names) - {"agent"}
    assert third_party == {"aiomqtt", "cryptography"}  # paho-mqtt comes through aiomqtt
    requirements = [
        line.split(">")[0].split("=")[0].strip()
        for line in (AGENT / "requirements.txt").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert requirements == ["paho-mqtt", "aiomqtt", "cryptography"]


def test_loading_every_module_of_the_agent_loads_no_django() -> None:
    probe = (
        "import sys, agent.cli, agent.simulate, agent.device, agent.enroll;"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'django'))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=REPOSITORY, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"


def test_the_command_line_explains_itself_and_exits_2_on_bad_usage() -> None:
    ran = subprocess.run(
        [sys.executable, "-m", "agent", "run"], cwd=REPOSITORY, capture_output=True, text=True
    )
    assert ran.returncode == 2
    assert "--state-dir" in ran.stderr


def test_running_before_enrolling_exits_5(tmp_path: Path) -> None:
    ran = subprocess.run(
        [sys.executable, "-m", "agent", "run", "--state-dir", str(tmp_path / "nothing")],
        cwd=REPOSITORY,
        capture_output=True,
        text=True,
    )
    assert ran.returncode == 5
    assert "run `enroll` first" in ran.stderr
