"""A tracker tick cut short by its deadline leaves its cursor at the first shard it did not check:
the next tick starts there, so ticks cut short in turn check every shard, none starved (issue #15).

Counted from localcloud's call log (which instances each list read asked for), never timed: the
invocation's clock runs out after a given number of list reads.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

from dbupgrade.context import InvocationContext
from dbupgrade.request import parse_request
from dbupgrade.tracker import ROLLOUT_RESERVE_SECONDS, TRACKER_SHARDS, Tracker, TrackerSettings, shard_of

from tests.functional.rollouts.conftest import Fleet, redis_instance, runs_out_after_list_reads

PER_SHARD = 2


def instances_in_every_shard() -> list[str]:
    found: dict[int, list[str]] = {}
    n = 0
    while any(len(found.get(s, [])) < PER_SHARD for s in range(TRACKER_SHARDS)):
        instance = f"r-cursor{n:05d}"
        if len(found.setdefault(shard_of(instance), [])) < PER_SHARD:
            found[shard_of(instance)].append(instance)
        n += 1
    return sorted(i for ids in found.values() for i in ids)


INSTANCES = instances_in_every_shard()


def cut_short(fleet: Fleet, reads: int) -> InvocationContext:
    """The tick's checks stop after ``reads`` list reads: only the rollouts' reserve is left."""
    return runs_out_after_list_reads(fleet, reads, left=ROLLOUT_RESERVE_SECONDS)


def read_instances(fleet: Fleet, since: int) -> Counter[str]:
    """How many list reads (after the first ``since``) asked for each instance."""
    asked: Counter[str] = Counter()
    for call in fleet.calls(action="DescribeInstances")[since:]:
        asked.update(call["params"]["InstanceIds"].split(","))
    return asked


def list_reads(fleet: Fleet, since: int) -> list[frozenset[str]]:
    """The instances each list read (after the first ``since``) asked for, in order."""
    return [
        frozenset(call["params"]["InstanceIds"].split(","))
        for call in fleet.calls(action="DescribeInstances")[since:]
    ]


def test_two_ticks_cut_short_check_every_shard_once(make_fleet: Callable[..., Fleet]) -> None:
    fleet = make_fleet([redis_instance(i) for i in INSTANCES])
    for instance in INSTANCES:
        fleet.worker.run(parse_request({"instance_id": instance, "target_version": "7.0"}, source="cli"))
    before = len(fleet.calls(action="DescribeInstances"))
    # One shard a chunk: each chunk is one list read of its shard's two instances. A tick reads the
    # next chunk while it checks one: cut short after half + 1 reads, it checked half the shards
    # and read one more ahead, which it leaves unchecked.
    tracker = Tracker(fleet.tracker, TrackerSettings(chunk_targets=1))
    half = TRACKER_SHARDS // 2

    first = tracker.tick(cut_short(fleet, reads=half + 1))
    first_reads = list_reads(fleet, before)
    second = tracker.tick(cut_short(fleet, reads=half + 1))
    second_reads = list_reads(fleet, before)[len(first_reads) :]

    assert first["checked"] == second["checked"] == half * PER_SHARD
    assert first["unchecked"] == second["unchecked"] == half * PER_SHARD
    assert len(first_reads) == len(second_reads) == half + 1
    # The second tick started with the shard the first read ahead and left: together, the shards
    # the two ticks checked are every shard, each once.
    assert second_reads[0] == first_reads[-1]
    checked = first_reads[:half] + second_reads[:half]
    assert sorted(i for read in checked for i in read) == INSTANCES
    assert len({frozenset(shard_of(i) for i in read) for read in checked}) == TRACKER_SHARDS
    # And the cursor came round: a third tick cut short starts again with the first tick's shards.
    tracker.tick(cut_short(fleet, reads=half + 1))
    assert list_reads(fleet, before)[len(first_reads) + len(second_reads) :] == first_reads
