"""What the device reports: synthetic sensor metrics (for demos and the simulator) and vitals.

Replace ``SyntheticSensors`` with your real sensors; ``host_vitals`` reads what any Linux device
has. Both return flat ``{name: number}`` dictionaries, which is what the platform's telemetry
pipeline stores best."""

from __future__ import annotations

import math
import os
import random
import shutil
import time
from pathlib import Path


class SyntheticSensors:
    """Plausible, slowly drifting readings: a temperature that follows a daily curve plus noise,
    a battery that drains and recharges, a radio signal that wanders. Deterministic per seed, so
    a simulated device tells the same story every run."""

    def __init__(self, seed: int | str = 0) -> None:
        self.rng = random.Random(str(seed))
        self.base_temperature = self.rng.uniform(18.0, 26.0)
        self.battery = self.rng.uniform(40.0, 100.0)
        self.rssi = self.rng.uniform(-85.0, -55.0)
        self.charging = False

    def read(self) -> dict[str, float]:
        hour_angle = (time.time() % 86_400) / 86_400 * 2 * math.pi
        self._drain()
        self.rssi = min(-40.0, max(-110.0, self.rssi + self.rng.gauss(0, 1.5)))
        return {
            "temperature_c": round(
                self.base_temperature + 3 * math.sin(hour_angle) + self.rng.gauss(0, 0.2), 2
            ),
            "humidity_pct": round(min(100.0, max(0.0, 45 + self.rng.gauss(0, 3))), 1),
            "battery_pct": round(self.battery, 1),
            "rssi_dbm": round(self.rssi, 1),
            "cpu_pct": round(min(100.0, abs(self.rng.gauss(12, 6))), 1),
        }

    def vitals(self) -> dict[str, float]:
        """Heartbeat vitals of a simulated device (a real one reports ``host_vitals``)."""
        return {"battery_pct": round(self.battery, 1), "rssi_dbm": round(self.rssi, 1)}

    def _drain(self) -> None:
        if self.charging:
            self.battery = min(100.0, self.battery + self.rng.uniform(0.5, 2.0))
            self.charging = self.battery < 100.0
        else:
            self.battery = max(0.0, self.battery - self.rng.uniform(0.0, 0.3))
            self.charging = self.battery < 15.0


def host_vitals(state_directory: Path) -> dict[str, float]:
    """Load, memory and free space of the machine the agent runs on (Linux; zeros elsewhere)."""
    try:
        load = os.getloadavg()[0]
    except OSError:
        load = 0.0
    disk = shutil.disk_usage(state_directory)
    return {
        "load_1m": round(load, 2),
        "memory_available_mb": _available_memory_mb(),
        "disk_free_mb": round(disk.free / 1_048_576, 1),
    }


def _available_memory_mb() -> float:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return 0.0
