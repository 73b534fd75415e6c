"""A rollout as data: its immutable spec (targets, waves, limits) and the state of each target.

Target states, in order of life::

    pending --release--> dispatched --outcome--> submitted --describe/tracker--> completed | failed | stuck
    pending <-- failed for now (retries exhausted), released fewer than MAX_RELEASES times --/
    pending <-- the instance busy with another task, released fewer than MAX_BUSY_RELEASES times --/
    deferred <-- still busy after MAX_BUSY_RELEASES releases: not an error; an operator re-runs it --/
    pending <-- failed on configuration (a wrong key, a missing permission): the rollout halts --/
                                    \\--outcome--> noop | rejected | failed | deferred          (terminal)
    pending --halt/cancel--> halted                                                        (terminal)
    dispatched --halt/cancel before the message ran--> halted                             (terminal)

``submitted`` (also the use case's ``in_progress``) is terminal only once the upgrade really
finished: the tracker recorded ``completed``/``failed``/``stuck`` for it, or a describe shows the
instance ready at the target version (or in a failure status).
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field
from typing import Any

from dbupgrade import clock
from dbupgrade.model import InvalidRequest

# A message whose upgrade kept failing transiently (throttling, 5xx, network) within its invocation
# is released again on the next round - the tracker's minute is the back-off - this many times in all.
MAX_RELEASES = 3
# An instance busy with another task (a backup, a spec change) is "try again later", never an error:
# it is released again on later rounds, this many times in all (about as many minutes), then ends
# ``deferred`` so the rollout can still end. Such a task takes minutes (assumption: no source gives
# the length of a backup or a spec change; ten tracker minutes cover the common ones).
MAX_BUSY_RELEASES = 10
TERMINAL_STATES = frozenset({"completed", "noop", "rejected", "failed", "stuck", "deferred", "halted"})
# What spends the error budget: the target was meant to move and did not. ``deferred`` does not: the
# target was not tried for good (busy past its releases, or outside DBUPGRADE_WINDOW) - re-run it.
ERROR_STATES = frozenset({"rejected", "failed", "stuck"})
IN_FLIGHT_STATES = frozenset({"dispatched", "submitted"})
STATES = ("pending", "dispatched", "submitted", *sorted(TERMINAL_STATES))
# The use case's (and the tracker's) outcome status -> the target's state in the rollout.
OUTCOME_STATES = {
    "submitted": "submitted",
    "in_progress": "submitted",
    "scheduled": "submitted",  # a maintenance-window upgrade the tracker follows
    "awaiting_backup": "submitted",  # the tracker submits it once its backup finished
    "noop": "noop",
    "rejected": "rejected",
    "failed": "failed",
    "deferred": "deferred",
    "completed": "completed",
    "stuck": "stuck",
    "halted": "halted",
    "rescheduled": "submitted",  # an operator moved the booking (dbupgrade.booked): still to come
    "cancelled": "halted",  # an operator cancelled the booking: it never ran
}
ROLLOUT_STATUSES = ("running", "halted", "cancelled", "completed")
ROLLOUT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
TARGET_FIELDS = ("instance_id", "target_version", "engine", "region", "effective", "ticket_id", "account_id")
# Why a location's unreleased targets were halted while the rest of the rollout went on.
LOCATION_BUDGET = "location_budget"  # more errors there than --max-errors-per-location
LOCATION_CONFIGURATION = "configuration"  # its account's role could not be assumed (or its policy refuses)


def location_of(target: dict[str, Any]) -> str:
    """A target's location, ``<account>/<region>`` (``-`` for the own account or the default region):
    per-location limits and the status's grouping count by it.

    >>> location_of({"account_id": "2000000000000002", "region": "cn-hangzhou"}), location_of({})
    ('2000000000000002/cn-hangzhou', '-/-')
    """
    return f"{target.get('account_id') or '-'}/{target.get('region') or '-'}"


def parse_waves(text: str, total: int) -> tuple[int, ...]:
    """Cumulative wave sizes: ``"1,10%,100%"`` over 200 targets is ``(1, 20, 200)``.

    A count or a percentage of all targets (rounded up). As written, each size must be larger than
    the one before (``10%,5%`` or ``5,3`` is a mistake, whatever the fleet's size); sizes past the
    fleet collapse into one wave, and a last wave short of every target is followed by one that
    takes the rest, so no target is left unreleased.

    >>> parse_waves("1,10%,100%", 200)
    (1, 20, 200)
    >>> parse_waves("5,10,50%", 4)
    (4,)
    """
    sizes: list[int] = []
    last_written: dict[bool, float] = {}  # the last count (False) and percentage (True) written
    for raw in text.split(","):
        item = raw.strip()
        try:
            if item.endswith("%"):
                percent = float(item[:-1])
                if not 0 < percent <= 100:
                    raise ValueError
                size = math.ceil(total * percent / 100)
            else:
                size = int(item)
                if size < 1:
                    raise ValueError
        except ValueError:
            raise InvalidRequest(
                "waves", f"{item!r} is not a positive count or a percentage up to 100% (e.g. 1,10%,100%)"
            ) from None
        is_percent = item.endswith("%")
        value = percent if is_percent else float(size)
        if value <= last_written.get(is_percent, 0) or (sizes and size < sizes[-1]):
            raise InvalidRequest(
                "waves",
                f"sizes are cumulative: each must be larger than the one before ({text!r}; e.g. 1,10%,100%)",
            )
        last_written[is_percent] = value
        size = min(size, total)
        if not sizes or size > sizes[-1]:
            sizes.append(size)
    if not sizes or sizes[-1] < total:
        sizes.append(total)
    return tuple(sizes)


@dataclass(frozen=True)
class RolloutSpec:
    """What the operator asked for; never changes after ``start``."""

    rollout_id: str
    targets: tuple[dict[str, Any], ...]  # request fields (TARGET_FIELDS), in release order
    waves: tuple[int, ...]  # cumulative sizes; the last is len(targets)
    wave_text: str
    max_in_flight: int | None = None  # None: a whole wave at once
    max_errors: int | None = None  # None: never halt on errors
    window: str | None = None  # waves are released only inside it
    created_at: float = field(default_factory=clock.now)
    max_in_flight_per_location: int | None = None  # None: only max_in_flight
    max_errors_per_location: int | None = None  # None: a location halts only with the rollout
    # Locations whose fleet could not even be listed (the member's role missing or untrusting):
    # {"account_id", "region", "code", "message"}; they have no targets, the status reports them.
    unreachable: tuple[dict[str, Any], ...] = ()
    # A campaign (``dbupgrade.rollouts.campaign``): the date it must be done by (RFC 3339 UTC), and
    # the waves by tag ({"key", "values", "waves": [{"value", "targets", "wave"}], "excluded", ...}).
    apply_by: str | None = None
    wave_tags: dict[str, Any] | None = None

    def wave_of(self, index: int) -> int:
        """1-based wave number of the target at ``index``."""
        return next(number for number, size in enumerate(self.waves, start=1) if index < size)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["targets"] = [dict(t) for t in self.targets]
        data["waves"] = list(self.waves)
        data["unreachable"] = [dict(u) for u in self.unreachable]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RolloutSpec:
        return cls(
            rollout_id=data["rollout_id"],
            targets=tuple(data["targets"]),
            waves=tuple(data["waves"]),
            wave_text=data["wave_text"],
            max_in_flight=data.get("max_in_flight"),
            max_errors=data.get("max_errors"),
            window=data.get("window"),
            created_at=data["created_at"],
            max_in_flight_per_location=data.get("max_in_flight_per_location"),
            max_errors_per_location=data.get("max_errors_per_location"),
            unreachable=tuple(data.get("unreachable") or ()),
            apply_by=data.get("apply_by"),
            wave_tags=data.get("wave_tags"),
        )


@dataclass
class TargetState:
    """Where one target stands; ``tick`` fields number the ``advance`` rounds (ordering, not time)."""

    instance_id: str
    wave: int
    state: str = "pending"
    released_tick: int | None = None
    done_tick: int | None = None
    dispatched_at: float | None = None
    releases: int = 0  # messages published for it: a resume or a transient failure releases it again
    delivery_id: str | None = None  # of the latest release: the outcome of that message is this target's
    finished_at: float | None = None
    from_version: str | None = None
    request_id: str | None = None
    backup_id: str | None = None  # the gate's backup: what a rollback restores
    code: str | None = None
    reason: str | None = None
    message: str | None = None

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL_STATES

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TargetState:
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})


@dataclass
class RolloutMeta:
    """The rollout's mutable head: status, released wave, error budget baseline, timestamps."""

    status: str = "running"
    wave: int = 0  # the highest wave released so far (0: none yet)
    tick: int = 0
    reason: str | None = None  # why it halted or was cancelled
    halt_reason: str | None = None  # the halted outcomes' reason: "error_budget" or "configuration"
    error_baseline: int = 0  # errors before the last resume do not count against the budget again
    started_at: float = field(default_factory=clock.now)
    finished_at: float | None = None
    summary_published: bool = False
    # Locations halted on their own (``location_of`` -> why), the rest of the rollout going on.
    halted_locations: dict[str, str] = field(default_factory=dict)
    # Per location, the errors before the last resume (not counted against its budget again).
    location_baselines: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RolloutMeta:
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})
