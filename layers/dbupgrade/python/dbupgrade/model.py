"""The data that flows through one upgrade: request in, outcome out.

Every trigger parses its event into ``UpgradeRequest`` objects and hands them to
``dbupgrade.usecase.Upgrader.run``, which always returns exactly one ``Outcome`` (never raises for
bad input or cloud errors). The outcome is what gets recorded, notified and shaped into the reply.
"""

from __future__ import annotations

from dataclasses import dataclass
from dataclasses import field as dataclass_field
from typing import Any, Literal, NamedTuple, get_args

from dbupgrade import clock

Source = Literal["timer", "webhook", "queue", "cli"]
Effective = Literal["immediate", "maintenance_window"]
Status = Literal[
    "submitted",
    "noop",
    "in_progress",
    "rejected",
    "deferred",
    "failed",
    # Set by the tracker once it has described a submitted upgrade (README "Completion tracking").
    "scheduled",
    "completed",
    "stuck",
    # Set by a rollout for the targets it never released (error budget spent, or cancelled).
    "halted",
    # A booked (maintenance-window) upgrade moved or cancelled by an operator (``dbupgrade.booked``).
    "rescheduled",
    "cancelled",
    # The backup gate (DBUPGRADE_BACKUP) started a backup: the tracker submits the upgrade once it
    # finished. In flight: the instance's claim is held meanwhile (dbupgrade.backup).
    "awaiting_backup",
]
STATUSES: tuple[str, ...] = get_args(Status)

SOURCES: tuple[str, ...] = ("timer", "webhook", "queue", "cli")
EFFECTIVE_VALUES: tuple[str, ...] = ("immediate", "maintenance_window")
# Outcomes that mean "the instance is, or will be, at the target": a retry must not resubmit.
SUCCESS_STATUSES: frozenset[str] = frozenset(
    {"submitted", "noop", "in_progress", "scheduled", "rescheduled", "completed", "awaiting_backup"}
)
# Outcomes of an upgrade that is under way (the tracker follows them); every other status is final.
IN_FLIGHT_STATUSES: frozenset[str] = frozenset(
    {"submitted", "in_progress", "scheduled", "rescheduled", "awaiting_backup"}
)
# Verdicts that settle a request for good: a redelivery of the same request gets this very verdict
# back (replayed) for the idempotency window. ``halted`` settles a rollout's release: the rollout
# stopped it, and a resume releases the target again under a new delivery id. Every other verdict
# (a refusal, a deferral, a failure) is re-evaluated on the next delivery: the sender may have
# fixed the cause since, the instance may be free, the throttling over.
FINAL_STATUSES: frozenset[str] = frozenset({"submitted", "noop", "in_progress", "halted", "awaiting_backup"})


def utc_now() -> str:
    """The current time as outcomes write it (RFC 3339 UTC, seconds)."""
    return clock.utcnow().strftime("%Y-%m-%dT%H:%M:%SZ")


class InvalidRequest(ValueError):
    """Bad input, naming the field and (where finite) the allowed values.

    >>> str(InvalidRequest("effective", "must be one of", allowed=["immediate", "maintenance_window"]))
    'effective: must be one of: immediate, maintenance_window'
    """

    def __init__(self, field: str, message: str, allowed: list[str] | tuple[str, ...] | None = None):
        self.field = field
        self.reason = message
        self.allowed = list(allowed) if allowed is not None else None
        text = f"{field}: {message}"
        if self.allowed:
            text += ": " + ", ".join(self.allowed)
        super().__init__(text)


class UpgradeRequest(NamedTuple):
    """One instance to upgrade, as every source (timer, webhook, queue, CLI) asks for it.

    Immutable, compared and hashed field by field, changed only through ``with_``: a ``NamedTuple``
    is all of that without the ~1 ms ``@dataclass(frozen=True)`` spends at import generating its
    methods on every cold start (bench/NOTES.md).
    """

    instance_id: str
    target_version: str
    engine: str | None = None  # "redis" | "mongodb"; inferred from the ID prefix when None
    region: str | None = None  # default: DBUPGRADE_REGION, else the FC context's region
    effective: Effective | None = None  # default: immediate (or what the window policy decides)
    ticket_id: str | None = None
    rollout_id: str | None = None
    dry_run: bool = False
    source: Source = "cli"
    correlation_id: str | None = None  # FC request id, webhook-id, MNS message id...
    delivery_id: str | None = None  # joins the idempotency key: webhook-id / message id / ticket
    # The account that owns the instance; None: the own account (DBUPGRADE_ACCOUNT_ID). Any other is
    # reached through its member role (dbupgrade.accounts).
    account_id: str | None = None

    def with_(self, **changes: Any) -> UpgradeRequest:
        return self._replace(**changes)


