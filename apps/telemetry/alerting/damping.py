"""Where one rule's condition stands for one device, and how an observation moves it. Pure.

An observation is (time, truth): a sample's value tested by the rule at the sample's own
timestamp, an event, or a periodic check at "now". ``Tracker.observe`` applies one:

- true: the condition breaches since the first true observation of the current run
  (``breaching_since``); once it has been true for ``open_after`` the alert opens.
- false: once an open condition has been false for ``clear_after`` (``clearing_since``) it
  clears; a true observation in between starts the clearing wait again. Flapping is damped on
  both sides.
- ``suppress_open`` (the device is in maintenance): a true observation never starts or advances
  a breach, but keeps an already-open condition from clearing; false observations clear as
  usual. So maintenance opens nothing and an alert that was already open resolves only once the
  data really is clear.
- an observation not newer than the last one applied (``last_ts``) is late and changes nothing:
  late data never opens or clears an alert.

Each observation that opens or clears is recorded as an ``Episode`` (opened at, cleared at), so
a batch holding a whole excursion (a device uploading an hour of history) still yields it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

__all__ = ["Episode", "Tracker"]


@dataclass(slots=True)
class Episode:
    """One breach: when it opened (and on what value), and when it cleared (None: still on)."""

    opened_at: datetime | None  # None: it was open before these observations
    value: Any = None
    since: datetime | None = None
    cleared_at: datetime | None = None
    cleared_value: Any = None


@dataclass(slots=True)
class Tracker:
    """The condition row's state plus what the observations applied to it did."""

    breaching: bool = False
    breaching_since: datetime | None = None
    clearing_since: datetime | None = None
    last_ts: datetime | None = None
    last_value: Any = None
    episodes: list[Episode] = field(default_factory=list)
    applied: int = 0

    def observe(
        self,
        ts: datetime,
        truth: bool,
        value: Any,
        *,
        open_after: timedelta,
        clear_after: timedelta,
        suppress_open: bool = False,
    ) -> None:
        if self.last_ts is not None and ts <= self.last_ts:
            return  # late (or the same observation again): never moves the condition
        self.last_ts = ts
        self.last_value = value
        self.applied += 1
        if truth:
            self._true(ts, value, open_after, suppress_open)
        else:
            self._false(ts, value, clear_after)

    def _true(self, ts: datetime, value: Any, open_after: timedelta, suppress: bool) -> None:
        self.clearing_since = None
        if self.breaching:
            return
        if suppress:
            self.breaching_since = None
            return
        if self.breaching_since is None:
            self.breaching_since = ts
        if ts - self.breaching_since >= open_after:
            self.breaching = True
            self.episodes.append(Episode(opened_at=ts, value=value, since=self.breaching_since))

    def _false(self, ts: datetime, value: Any, clear_after: timedelta) -> None:
        self.breaching_since = None
        if not self.breaching:
            return
        if self.clearing_since is None:
            self.clearing_since = ts
        if ts - self.clearing_since >= clear_after:
            self.breaching = False
            self.clearing_since = None
            if not self.episodes:  # the breach began before these observations
                self.episodes.append(Episode(opened_at=None))
            self.episodes[-1].cleared_at = ts
            self.episodes[-1].cleared_value = value
