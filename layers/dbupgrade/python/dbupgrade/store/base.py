"""What every store offers (``Store``), and the pieces both backends share."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import Any, Protocol

from dbupgrade.errors import StoreUnavailable
from dbupgrade.model import IN_FLIGHT_STATUSES, Outcome
from dbupgrade.store.claims import Claim, ClaimChange
from dbupgrade.store.keys import HISTORY_LENGTH

# An entry written with an outcome waits this long for its own writer's publish before a drain may
# take it, so a drain never publishes an entry its writer is publishing right now: twice one publish
# with its retries (notify: 3 attempts, a 5 s connection timeout, 0.1-0.3 s pauses). The writer
# makes it due at once when its publish fails; only a writer that died (or lost the store) right
# after the write leaves it this long.
OUTBOX_GRACE_SECONDS = 30


class Locked(RuntimeError):
    """The lock is held by someone else (and waiting for it, if asked, did not get it)."""


@dataclass(frozen=True)
class Finished:
    """What ``Store.finish`` did."""

    written: bool  # False: the tracker's followed outcome changed meanwhile, nothing was written
    entry: str | None = None  # the outbox entry written with it (for ``outbox_done``/``outbox_due``)


class Store(Protocol):
    redis: Any  # the redis-py client for the idempotency layer and the rate limiter, or None

    def finish(
        self,
        outcome: Outcome,
        *,
        message: dict[str, Any] | None = None,
        claim: ClaimChange | None = None,
        follows: Outcome | None = None,
    ) -> Finished: ...
    def record(self, outcome: Outcome) -> None: ...
    def latest(self, instance_id: str) -> Outcome | None: ...
    def latest_many(self, instance_ids: list[str]) -> dict[str, Outcome]: ...
    def history(self, instance_id: str, limit: int = HISTORY_LENGTH) -> list[Outcome]: ...
    def following(self, instance_id: str) -> Outcome | None: ...
    def following_many(self, instance_ids: list[str]) -> dict[str, Outcome]: ...
    def followed(self) -> Iterator[Outcome]: ...
    def set_progress(self, followed: Outcome, fields: dict[str, Any]) -> bool: ...
    def save_chain(self, instance_id: str, chain: dict[str, Any], seconds: int) -> None: ...
    def chain_of(self, instance_id: str) -> dict[str, Any] | None: ...
    def drop_chain(self, instance_id: str) -> None: ...
    def claim(self, claim: Claim, seconds: int) -> Claim | None: ...
    def claim_with_token(
        self, claim: Claim, seconds: int, bucket: str, take: Sequence[Any]
    ) -> tuple[Claim | None, list[Any] | None]: ...
    def claim_of(self, instance_id: str, account_id: str | None = None) -> Claim | None: ...
    def mark_upgrading(self, instance_id: str, to_version: str, seconds: int) -> None: ...
    def seen_upgrading(self, instance_id: str, to_version: str) -> bool: ...
    def seen_upgrading_many(self, upgrades: list[tuple[str, str]]) -> set[tuple[str, str]]: ...
    def mark_upgrading_many(self, upgrades: list[tuple[str, str]], seconds: int) -> None: ...
    def forget_upgrading(self, instance_id: str, to_version: str) -> None: ...
    def lock(self, name: str, seconds: float, *, wait_seconds: float = 0) -> AbstractContextManager[Any]: ...
    def claim_digest(self, rollout_id: str, day: str, message: dict[str, Any], seconds: int) -> bool: ...
    def outbox_add(self, entry: dict[str, Any]) -> None: ...
    def outbox_done(self, entry: str, pipeline: Any = None) -> None: ...
    def outbox_due(self, entry: str) -> None: ...
    def outbox_size(self) -> int: ...
    def drain(self, deliver: Callable[[dict[str, Any]], bool], *, deadline: float, limit: int) -> int: ...
    def set_aside(self, entry: dict[str, Any], reason: str) -> int: ...
    def set_aside_size(self) -> int: ...


@contextmanager
def redis_errors() -> Iterator[None]:
    """Any Redis failure inside becomes ``StoreUnavailable``: callers fail closed on one exception."""
    import redis

    try:
        yield
    except redis.exceptions.RedisError as exc:
        raise StoreUnavailable(f"state store unavailable: {type(exc).__name__}") from None


def follow_identity(outcome: Outcome) -> str:
    """What the tracker's compare-and-set compares (``scripts.FINISH`` builds the same string)."""
    parts = (outcome.at, outcome.status, outcome.request_id, outcome.to_version)
    return "|".join("" if part is None else str(part) for part in parts)


def role(outcome: Outcome) -> str:
    """How an outcome bears on the followed upgrade: a new one, still under way, or over."""
    if outcome.status in ("submitted", "awaiting_backup"):  # an upgrade (or its backup) just started
        return "submitted"
    return "in_flight" if outcome.status in IN_FLIGHT_STATUSES else "done"