@dataclass
class Outcome:
    """What became of one request: its status, the versions, and what the notification and runbook say."""

    status: Status
    instance_id: str
    to_version: str
    engine: str | None = None
    region: str | None = None
    from_version: str | None = None
    effective: str | None = None
    request_id: str | None = None  # the upgrade API's RequestId (submitted), or the describe's
    ticket_id: str | None = None
    rollout_id: str | None = None
    source: str | None = None
    correlation_id: str | None = None
    reason: str | None = None  # short machine-readable reason, e.g. "already_at_target", "not_ready"
    code: str | None = None  # the cloud API's error code, or "InvalidRequest"
    message: str | None = None  # human-readable, never a stack trace or a secret
    field: str | None = None  # the bad field, for rejected input
    dry_run: bool = False
    duration_seconds: float | None = None  # completed: from the upgrade's start to its observed end
    # in_progress / refused because of an accepted upgrade not finished yet: that upgrade (its
    # RequestId, ticket, rollout, source, target, effective and when it was accepted).
    upgrade: dict[str, Any] | None = None
    # A reply replayed by idempotency (never recorded or notified again): the original's ``at``.
    replay_of: str | None = None
    account_id: str | None = None  # the instance's account, when the request named one
    # A multi-hop upgrade (``dbupgrade.hops``): this is hop ``hop`` of ``hops`` along ``path`` (the
    # versions from the start to ``to_version``, e.g. ["4.4", "5.0", "6.0", "7.0"]); the hop's own
    # version is ``path[hop]``. None for a one-hop upgrade.
    hop: int | None = None
    hops: int | None = None
    path: list[str] | None = None
    # A booked upgrade's switch time as an operator moved it (``rescheduled``): when it starts.
    switch_at: str | None = None
    # The upgrade's task as DescribeHistoryTasks last showed it (the tracker keeps it on the
    # followed outcome, not notified): percent done, estimated seconds left, the step running, when read.
    progress: float | None = None
    remaining_seconds: int | None = None
    current_step: str | None = None
    task_status: str | None = None
    progress_at: str | None = None
    backup_id: str | None = None  # the backup the gate took (or found) before the upgrade
    rollback: str | None = None  # failed / stuck / halted: what rolling back means (dbupgrade.runbook)
    readiness: dict[str, Any] | None = None  # dry runs and refusals: the readiness report (never notified)
    at: str = dataclass_field(default_factory=utc_now)

    @property
    def event(self) -> str:
        return f"upgrade.{self.status}"

    @property
    def ok(self) -> bool:
        return self.status in SUCCESS_STATUSES

    @property
    def final(self) -> bool:
        """Whether this verdict settles its request (``FINAL_STATUSES``): only these are replayed."""
        return self.status in FINAL_STATUSES and not self.dry_run

    def to_dict(self) -> dict[str, Any]:
        # Every field is a scalar or ``upgrade``, a flat dict never mutated after it is built: a
        # shallow copy is the whole of ``asdict`` without its deep copy (three calls a warm webhook
        # request; ~0.3 ms of it under cProfile).
        return dict(self.__dict__)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Outcome:
        fields = cls.__dataclass_fields__
        if data.keys() <= fields.keys():  # as written by this version: nothing to leave out
            return cls(**data)
        return cls(**{k: v for k, v in data.items() if k in fields})

    def notification(self) -> dict[str, Any]:
        """Notification message v1 (README "Notifications"); absent fields are null.

        ``upgrade``, ``replay_of``, ``account_id``, ``backup_id`` and ``rollback`` were added to v1
        (additive: a consumer that ignores unknown fields is unaffected). A replay is never notified,
        so ``replay_of`` is null in messages and set only in replies. ``hop``, ``hops`` and ``path``
        (a multi-hop upgrade) and ``switch_at`` (a rescheduled booking) were added the same way;
        progress and readiness are never notified."""
        return {
            "version": 1,
            "event": self.event,
            "request_id": self.request_id,
            "instance_id": self.instance_id,
            "engine": self.engine,
            "region": self.region,
            "from_version": self.from_version,
            "to_version": self.to_version,
            "effective": self.effective,
            "ticket_id": self.ticket_id,
            "rollout_id": self.rollout_id,
            "source": self.source,
            "correlation_id": self.correlation_id,
            "reason": self.reason,
            "code": self.code,
            "message": self.message,
            "duration_seconds": self.duration_seconds,
            "upgrade": self.upgrade,
            "replay_of": self.replay_of,
            "account_id": self.account_id,
            "hop": self.hop,
            "hops": self.hops,
            "path": self.path,
            "switch_at": self.switch_at,
            "backup_id": self.backup_id,
            "rollback": self.rollback,
            "at": self.at,
        }

    @property
    def hop_version(self) -> str:
        """The version this outcome's upgrade call goes to: its hop's, else ``to_version``."""
        if self.path and self.hop is not None and 0 < self.hop < len(self.path):
            return self.path[self.hop]
        return self.to_version
