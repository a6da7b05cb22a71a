"""The MQTT broker's files, generated from the platform's PKI and registry (Mosquitto 2.0).

``write_config`` writes everything a broker needs into one directory (template:
``deploy/mosquitto/broker.conf.tmpl``): ``mosquitto.conf``, the root CA (``ca.pem``), a server
certificate signed by it (``server.pem``/``server.key``), the CAs' CRLs (``crl.pem``),
the device tokens' password file (``device.passwd``), the platform account (``platform.passwd``)
and the two ACLs. ``sync`` keeps the two files that follow the registry (``crl.pem``,
``device.passwd``) current; ``reload`` makes Mosquitto re-read them (SIGHUP). Identity on the
device listeners is the device UUID: certificate CN = username = client id.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import pwd
import shutil
import signal
import subprocess
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from .models_pki import BrokerState, DeviceToken
from .pki import authorities, certs, issuance, keys, revocation

logger = logging.getLogger(__name__)

DEPLOY = Path(settings.BASE_DIR) / "deploy" / "mosquitto"
TEMPLATE = DEPLOY / "broker.conf.tmpl"
PLUGIN_SOURCE = DEPLOY / "plugin" / "fleetops_device_acl.c"
PLUGIN_FILE = "fleetops_device_acl.so"
# Where the device listeners' ACL plugin reports what it refused (apps/devices/refusals.py).
REFUSALS_TOPIC = "fleetops/broker/refusals"
SYNC_STATE = "sync.json"
SERVER_RENEW_BEFORE = dt.timedelta(days=30)
# Room for the topic and MQTT 5 properties on top of the largest accepted payload.
PACKET_HEADROOM = 65_536

# DESIGN.md's topic table, one line per topic: what a device may publish and subscribe to.
DEVICE_WRITES = (
    "heartbeat",
    "telemetry",
    "events",
    "status",
    "config/reported",
    "commands/+/result",
    "ota/status",
)
DEVICE_READS = ("config/desired", "commands/+", "ota/job")


@dataclass(frozen=True)
class SyncState:
    """What the files in a broker directory were last generated from."""

    marker: str
    refresh_at: dt.datetime

    def current(self, marker: str, now: dt.datetime) -> bool:
        return self.marker == marker and now < self.refresh_at


def write_config(
    directory: str | os.PathLike[str],
    *,
    device_port: int,
    token_port: int,
    platform_port: int,
    platform_host: str,
    platform_username: str,
    platform_password: str,
    data_dir: str | os.PathLike[str],
    log_file: str | os.PathLike[str],
    pid_file: str | os.PathLike[str],
    device_host: str = "",
    platform_tls: bool = False,
    hostnames: Iterable[str] = (),
) -> Path:
    """Write every file of a broker into ``directory`` and return ``mosquitto.conf``'s path.

    ``device_host`` is the device listeners' bind address (empty: every interface),
    ``platform_host`` the platform listener's. The server certificate is kept while it is
    still valid for a month, signed by the current root and names every host; otherwise it is
    re-issued. Needs the database (the root CA, the CRLs, the device tokens)."""
    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    Path(data_dir).mkdir(parents=True, exist_ok=True)
    Path(log_file).parent.mkdir(parents=True, exist_ok=True)
    names = _hostnames([settings.MQTT_PUBLIC_HOST, *hostnames, platform_host, device_host])
    _atomic_write(folder / "ca.pem", authorities.root_certificate_pem())
    _server_certificate(folder, names)
    _atomic_write(folder / "device.acl", device_acl())
    _atomic_write(folder / "platform.acl", platform_acl(platform_username))
    password_line = f"{platform_username}:{keys.broker_password_hash(platform_password)}\n"
    _atomic_write(folder / "platform.passwd", password_line, mode=0o640)
    sync(folder, force=True)
    here = folder.resolve()
    plugin = build_plugin(here)
    values = {
        "directory": here,
        "device_port": device_port,
        "token_port": token_port,
        "platform_port": platform_port,
        "device_bind": device_host,
        "platform_host": platform_host,
        "platform_tls": _platform_tls(here) if platform_tls else "",
        "data_dir": Path(data_dir).resolve(),
        "log_file": Path(log_file).resolve(),
        "pid_file": Path(pid_file).resolve(),
        # Started as root, Mosquitto switches to this user: the one who owns its files.
        "user_line": f"user {pwd.getpwuid(os.geteuid()).pw_name}",
        "max_packet_size": settings.MQTT_MAX_MESSAGE_BYTES + PACKET_HEADROOM,
        "device_acl": _device_acl_lines(here, plugin),
        # Without the plugin, Mosquitto itself drops oversized payloads (without telling us).
        "size_limit_line": ""
        if plugin
        else f"message_size_limit {settings.MQTT_MAX_MESSAGE_BYTES}\n",
    }
    config = folder / "mosquitto.conf"
    _atomic_write(config, TEMPLATE.read_text().format(**values))
    return config


def build_plugin(folder: Path) -> Path | None:
    """Compile the device listeners' ACL plugin into ``folder`` (once per source change) and
    return its path; None, with a warning, when it cannot be built here (no C compiler or no
    Mosquitto headers, the ``mosquitto-dev`` package): the broker then falls back to the same
    ACL as a pattern file, which refuses exactly the same but reports nothing."""
    if not settings.MQTT_ACL_PLUGIN:
        return None
    target = folder / PLUGIN_FILE
    if target.exists() and target.stat().st_mtime >= PLUGIN_SOURCE.stat().st_mtime:
        return target
    compiler = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        logger.warning("no C compiler: the broker's refusals will not be reported")
        return None
    partial = target.with_suffix(".tmp")
    command = [compiler, "-shared", "-fPIC", "-O2", "-o", str(partial), str(PLUGIN_SOURCE)]
    built = subprocess.run(command, capture_output=True, text=True, check=False)
    if built.returncode != 0:
        logger.warning(
            "could not build the broker's ACL plugin (install mosquitto-dev?): %s",
            built.stderr.strip()[-500:],
        )
        return None
    partial.replace(target)
    return target


def _device_acl_lines(folder: Path, plugin: Path | None) -> str:
    if plugin is None:
        return f"acl_file {folder}/device.acl"
    return (
        f"plugin {plugin}\n"
        f"plugin_opt_report_topic {REFUSALS_TOPIC}\n"
        f"plugin_opt_max_payload {settings.MQTT_MAX_MESSAGE_BYTES}"
    )


def device_acl() -> str:
    """The pattern ACL of both device listeners: ``%u`` is the device UUID (the certificate's CN
    or the token's username), so every device is confined to ``devices/<its id>/``."""
    lines = [
        "# Generated by apps/devices/broker.py: each device reads and writes its own subtree.",
        "# Used only when the ACL plugin (deploy/mosquitto/plugin/) cannot be built here.",
    ]
    lines += [f"pattern write devices/%u/{topic}" for topic in DEVICE_WRITES]
    lines += [f"pattern read devices/%u/{topic}" for topic in DEVICE_READS]
    return "\n".join(lines) + "\n"


def platform_acl(username: str) -> str:
    """The platform account reads and writes every device's subtree (shared subscriptions are
    checked against the topic after ``$share/<group>/``) and may read the broker's metrics."""
    return (
        "# Generated by apps/devices/broker.py: the platform's services.\n"
        f"user {username}\n"
        "topic readwrite devices/#\n"
        "topic read $SYS/#\n"
        f"topic read {REFUSALS_TOPIC}\n"
    )


def sync(directory: str | os.PathLike[str], *, force: bool = False) -> bool:
    """Rewrite ``crl.pem`` and ``device.passwd`` in ``directory`` when the registry moved on
    (``BrokerState``), when the CRLs are past half their validity, or when a token expired.
    Returns whether the files were rewritten (then the broker must be reloaded)."""
    folder = Path(directory)
    now = timezone.now()
    marker = _marker()  # read first: a change committed while we write is seen next time
    saved = _read_state(folder)
    files = (folder / "crl.pem", folder / "device.passwd")
    if not force and saved and saved.current(marker, now) and all(p.exists() for p in files):
        return False
    crl_refresh = _write_crl(folder / "crl.pem", now)
    token_refresh = _write_passwords(folder / "device.passwd", now)
    refresh_at = min(crl_refresh, token_refresh or crl_refresh)
    state = {"marker": marker, "refresh_at": refresh_at.isoformat()}
    _atomic_write(folder / SYNC_STATE, json.dumps(state) + "\n")
    return True


def reload(pid_file: str | os.PathLike[str]) -> None:
    """Make the broker whose PID is in ``pid_file`` re-read its CRL, password files and ACLs.
    Sessions already connected stay; a revoked client is refused on its next connect."""
    pid = int(Path(pid_file).read_text().split()[0])
    os.kill(pid, signal.SIGHUP)


# --- internals ----------------------------------------------------------------------------------


def _marker() -> str:
    # The version alone could repeat after a database restore; its timestamp does not.
    row = BrokerState.objects.filter(pk=1).values_list("version", "updated_at").first()
    if row is None:
        return "0:"
    return f"{row[0]}:{row[1].isoformat()}"


def _read_state(folder: Path) -> SyncState | None:
    try:
        data = json.loads((folder / SYNC_STATE).read_text())
        return SyncState(data["marker"], dt.datetime.fromisoformat(data["refresh_at"]))
    except (OSError, ValueError, KeyError):
        return None


def _write_crl(path: Path, now: dt.datetime) -> dt.datetime:
    """Write the CRL bundle; return when it is half way through its validity."""
    # Mosquitto checks only the leaf's issuer (every intermediate needs a CRL here); the root's
    # own CRL makes the file usable where the whole chain is checked too (nginx ``ssl_crl``), and
    # keeps it loadable before the first intermediate exists.
    intermediates = revocation.crl_bundle()
    bundle = revocation.crl(authorities.root().authority) + intermediates
    _atomic_write(path, bundle)
    halfway = [
        crl.last_update_utc + (crl.next_update_utc - crl.last_update_utc) / 2
        for crl in _crls(bundle)
        if crl.next_update_utc is not None
    ]
    return min(halfway, default=now + dt.timedelta(days=settings.PKI_CRL_DAYS) / 2)


def _crls(bundle: str) -> Iterator[x509.CertificateRevocationList]:
    marker = "-----BEGIN X509 CRL-----"
    for part in bundle.split(marker)[1:]:
        yield x509.load_pem_x509_crl((marker + part).encode())


def _write_passwords(path: Path, now: dt.datetime) -> dt.datetime | None:
    """Write one line per device with a live token (its newest: Mosquitto keeps one password
    per username); return when the first of them expires."""
    live = (
        DeviceToken.objects.filter(revoked_at=None)
        .filter(Q(expires_at=None) | Q(expires_at__gt=now))
        .exclude(broker_hash="")
        .order_by("device_id", "-id")
        .distinct("device_id")
        .values_list("device_id", "broker_hash", "expires_at")
    )
    first_expiry: list[dt.datetime] = []

    def lines() -> Iterator[str]:
        yield "# Generated by apps/devices/broker.py: device UUID:token hash, one per device.\n"
        for device_id, broker_hash, expires_at in live.iterator(chunk_size=5000):
            if expires_at is not None and (not first_expiry or expires_at < first_expiry[0]):
                first_expiry[:] = [expires_at]
            yield f"{device_id}:{broker_hash}\n"

    _atomic_write(path, lines(), mode=0o640)
    return first_expiry[0] if first_expiry else None


def _server_certificate(folder: Path, hostnames: list[str]) -> None:
    chain_path, key_path = folder / "server.pem", folder / "server.key"
    if _server_certificate_good(chain_path, key_path, hostnames):
        return
    chain, key = issuance.server_certificate(hostnames)
    _atomic_write(key_path, key, mode=0o640)
    _atomic_write(chain_path, chain)


def _server_certificate_good(chain_path: Path, key_path: Path, hostnames: list[str]) -> bool:
    if not (chain_path.exists() and key_path.exists()):
        return False
    certificate = certs.load_pem(chain_path.read_bytes())
    root = authorities.root().certificate
    try:
        certificate.verify_directly_issued_by(root)
        san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except (ValueError, TypeError, InvalidSignature, x509.ExtensionNotFound):
        return False  # issued by a previous root, or not ours: re-issue
    if certificate.not_valid_after_utc - timezone.now() < SERVER_RENEW_BEFORE:
        return False
    names = san.value
    present = {str(value) for value in names.get_values_for_type(x509.DNSName)}
    present |= {str(value) for value in names.get_values_for_type(x509.IPAddress)}
    return set(hostnames) <= present


def _hostnames(candidates: Iterable[str]) -> list[str]:
    """The server certificate's names: the public host first (its CN), then local names."""
    names: list[str] = []
    for name in [*candidates, "localhost", "127.0.0.1"]:
        if name and name not in ("0.0.0.0", "::") and name not in names:  # noqa: S104
            names.append(name)
    return names


def _platform_tls(folder: Path) -> str:
    return f"certfile {folder}/server.pem\nkeyfile {folder}/server.key\ntls_version tlsv1.2\n"


def _atomic_write(path: Path, content: str | Iterable[str], *, mode: int = 0o644) -> None:
    """Write to a temporary file next to ``path`` and rename it over: the broker, reloading at
    any moment, reads either the old file or the new one, never half of one."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        if isinstance(content, str):
            handle.write(content)
        else:
            handle.writelines(content)
        handle.flush()
        os.fsync(handle.fileno())
    os.chmod(temporary, mode)
    os.replace(temporary, path)
