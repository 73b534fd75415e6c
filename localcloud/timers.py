"""FC Timer triggers on the emulated clock: cron schedules that invoke functions as FC does.

Seed key (one entry per Timer trigger)::

    "timers": [{"function": "service/function", "name": "nightly", "cron": "CRON_TZ=Asia/Shanghai 0 30 2 * * *",
                "payload": "{...}", "enable": true}]

``cron`` is FC's syntax: six fields ``second minute hour day-of-month month day-of-week`` (``*``
``?`` ``,`` ``-`` ``/``, ``JAN``-``DEC``, ``SUN``-``SAT``, day-of-week 0 = Sunday), in UTC unless
prefixed with ``CRON_TZ=<zone>``; or ``@every 1h30m`` (counted from when localcloud starts), or
``@hourly`` / ``@daily`` / ``@weekly`` / ``@monthly`` / ``@yearly``. When day-of-month and
day-of-week are both restricted, either may match (as in cron).

A due timer invokes its function asynchronously with FC's timer event ``{"triggerTime",
"triggerName", "payload"}`` and records an ``fc``/``InvokeFunction`` call (``invocation_type``
Async, ``trigger`` its name). Timers fire as real time passes and at once when
``POST /_localcloud/clock`` moves the clock past them. Firings missed by a clock jump coalesce into
one invocation for the latest of them (``coalesced`` counts the rest), as a scheduler does after
downtime: advancing a day does not run a one-minute timer 1,440 times. Disabled timers
(``"enable": false``) are listed but never fire.

Example::

    cloud = Cloud({**seed, "timers": [{"function": "dbupgrade/tracker", "name": "tick", "cron": "@every 1m"}]})
    cloud.clock.advance(60)
    cloud.timers.fire_due()
"""

from __future__ import annotations

import json
import math
import re
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone, tzinfo
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from localcloud.fc import exceptions as fc_exceptions

MONTH_NAMES = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
DAY_NAMES = ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")
DESCRIPTORS = {
    "@yearly": "0 0 0 1 1 *",
    "@annually": "0 0 0 1 1 *",
    "@monthly": "0 0 0 1 * *",
    "@weekly": "0 0 0 * * 0",
    "@daily": "0 0 0 * * *",
    "@midnight": "0 0 0 * * *",
    "@hourly": "0 0 * * * *",
}
DURATION_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
SEARCH_YEARS = 5  # a schedule with no firing this far ahead (Feb 30) never fires
MAX_COUNTED_MISSES = 10_000  # coalesced firings are counted up to this many per clock jump
IDLE_POLL_SECONDS = 1.0  # the firing thread also notices in-process clock advances this often


@dataclass(frozen=True)
class _Field:
    name: str
    low: int
    high: int
    names: tuple[str, ...] = ()
    name_base: int = 0  # the number of the first name


_FIELDS = (
    _Field("second", 0, 59),
    _Field("minute", 0, 59),
    _Field("hour", 0, 23),
    _Field("day-of-month", 1, 31),
    _Field("month", 1, 12, MONTH_NAMES, 1),
    _Field("day-of-week", 0, 6, DAY_NAMES, 0),
)


def _value(spec: _Field, text: str) -> int:
    upper = text.upper()
    if upper in spec.names:
        return spec.names.index(upper) + spec.name_base
    if not text.isdigit():
        raise ValueError(f"{spec.name}: {text!r} is not a number{' or a name' if spec.names else ''}")
    number = int(text)
    if not spec.low <= number <= spec.high:
        raise ValueError(f"{spec.name}: {number} is outside {spec.low}-{spec.high}")
    return number


def _parse_field(spec: _Field, text: str) -> tuple[frozenset[int], bool]:
    """The values a field allows, and whether it is unrestricted (``*`` / ``?``)."""
    values: set[int] = set()
    for part in text.split(","):
        base, _, step_text = part.partition("/")
        step = 1
        if step_text:
            if not step_text.isdigit() or int(step_text) == 0:
                raise ValueError(f"{spec.name}: bad step in {part!r}")
            step = int(step_text)
        if base in ("*", "?"):
            low, high = spec.low, spec.high
        elif "-" in base:
            first, _, last = base.partition("-")
            low, high = _value(spec, first), _value(spec, last)
            if low > high:
                raise ValueError(f"{spec.name}: range {base!r} runs backwards")
        else:
            low = _value(spec, base)
            high = spec.high if step_text else low
        values.update(range(low, high + 1, step))
    return frozenset(values), text in ("*", "?")


