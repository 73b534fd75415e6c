"""What R-kvstore and Dds share: instances that upgrade over emulated time, tag filters, windows.

State advances lazily: nothing runs in the background; every read first ``settle``s the instance
against the emulated clock, so advancing the clock by an hour moves every upgrade along at once
and a restored snapshot continues where it stopped.

Example::

    inst = Instance(attrs={"InstanceStatus": "Normal", "EngineVersion": "5.0"}, ...)
    inst.schedule("7.0", now, upgrade_seconds=2, in_window=False)
    inst.settle(now + 1)   # status: the upgrading status
    inst.settle(now + 2)   # status: ready again, EngineVersion "7.0"
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from localcloud.openapi.errors import InvalidParameter

DAY = 86400
_HHMMZ = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)Z$")
_TAG = re.compile(r"^Tag\.(\d+)\.(Key|Value)$")


def minute_of_day(value: str) -> int:
    """Minutes since 00:00 UTC of a ``HH:MMZ`` maintenance bound."""
    match = _HHMMZ.match(value)
    if not match:
        raise ValueError(f"maintenance time must look like HH:MMZ, got {value!r}")
    return int(match.group(1)) * 60 + int(match.group(2))


def window_opening(now: float, start: str, end: str) -> float:
    """The first moment at or after ``now`` inside the daily window [start, end) (UTC, may wrap)."""
    start_min, end_min = minute_of_day(start), minute_of_day(end)
    day_start = now - now % DAY
    minute = (now - day_start) / 60
    if start_min == end_min:  # a whole-day window
        return now
    inside = start_min <= minute < end_min if start_min < end_min else minute >= start_min or minute < end_min
    if inside:
        return now
    opening = day_start + start_min * 60
    return opening if opening >= now else opening + DAY


def version_key(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split("."))


def tag_filters(params: Mapping[str, str]) -> list[tuple[str, str | None]]:
    """``Tag.N.Key``/``Tag.N.Value`` pairs from the request, in N order; a value without key is invalid."""
    pairs: dict[int, dict[str, str]] = {}
    for name, value in params.items():
        match = _TAG.match(name)
        if match:
            pairs.setdefault(int(match.group(1)), {})[match.group(2)] = value
    filters: list[tuple[str, str | None]] = []
    for index in sorted(pairs):
        pair = pairs[index]
        if not pair.get("Key"):
            raise InvalidParameter(f"Tag.{index}.Key")
        filters.append((pair["Key"], pair.get("Value") or None))
    return filters


def matches_tags(tags: Mapping[str, str], filters: Iterable[tuple[str, str | None]]) -> bool:
    return all(key in tags and (value is None or tags[key] == value) for key, value in filters)


def render_tags(tags: Mapping[str, str]) -> dict[str, list[dict[str, str]]]:
    return {"Tag": [{"Key": k, "Value": v} for k, v in tags.items()]}


@dataclass
class PendingUpgrade:
    target: str
    requested_at: float
    starts_at: float  # emulated epoch seconds: now, or the next maintenance window opening
    ends_at: float


@dataclass
class RunningTask:
    """A task other than an upgrade that keeps the instance busy (seed ``RunningTask``)."""

    name: str  # e.g. "Backup"; localcloud-only, never rendered
    ends_at: float | None  # emulated epoch seconds; None: it never ends


@dataclass
class Instance:
    """One instance: its API attributes plus the localcloud-only rules that drive it."""

    attrs: dict[str, Any]  # the API's own field names, as describe renders them
    tags: dict[str, str]
    status_key: str
    ready_status: str
    upgrading_status: str
    failed_status: str | None  # None: upgrades succeed; else the status a failed upgrade ends in
    pending: PendingUpgrade | None = None
    task: RunningTask | None = None
    history: list[dict[str, Any]] = field(default_factory=list)

    @property
    def status(self) -> str:
        return str(self.attrs[self.status_key])

    @property
    def version(self) -> str:
        return str(self.attrs["EngineVersion"])

    def busy_with(self, now: float) -> str | None:
        """What keeps the instance from taking another task at ``now``: an upgrade booked for the
        maintenance window or running, or a seeded running task; None when it is free."""
        self.settle(now)
        if self.pending is not None:
            return "upgrade booked" if now < self.pending.starts_at else "upgrade running"
        if self.task is not None:
            return f"task {self.task.name} running"
        return None

    def schedule(self, target: str, now: float, upgrade_seconds: float, in_window: bool) -> None:
        """Accept an upgrade to ``target``: now, or once the maintenance window opens."""
        starts = (
            window_opening(now, self.attrs["MaintainStartTime"], self.attrs["MaintainEndTime"])
            if in_window
            else now
        )
        self.pending = PendingUpgrade(target, now, starts, starts + upgrade_seconds)
        self.settle(now)

    def settle(self, now: float) -> None:
        """Move the pending upgrade and the running task along to ``now`` (emulated)."""
        if self.task is not None and self.task.ends_at is not None and now >= self.task.ends_at:
            self.task = None
        pending = self.pending
        if pending is None or now < pending.starts_at:
            return
        if now < pending.ends_at:
            self.attrs[self.status_key] = self.upgrading_status
            return
        outcome = "failed" if self.failed_status else "upgraded"
        self.history.append(
            {"from": self.version, "to": pending.target, "outcome": outcome, "at": pending.ends_at}
        )
        if self.failed_status:
            self.attrs[self.status_key] = self.failed_status
        else:
            self.attrs[self.status_key] = self.ready_status
            self.attrs["EngineVersion"] = pending.target
        self.pending = None

    def snapshot(self) -> dict[str, Any]:
        return {
            "attrs": self.attrs,
            "tags": self.tags,
            "pending": asdict(self.pending) if self.pending else None,
            "task": asdict(self.task) if self.task else None,
            "history": self.history,
        }

    def restore(self, state: Mapping[str, Any]) -> None:
        self.attrs = dict(state["attrs"])
        self.tags = dict(state.get("tags", {}))
        pending = state.get("pending")
        self.pending = PendingUpgrade(**pending) if pending else None
        task = state.get("task")
        self.task = RunningTask(**task) if task else None
        self.history = list(state.get("history", []))


def failed_status_for(seed_entry: Mapping[str, Any], default: str) -> str | None:
    """Seed ``FailUpgrade``: true -> ``default``; a string -> that status; absent/false -> None."""
    marker = seed_entry.get("FailUpgrade")
    if isinstance(marker, str) and marker:
        return marker
    return default if marker else None


def running_task_for(seed_entry: Mapping[str, Any], now: float) -> RunningTask | None:
    """Seed ``RunningTask`` (a name) and ``RunningTaskSeconds`` (absent: the task never ends)."""
    name = seed_entry.get("RunningTask")
    if not name:
        return None
    seconds = seed_entry.get("RunningTaskSeconds")
    return RunningTask(str(name), None if seconds is None else now + float(seconds))
