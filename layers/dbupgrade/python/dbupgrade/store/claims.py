"""An instance's claim: the one accepted upgrade it may have at a time, whatever asked for it.

A request takes the claim (atomically, ``Store.claim``) right before its upgrade call; the write
that records the call's outcome accepts it (``submitted``: kept until the upgrade is over) or
releases it (refused, failed). The tracker's final verdict on the upgrade (completed, failed,
stuck) releases it in the same write. Every other request for the instance meanwhile is answered
``in_progress`` pointing at the claimed upgrade (same target) or refused (another target), with no
upgrade call. A claim expires after ``claim_seconds``, so a holder that died never blocks the
instance for good.

Claims are per account (``claim_identity``): an instance ID names one instance within its account,
and a member's instance is claimed under ``<account>:<instance>``; the own account's under the
instance ID alone, as before accounts existed (claims taken then stay readable), whether or not the
request named the own account (the use case passes None for it).
"""

from __future__ import annotations

import json
from typing import Any, Literal, NamedTuple

# The longest a maintenance-window booking waits for its window: the window is daily.
WINDOW_WAIT_SECONDS = 24 * 3600
# A claim outlives its upgrade's stuck timeout by this factor (the tracker releases it as soon as
# it sees the upgrade over; the expiry only frees an instance whose tracking stopped).
CLAIM_MARGIN_FACTOR = 2


def claim_seconds(stuck_after_seconds: float, effective: str | None) -> int:
    """How long a claim lives: past the engine's stuck timeout with a margin, plus a day for a
    booking (the upgrade starts only when the window opens).

    >>> claim_seconds(7200, "immediate"), claim_seconds(7200, "maintenance_window")
    (14400, 100800)
    """
    seconds = stuck_after_seconds * CLAIM_MARGIN_FACTOR
    if effective == "maintenance_window":
        seconds += WINDOW_WAIT_SECONDS
    return int(seconds)


def claim_identity(instance_id: str, account_id: str | None) -> str:
    """What the claim is stored under: the instance, within its account when one is named.

    >>> claim_identity("r-bp1x", None), claim_identity("r-bp1x", "2000000000000002")
    ('r-bp1x', '2000000000000002:r-bp1x')
    """
    return f"{account_id}:{instance_id}" if account_id else instance_id


class Claim(NamedTuple):
    """An instance's upgrade claim: who holds it, for which target, and whether the API accepted it yet.

    A NamedTuple, not a frozen dataclass, for the functions' cold start (bench/NOTES.md): immutable,
    compared and hashed by value; stored as the JSON object of its fields (``to_json``)."""

    instance_id: str
    to_version: str
    owner: str  # the holder's idempotency key (its redeliveries may retake it), else a random token
    source: str | None = None
    ticket_id: str | None = None
    rollout_id: str | None = None
    effective: str | None = None
    at: str | None = None  # when it was taken
    request_id: str | None = None  # the upgrade API's RequestId, once accepted
    state: Literal["submitting", "accepted"] = "submitting"
    account_id: str | None = None  # the instance's account; None: the own account

    @property
    def identity(self) -> str:
        return claim_identity(self.instance_id, self.account_id)

    def accepted(self, request_id: str | None) -> Claim:
        return self._replace(request_id=request_id, state="accepted")

    def pointer(self) -> dict[str, Any]:
        """What an outcome says of the upgrade it waits for (``Outcome.upgrade``)."""
        fields = self._asdict()
        fields.pop("owner")
        fields.pop("instance_id")
        return fields

    def to_json(self) -> str:
        return json.dumps(self._asdict(), sort_keys=True)

    @classmethod
    def from_json(cls, raw: str | bytes) -> Claim:
        data = json.loads(raw)
        return cls(**{k: v for k, v in data.items() if k in cls._fields})


class ClaimChange(NamedTuple):
    """What the finishing write does to the instance's claim."""

    action: Literal["accept", "release", "release_version"]
    key: str  # the owner (accept, release) or the target version (release_version: the tracker)
    claim: Claim | None = None  # accept: the claim as accepted
    seconds: int = 0  # accept: its new time to live
    account_id: str | None = None  # the claim's account (``claim_identity``); None: the own account
