"""A rollout round watches its invocation's deadline (issue #15): its lock expires by the deadline, its
long steps (releasing, halting) stop in time to save what they did, and the next round goes on.

The deadline is simulated with an FC-style context (``get_remaining_time_in_millis``); the checks
count targets, states and locks, never time.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from types import SimpleNamespace

from dbupgrade.rollouts import Rollouts, advance_all
from dbupgrade.rollouts.service import SAVE_RESERVE_SECONDS
from dbupgrade.tracker import Tracker

from tests.functional.rollouts.conftest import UPGRADE_SECONDS, Fleet, redis_instance
from tests.functional.rollouts.test_rollout_fleet import spec, targets_for


def context_with(seconds: float) -> SimpleNamespace:
    """An FC context whose invocation times out ``seconds`` from now."""
    deadline = time.monotonic() + seconds
    return SimpleNamespace(
        request_id="fc-req-deadline",
        get_remaining_time_in_millis=lambda: max(0, int((deadline - time.monotonic()) * 1000)),
    )


def lock_keys(fleet: Fleet, rollout_id: str) -> list[bytes]:
    return list(fleet.tracker.store.redis.scan_iter(f"dbupgrade:rollout:{rollout_id}:lock"))


def test_a_round_out_of_time_releases_nothing_saves_itself_and_the_next_round_releases(
    make_fleet: Callable[..., Fleet],
) -> None:
    ids = [f"r-late{n:05d}" for n in range(20)]
    fleet = make_fleet([redis_instance(i) for i in ids])
    late = Rollouts(fleet.tracker, context_with(SAVE_RESERVE_SECONDS - 1))

    started = late.start(spec("late", targets_for(ids), "100%"))

    assert started["counts"] == {"pending": 20}  # no time to release: nothing was sent...
    assert lock_keys(fleet, "late") == []  # ...and no lock stays behind
    assert fleet.rollouts.repo.meta("late").tick == 1  # the round itself was saved
    [status] = advance_all(fleet.tracker)  # the next tick, with its whole minute
    assert status["counts"] == {"dispatched": 20}
    assert fleet.deliver() == 20


def test_the_rollout_lock_expires_by_the_invocations_deadline(make_fleet: Callable[..., Fleet]) -> None:
    ids = [f"r-slow{n:05d}" for n in range(8)]
    fleet = make_fleet([redis_instance(i) for i in ids])
    fleet.rollouts.start(spec("slow", targets_for(ids), "1,100%"))
    fleet.deliver()
    fleet.post("/_localcloud/clock", {"advance": UPGRADE_SECONDS + 1})  # the canary is done
    fleet.post("/_localcloud/faults", {"rules": [{"action": "PublishMessage", "latency_ms": 1000}]})
    remaining = SAVE_RESERVE_SECONDS + 5
    round_ = Rollouts(fleet.tracker, context_with(remaining))
    ttls: list[int] = []

    advancing = threading.Thread(target=lambda: round_.advance("slow"))
    advancing.start()
    for _ in range(50):  # until the round holds its lock (it is publishing the second wave)
        ttls = [int(fleet.tracker.store.redis.pttl(key)) for key in lock_keys(fleet, "slow")]
        if ttls:
            break
        time.sleep(0.05)
    advancing.join()
    fleet.post("/_localcloud/faults", {"rules": []})

    # Held, it would have expired before FC killed the invocation (not after LOCK_SECONDS)...
    assert ttls and 0 < max(ttls) <= remaining * 1000
    # ...and the round, not killed, saved the wave it released and let the lock go.
    assert lock_keys(fleet, "slow") == []
    assert fleet.rollouts.status("slow")["counts"] == {"completed": 1, "dispatched": 7}


def test_a_cancel_cut_short_by_the_deadline_is_finished_by_the_next_round(
    make_fleet: Callable[..., Fleet],
) -> None:
    ids = [f"r-stop{n:05d}" for n in range(12)]
    fleet = make_fleet([redis_instance(i) for i in ids])
    fleet.rollouts.start(spec("stop", targets_for(ids), "1,100%"))

    cancelled = Rollouts(fleet.tracker, context_with(SAVE_RESERVE_SECONDS - 1)).cancel("stop")

    # Cancelled at once; no time to halt the 11 unreleased targets one by one: they wait...
    assert (cancelled["status"], cancelled["counts"]) == ("cancelled", {"dispatched": 1, "pending": 11})
    assert not cancelled["ended"] and "stop" in fleet.rollouts.repo.active()
    assert lock_keys(fleet, "stop") == []
    fleet.tick()  # ...and the next round halts them; the canary's message is refused

    status = fleet.rollouts.status("stop")
    assert (status["status"], status["counts"], status["ended"]) == ("cancelled", {"halted": 12}, True)
    assert fleet.upgrade_calls() == {}
    halted = [n for n in fleet.notifications() if n["event"] == "upgrade.halted"]
    assert sorted(n["instance_id"] for n in halted) == ids
    assert [n["event"] for n in fleet.notifications() if n["event"].startswith("rollout.")] == [
        "rollout.halted"
    ]


def test_a_tick_reads_each_instance_of_a_rollout_once(make_fleet: Callable[..., Fleet]) -> None:
    ids = [f"r-once{n:05d}" for n in range(90)]
    fleet = make_fleet([redis_instance(i) for i in ids])
    fleet.rollouts.start(spec("once", targets_for(ids), "100%"))
    fleet.deliver()  # 90 upgrades submitted, under way
    before = len(fleet.calls(action="DescribeInstances"))

    Tracker(fleet.tracker).tick(context_with(300))

    # The tracker's checks read the 90 in 3 list calls (30 IDs each); the rollout's completion
    # check reuses those reads instead of listing the same 90 again.
    assert len(fleet.calls(action="DescribeInstances")) - before == 3
    assert fleet.rollouts.status("once")["counts"] == {"submitted": 90}