def _duration_seconds(text: str) -> float:
    """A Go duration (``90s``, ``1h30m``, ``1.5h``), as ``@every`` takes; at least one second."""
    compact = text.replace(" ", "")
    if not compact or _DURATION_PART.sub("", compact):
        raise ValueError(f"@every: {text!r} is not a duration like 30s, 5m or 1h30m")
    seconds = sum(float(n) * DURATION_UNITS[u] for n, u in _DURATION_PART.findall(compact))
    if seconds < 1:
        raise ValueError(f"@every: {text!r} is shorter than one second")
    return float(math.floor(seconds))


@dataclass(frozen=True)
class CronSchedule:
    """A parsed FC cron expression; ``next_after(t)`` is the first firing strictly after ``t``.

    >>> s = CronSchedule.parse("CRON_TZ=Asia/Shanghai 0 30 2 * * *")
    >>> datetime.fromtimestamp(s.next_after(0), timezone.utc).isoformat()
    '1970-01-01T18:30:00+00:00'
    """

    expression: str
    zone: tzinfo
    fields: tuple[frozenset[int], ...] = ()
    day_of_month_any: bool = True
    day_of_week_any: bool = True
    every_seconds: float | None = None

    @classmethod
    def parse(cls, expression: str) -> CronSchedule:
        text = expression.strip()
        zone: tzinfo = timezone.utc
        if text.startswith(("CRON_TZ=", "TZ=")):
            zone_name, _, text = text.partition("=")[2].partition(" ")
            try:
                zone = ZoneInfo(zone_name)
            except (ZoneInfoNotFoundError, ValueError):
                raise ValueError(f"unknown time zone {zone_name!r} in {expression!r}") from None
            text = text.strip()
        if text.startswith("@every"):
            return cls(expression, zone, every_seconds=_duration_seconds(text[len("@every") :]))
        text = DESCRIPTORS.get(text, text)
        parts = text.split()
        if len(parts) == 5:  # day-of-week is optional in FC's syntax
            parts.append("?")
        if len(parts) != 6:
            raise ValueError(
                f"{expression!r}: a cron expression has 6 fields (second minute hour day-of-month month "
                "day-of-week), or is @every <duration>"
            )
        parsed = [_parse_field(spec, part) for spec, part in zip(_FIELDS, parts, strict=True)]
        return cls(
            expression,
            zone,
            tuple(values for values, _ in parsed),
            day_of_month_any=parsed[3][1],
            day_of_week_any=parsed[5][1],
        )

    def _day_matches(self, day: datetime) -> bool:
        in_month = day.day in self.fields[3]
        in_week = (day.isoweekday() % 7) in self.fields[5]
        if self.day_of_month_any or self.day_of_week_any:
            return in_month and in_week
        return in_month or in_week

    def next_after(self, t: float, anchor: float = 0.0) -> float:
        """Epoch seconds of the first firing after ``t`` (``@every`` counts from ``anchor``)."""
        if self.every_seconds is not None:
            periods = math.floor((t - anchor) / self.every_seconds) + 1
            return anchor + max(periods, 1) * self.every_seconds
        seconds, minutes, hours, _, months, _ = self.fields
        wall = datetime.fromtimestamp(math.floor(t) + 1, self.zone).replace(tzinfo=None)
        horizon = wall.year + SEARCH_YEARS
        while wall.year <= horizon:
            if wall.month not in months:
                wall = (wall.replace(day=1, hour=0, minute=0, second=0) + timedelta(days=32)).replace(day=1)
            elif not self._day_matches(wall):
                wall = wall.replace(hour=0, minute=0, second=0) + timedelta(days=1)
            elif wall.hour not in hours:
                wall = wall.replace(minute=0, second=0) + timedelta(hours=1)
            elif wall.minute not in minutes:
                wall = wall.replace(second=0) + timedelta(minutes=1)
            elif wall.second not in seconds:
                wall += timedelta(seconds=1)
            else:
                at = wall.replace(tzinfo=self.zone).timestamp()
                if at > t:  # a wall time skipped by a DST change maps back before t
                    return at
                wall += timedelta(seconds=1)
        raise ValueError(f"{self.expression!r} never fires")


