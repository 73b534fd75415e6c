"""Every Redis key dbupgrade uses: the one place that names them.

==========================================  ==================================================================
``dbupgrade:latest:<instance>``             the latest recorded outcome (JSON), whatever it was
``dbupgrade:history:<instance>``            the last ``HISTORY_LENGTH`` outcomes, newest first
``dbupgrade:following:<instance>``          the in-flight outcome the tracker follows (JSON)
``dbupgrade:in_flight``                     set of instances with a ``following`` entry
``dbupgrade:claim:[<account>:]<instance>``  the instance's accepted, unfinished upgrade (JSON, expires)
``dbupgrade:outbox``                        notifications not yet published (list, oldest first)
``dbupgrade:outbox:claimed``                the entry a drainer is publishing (at most one)
``dbupgrade:outbox:lock``                   one drainer at a time
``dbupgrade:outbox:set_aside``              notifications MNS refused for good (the newest 1,000)
``dbupgrade:idempotency#...``               Powertools idempotency records
``dbupgrade:answered:<idempotency key>``    a keyed request's final outcome, written with it, until its
                                            idempotency record holds it (JSON, expires)
``dbupgrade:tracker:shard:<n>``             one tracker tick at a time on a shard of the in-flight upgrades
``dbupgrade:chain:<instance>``              a multi-hop upgrade's checkpoint (JSON, ``dbupgrade.hops``)
``dbupgrade:booked:lock:<instance>``        one change of a booked upgrade at a time (``dbupgrade.booked``)
``dbupgrade:tracker:upgrading:<shard>``     the tracker saw those upgrades running (rollback detection;
                                            a hash, field ``<instance>:<version>``)
``dbupgrade:tracker:progress:<shard>``      the followed upgrades' task progress as the tracker last
                                            read it (a hash, field ``<instance>``)
``dbupgrade:rollout:<id>:{spec,meta,targets,lock}``  a rollout (``dbupgrade.rollouts.state``)
``dbupgrade:rollouts:active``               rollouts the tracker advances
``dbupgrade:rollouts:start-lock``           one ``rollout start`` at a time (target ownership check)
``dbupgrade:ratelimit:<account>:<region>:<product>:<action>``  a token bucket (``dbupgrade.ratelimit``)
``dbupgrade:campaign:<id>:digest:<day>``    a campaign's digest of that UTC day was queued (expires)
==========================================  ==================================================================
"""

from __future__ import annotations

import zlib

PREFIX = "dbupgrade:"
HISTORY_LENGTH = 100
OUTBOX = PREFIX + "outbox"
OUTBOX_LOCK = PREFIX + "outbox:lock"
OUTBOX_CLAIMED = PREFIX + "outbox:claimed"
# Notifications MNS refused for good (notify.Delivery.REFUSED), kept for an operator to read; the
# newest SET_ASIDE_MAX only, so a flood of bad entries cannot grow the store without end.
SET_ASIDE = PREFIX + "outbox:set_aside"
SET_ASIDE_MAX = 1000
IN_FLIGHT = PREFIX + "in_flight"
IDEMPOTENCY_PREFIX = PREFIX + "idempotency"
ROLLOUTS_ACTIVE = PREFIX + "rollouts:active"
ROLLOUT_START_LOCK = PREFIX + "rollouts:start-lock"
RATELIMIT_PREFIX = PREFIX + "ratelimit:"


def latest(instance_id: str) -> str:
    return f"{PREFIX}latest:{instance_id}"


def history(instance_id: str) -> str:
    return f"{PREFIX}history:{instance_id}"


def following(instance_id: str) -> str:
    return f"{PREFIX}following:{instance_id}"


def claim(identity: str) -> str:
    """``identity``: ``dbupgrade.store.claims.claim_identity`` (the instance, within its account)."""
    return f"{PREFIX}claim:{identity}"


def answered(idempotency_key: str) -> str:
    """``idempotency_key``: ``dbupgrade.usecase.idempotency_key`` (the source, delivery and instance)."""
    return f"{PREFIX}answered:{idempotency_key}"


def tracker_shard_lock(shard: int) -> str:
    return f"{PREFIX}tracker:shard:{shard}"


def tracker_cursor() -> str:
    """The shard the next tick checks first: the first one a tick cut short by its deadline left."""
    return f"{PREFIX}tracker:cursor"


def chain(instance_id: str) -> str:
    return f"{PREFIX}chain:{instance_id}"


def booked_lock(instance_id: str) -> str:
    return f"{PREFIX}booked:lock:{instance_id}"


# The in-flight upgrades are split into this many shards (``dbupgrade.tracker``), each checked by
# one tick at a time; the tracker's running marks are kept one hash a shard.
TRACKER_SHARDS = 16


def tracker_shard(instance_id: str) -> int:
    """The tracker shard of an instance: stable across processes (not ``hash``, which is salted)."""
    return zlib.crc32(instance_id.encode()) % TRACKER_SHARDS


def seen_upgrading(shard: int) -> str:
    """The tracker's running marks of a shard's upgrades (a hash: ``seen_upgrading_field`` -> when it
    lapses, epoch seconds): a tick reads and writes a shard's marks in one command each, not one per upgrade."""
    return f"{PREFIX}tracker:upgrading:{shard}"


def tracker_progress(shard: int) -> str:
    """The task progress the tracker last read of a shard's followed upgrades (a hash: instance ->
    JSON of the fields and the followed outcome they belong to, ``base.follow_identity``)."""
    return f"{PREFIX}tracker:progress:{shard}"


def seen_upgrading_field(instance_id: str, to_version: str) -> str:
    return f"{instance_id}:{to_version}"


def rollout(rollout_id: str, part: str) -> str:
    return f"{PREFIX}rollout:{rollout_id}:{part}"


def ratelimit(account: str, region: str, product: str, action: str) -> str:
    """Per (account, region, action): the dimension of the cloud's API quotas (``dbupgrade.ratelimit``)."""
    return f"{RATELIMIT_PREFIX}{account}:{region}:{product}:{action}"


def campaign_digest(rollout_id: str, day: str) -> str:
    """``day``: ``YYYY-MM-DD`` (UTC); see ``dbupgrade.rollouts.campaign.send_digests``."""
    return f"{PREFIX}campaign:{rollout_id}:digest:{day}"
