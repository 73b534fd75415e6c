"""What the documentation says about an upgrade path, in one place, each fact with its source.

- ``END_OF_SERVICE``: when a major version stops being served (readiness: end-of-service status);
- ``caveats``: the documented effects of going from one major version to another (readiness);
- ``rollback``: what rolling back means for an engine and path, the bounded text a failed, stuck or
  halted outcome, its notification and ``rollout cancel`` carry.

Example::

    rollback_text("mongodb", "4.4", "5.0", backup_id="3242", submitted=True)
    caveats("redis", "4.0", "5.0")          # [Caveat("bloom", "warn", ...), ...]
"""

from __future__ import annotations

from datetime import date
from typing import NamedTuple

from dbupgrade.engines import version_key

ROLLBACK_MAX = 600  # characters: a notification field, not a manual

REDIS_UPGRADE_DOC = "https://www.alibabacloud.com/help/en/redis/user-guide/upgrade-the-major-version-1"
REDIS_EOS_DOC = "https://help.aliyun.com/zh/redis/product-overview/end-of-full-support-for-redis-4-0"
MONGODB_UPGRADE_DOC = "https://www.alibabacloud.com/help/en/mongodb/user-guide/upgrade-the-major-version-of-an-apsaradb-for-mongodb-instance"
MONGODB_RESTORE_DOC = "https://www.alibabacloud.com/help/en/mongodb/user-guide/restoration-solution-overview"
MONGODB_COMMUNITY_EOL_DOC = "https://www.mongodb.com/legal/support-policy/lifecycles"


class EndOfService(NamedTuple):
    """A major version's end of service: after ``ends`` it is no longer served (or supported)."""

    ends: date
    what: str  # whose end: "end of service (ApsaraDB)" or "community end of life"
    source: str


END_OF_SERVICE: dict[str, dict[str, EndOfService]] = {
    # Redis Open-Source Edition 4.0: new purchases stop 2025-10-25, renewals 2026-03-25, service ends
    # 2026-09-25 (the end-of-full-support notice).
    "redis": {"4.0": EndOfService(date(2026, 9, 25), "end of service (ApsaraDB for Redis)", REDIS_EOS_DOC)},
    # No ApsaraDB end-of-service date for MongoDB 4.x or later was found in its lifecycle policy
    # (alibabacloud.com/help/en/mongodb/product-overview/mongodb-product-lifecycle-policies lists
    # 3.x); the community's end-of-life dates are what the report gives, named as such.
    "mongodb": {
        version: EndOfService(ends, "community end of life (MongoDB Inc.)", MONGODB_COMMUNITY_EOL_DOC)
        for version, ends in (
            ("4.0", date(2022, 4, 30)),
            ("4.2", date(2023, 4, 30)),
            ("4.4", date(2024, 2, 29)),
            ("5.0", date(2024, 10, 31)),
            ("6.0", date(2025, 7, 31)),
            ("7.0", date(2027, 8, 31)),
            ("8.0", date(2029, 10, 31)),
        )
    },
}


class Caveat(NamedTuple):
    """A documented effect of an upgrade path: ``grade`` "warn" needs a person's attention first."""

    name: str
    grade: str  # "warn" | "info"
    text: str
    source: str


def _crosses(current: str, target: str, version: str) -> bool:
    """Whether going from ``current`` to ``target`` passes through (or lands on) ``version``."""
    try:
        return version_key(current) < version_key(version) <= version_key(target)
    except ValueError:
        return False


def caveats(engine: str, current: str, target: str) -> list[Caveat]:
    """The documented effects of upgrading ``engine`` from ``current`` to ``target``."""
    found: list[Caveat] = []
    if engine == "redis":
        if current == "4.0":
            found.append(
                Caveat(
                    "bloom_data",
                    "warn",
                    "Bloom filter commands (BF.ADD ...) of Redis 4.0 are not supported after the upgrade: "
                    "find and delete Bloom data first (the EOS notice publishes a SCAN+TYPE script)",
                    f"{REDIS_UPGRADE_DOC}; {REDIS_EOS_DOC}",
                )
            )
        found.append(
            Caveat(
                "read_only_seconds",
                "info",
                "the switchover makes the instance read-only for up to 60 s and drops connections for a "
                "few seconds: the application must reconnect",
                REDIS_UPGRADE_DOC,
            )
        )
        found.append(
            Caveat(
                "irreversible",
                "info",
                "a major version upgrade cannot be reversed (rollback = a new instance at the old version)",
                REDIS_UPGRADE_DOC,
            )
        )
    elif engine == "mongodb":
        if _crosses(current, target, "5.0"):
            found.append(
                Caveat(
                    "write_concern",
                    "warn",
                    "from 5.0 the default write concern is {w: majority} instead of {w: 1}: write latency "
                    "and replication lag may grow under write-heavy load",
                    MONGODB_UPGRADE_DOC,
                )
            )
        found.append(
            Caveat(
                "restarts",
                "info",
                "nodes are upgraded in turn and the instance restarts 2-3 times (the balancer of a sharded "
                "cluster is off meanwhile): the application must reconnect",
                MONGODB_UPGRADE_DOC,
            )
        )
        found.append(
            Caveat(
                "old_backups",
                "info",
                "backups taken before the upgrade cannot be restored into the upgraded instance, only "
                "into a new one",
                MONGODB_RESTORE_DOC,
            )
        )
    return found


def rollback_text(
    engine: str | None,
    from_version: str | None,
    to_version: str,
    *,
    backup_id: str | None = None,
    submitted: bool,
    booked: bool = False,
    reached: str | None = None,
) -> str:
    """What rolling back means for this outcome, at most ``ROLLBACK_MAX`` characters.

    ``submitted``: the upgrade call may have been accepted (a failed, stuck or unknown upgrade);
    otherwise nothing was changed. ``booked``: it was booked for the maintenance window.
    ``reached``: a multi-hop chain stopped after its earlier hops were verified at this version;
    ``from_version`` is then the chain's start, the version the backup was taken at.
    """
    old = from_version or "the old version"
    if reached is not None:
        # Earlier hops changed the instance: there is something to roll back whatever this hop did.
        submitted = True
    if not submitted:
        text = f"Nothing to roll back: no upgrade was submitted; the instance stays at {old}."
        return text[:ROLLBACK_MAX]
    backup = f"backup {backup_id}" if backup_id else "a backup taken before the upgrade"
    if engine == "mongodb":
        text = (
            f"No in-place downgrade, and a backup from {old} cannot be restored into the upgraded instance: "
            f"restore {backup} to a NEW instance at {old}, switch the application's connection string to "
            f"it, then release the upgraded one ({MONGODB_RESTORE_DOC})."
        )
    elif engine == "redis":
        text = (
            f"A major upgrade cannot be reversed: create a new instance at {old} (e.g. restored from "
            f"{backup}), migrate the data, switch the application's endpoint to it, then release the "
            f"upgraded one ({REDIS_UPGRADE_DOC})."
        )
    else:
        text = f"Restore {backup} to a new instance at {old} and switch the application to it."
    if reached is not None:
        text = f"Earlier hops left the instance at {reached}. " + text
    if booked:
        text = "If it has not started: cancel its O&M event (CancelActiveOperationTasks). " + text
    return text[:ROLLBACK_MAX]