def _utc(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Timer:
    service: str
    function: str
    name: str
    schedule: CronSchedule
    payload: str
    enabled: bool
    anchor: float  # when the trigger was created: @every counts from here
    next_at: float
    fired: int = 0
    coalesced: int = 0
    last_fired_at: float | None = None
    last_request_id: str | None = None

    def describe(self) -> dict[str, Any]:
        return {
            "function": f"{self.service}/{self.function}",
            "name": self.name,
            "cron": self.schedule.expression,
            "enable": self.enabled,
            "next": _utc(self.next_at),
            "next_epoch": self.next_at,
            "fired": self.fired,
            "coalesced": self.coalesced,
            "last_fired": None if self.last_fired_at is None else _utc(self.last_fired_at),
            "last_request_id": self.last_request_id,
        }


def _parse_timer(raw: dict[str, Any], cloud: Any, now: float) -> Timer:
    known = {"function", "name", "cron", "payload", "enable"}
    unknown = set(raw) - known
    if unknown:
        raise ValueError(f"timers[{raw.get('name')!r}]: unknown keys {sorted(unknown)}")
    missing = {"function", "name", "cron"} - set(raw)
    if missing:
        raise ValueError(f"timers[{raw.get('name')!r}]: missing {sorted(missing)}")
    service, sep, function = str(raw["function"]).partition("/")
    if not sep:
        raise ValueError(f"timers[{raw['name']!r}]: function must be 'service/function'")
    try:
        cloud.fc.function(service, function)
    except fc_exceptions.FcApiError:
        raise ValueError(f"timers[{raw['name']!r}]: no function {raw['function']!r} in the seed") from None
    try:
        schedule = CronSchedule.parse(str(raw["cron"]))
    except ValueError as exc:
        raise ValueError(f"timers[{raw['name']!r}]: {exc}") from None
    payload = raw.get("payload", "")
    if not isinstance(payload, str):  # FC hands the payload over as the configured string
        payload = json.dumps(payload)
    return Timer(
        service,
        function,
        str(raw["name"]),
        schedule,
        payload,
        bool(raw.get("enable", True)),
        now,
        schedule.next_after(now, now),
    )


class Timers:
    """The seed's timers; fires due ones on a background thread and on ``fire_due()``."""

    def __init__(self, cloud: Any, timers: list[Timer]) -> None:
        self.cloud = cloud
        self.timers = timers
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._closed = False
        self._thread: threading.Thread | None = None
        if any(t.enabled for t in timers):
            self._thread = threading.Thread(target=self._run, name="localcloud-timers", daemon=True)
            self._thread.start()

    @classmethod
    def from_seed(cls, seed: dict[str, Any], cloud: Any) -> Timers:
        now = cloud.clock.now()
        return cls(cloud, [_parse_timer(raw, cloud, now) for raw in seed.get("timers", [])])

    def describe(self) -> list[dict[str, Any]]:
        with self._lock:
            return [t.describe() for t in self.timers]

    def fire_due(self) -> list[str]:
        """Invoke every enabled timer whose firing time has passed; returns the invocation ids.

        Nothing fires before FC knows localcloud's URL (the server is not listening yet): the
        functions' environment needs it. Such firings are not lost; they fire once it is known.
        """
        fired = self._fire_due()
        # The firing thread recomputes its sleep (a clock advance moved every timer's distance).
        # Only callers from outside wake it: the thread waking itself would never sleep at all.
        self._wake.set()
        return fired

    def _fire_due(self) -> list[str]:
        if self.cloud.fc.url is None:
            return []
        fired = []
        with self._lock:
            now = self.cloud.clock.now()
            for timer in self.timers:
                if timer.enabled and timer.next_at <= now:
                    fired.append(self._fire(timer, now))
        return fired

    def _fire(self, timer: Timer, now: float) -> str:
        due, missed = timer.next_at, 0
        following = timer.schedule.next_after(due, timer.anchor)
        while following <= now and missed < MAX_COUNTED_MISSES:
            due, missed = following, missed + 1
            following = timer.schedule.next_after(due, timer.anchor)
        if following <= now:
            following = timer.schedule.next_after(now, timer.anchor)
        event = {"triggerTime": _utc(due), "triggerName": timer.name, "payload": timer.payload}
        fc = self.cloud.fc
        spec = fc.function(timer.service, timer.function)
        request_id: str = fc.submit_async(spec, json.dumps(event).encode())
        params = {
            "service": timer.service,
            "function": timer.function,
            "invocation_type": "Async",
            "trigger": timer.name,
            "triggerTime": event["triggerTime"],
        }
        fc.record_call("InvokeFunction", params, 202, None, request_id)
        timer.next_at = following
        timer.fired += 1
        timer.coalesced += missed
        timer.last_fired_at, timer.last_request_id = due, request_id
        return request_id

    def _run(self) -> None:
        while not self._closed:
            self._wake.clear()  # before firing: a wake-up from now on is for the sleep below
            try:
                self._fire_due()
            except fc_exceptions.FcApiError:  # FC is closing: nothing left to invoke
                return
            with self._lock:
                due = [t.next_at for t in self.timers if t.enabled]
            wait = min(due, default=math.inf) - self.cloud.clock.now()
            self._wake.wait(max(0.01, min(wait, IDLE_POLL_SECONDS)))

    def close(self) -> None:
        self._closed = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
