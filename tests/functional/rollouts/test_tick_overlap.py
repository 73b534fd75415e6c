"""Two tracker ticks overlap (one ran past the timer's minute): the later one leaves the shards the
earlier holds to it - its rollout round does not list those instances again either (issue #15: at
10,000 in flight the overlapping tick re-read the whole fleet, 334 list calls, doubling the calls).

Counted from localcloud's call log (which instances each list read asked for), never timed.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from contextlib import ExitStack

from dbupgrade.store import keys
from dbupgrade.tracker import TRACKER_SHARDS, Tracker, shard_of

from tests.functional.rollouts.conftest import UPGRADE_SECONDS, Fleet
from tests.functional.rollouts.test_status_freshness import started_and_submitted, states_of
from tests.functional.rollouts.test_tick_cursor import INSTANCES, read_instances


def test_a_tick_overlapping_another_reads_only_the_shards_it_holds(
    make_fleet: Callable[..., Fleet],
) -> None:
    fleet = started_and_submitted(make_fleet, "overlap", INSTANCES)
    fleet.post("/_localcloud/clock", {"advance": UPGRADE_SECONDS + 1})  # every upgrade is over
    tracker = Tracker(fleet.tracker)
    busy = set(range(TRACKER_SHARDS // 2))  # the shards the earlier tick is still checking
    theirs = {i for i in INSTANCES if shard_of(i) in busy}
    mine = set(INSTANCES) - theirs
    before = len(fleet.calls(action="DescribeInstances"))

    with ExitStack() as earlier:
        for shard in busy:
            earlier.enter_context(fleet.tracker.store.lock(keys.tracker_shard_lock(shard), 60))
        tick = tracker.tick()

    # Each instance of the shards it holds read once (the checks'; the rollout round reuses them),
    # none of the other tick's: not by the checks, not by the rollout's completion check.
    assert read_instances(fleet, before) == Counter(dict.fromkeys(mine, 1))
    assert tick["checked"] == len(mine)
    status = fleet.rollouts.status("overlap")
    assert states_of(status) == {
        **dict.fromkeys(mine, "completed"),
        **dict.fromkeys(theirs, "submitted"),
    }

    # Once the earlier tick let go, the next reads the rest, once each, and the rollout ends.
    since = len(fleet.calls(action="DescribeInstances"))
    tracker.tick()
    assert read_instances(fleet, since) == Counter(dict.fromkeys(theirs, 1))
    tracker.tick()  # the round that saves the last completions and ends it
    final = fleet.rollouts.status("overlap")
    assert (final["status"], final["counts"]) == ("completed", {"completed": len(INSTANCES)})
