"""A multi-hop MongoDB upgrade behind the backup gate, on localcloud (its emulated clock runs the
backup and the hops) and a real Redis: 4.4 -> 6.0 on an instance with no fresh backup takes a backup
first (``awaiting_backup``); hop 1 (-> 5.0) goes out only once that backup finished, hop 2 (-> 6.0)
only once hop 1 is verified; every call is made once (localcloud's call log). A hop 2 that fails or
sticks names the gate's backup - what a rollback to 4.4 restores - in its outcome, notification and
rollback text."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.functional.core.conftest import mongo_entry
from tests.functional.tracker.conftest import TrackBench

MONGO = "dds-bp1gatechain001"
BACKUP_SECONDS = 900  # the backup runs 15 emulated minutes
HOP_SECONDS = 600  # each hop keeps the instance upgrading 10 emulated minutes


@pytest.fixture
def bench(make_track: Callable[..., TrackBench]) -> TrackBench:
    seed = {
        "mongodb": [mongo_entry(MONGO, "4.4", AutomaticBackup=None)],  # no backup at all
        "upgrade_seconds": HOP_SECONDS,
        "backup_seconds": BACKUP_SECONDS,
    }
    return make_track(seed)


def to_hop_2(bench: TrackBench) -> str:
    """The request, its backup and hop 1 run; returns the backup's id (hop 1 is done, not verified)."""
    bench.upgrade(MONGO, "6.0")
    bench.advance(BACKUP_SECONDS + 1)
    bench.tick()  # the backup finished: hop 1
    hop1 = bench.upgrader().status(MONGO)
    assert hop1 is not None and (hop1.status, hop1.hop) == ("submitted", 1) and hop1.backup_id
    bench.advance(HOP_SECONDS + 60)
    return hop1.backup_id


def test_a_two_hop_upgrade_waits_for_its_backup_then_goes_one_verified_hop_at_a_time(
    bench: TrackBench,
) -> None:
    waiting = bench.upgrade(MONGO, "6.0", ticket_id="CHG-44")

    assert (waiting.status, waiting.to_version) == ("awaiting_backup", "6.0"), waiting.message
    [backup] = bench.calls("CreateBackup", instance_id=MONGO)
    assert bench.upgrade_calls(MONGO) == []

    bench.advance(BACKUP_SECONDS / 3)
    bench.tick()  # the backup still runs: no hop goes out
    assert bench.upgrade_calls(MONGO) == []

    bench.advance(BACKUP_SECONDS)
    bench.tick()  # the backup finished: hop 1, and only hop 1
    [hop1] = bench.upgrade_calls(MONGO)
    assert hop1["params"]["EngineVersion"] == "5.0" and hop1["status"] == 200
    assert hop1["at"] >= backup["at"] + BACKUP_SECONDS
    submitted = bench.upgrader().status(MONGO)
    assert submitted is not None and (submitted.status, submitted.hop, submitted.hops) == ("submitted", 1, 2)
    assert submitted.backup_id and submitted.path == ["4.4", "5.0", "6.0"]

    bench.tick()  # hop 1 is under way: nothing more is sent
    assert len(bench.upgrade_calls(MONGO)) == 1

    bench.advance(HOP_SECONDS + 60)
    bench.tick()  # hop 1 verified at 5.0: hop 2
    again, hop2 = bench.upgrade_calls(MONGO)
    assert again == hop1  # hop 1 was not sent again
    assert hop2["params"]["EngineVersion"] == "6.0" and hop2["status"] == 200
    assert hop2["at"] >= hop1["at"] + HOP_SECONDS  # not before hop 1 could have finished
    second = bench.upgrader().status(MONGO)
    assert second is not None and (second.status, second.hop) == ("submitted", 2)

    bench.advance(HOP_SECONDS + 60)
    bench.tick()
    bench.tick()  # a tick after the end changes nothing

    done = bench.upgrader().status(MONGO)
    assert done is not None and (done.status, done.from_version, done.to_version) == (
        "completed",
        "4.4",
        "6.0",
    )
    assert done.ticket_id == "CHG-44"
    assert [c["params"]["EngineVersion"] for c in bench.upgrade_calls(MONGO)] == ["5.0", "6.0"]
    assert len(bench.calls("CreateBackup", instance_id=MONGO)) == 1
    assert bench.upgrader().store.claim_of(MONGO) is None  # the instance is free again
    events = [e for e in bench.events(MONGO) if e != "upgrade.in_progress"]
    assert events == [
        "upgrade.awaiting_backup",
        "upgrade.submitted",
        "upgrade.submitted",
        "upgrade.completed",
    ]


@pytest.mark.parametrize("how", ["refused", "stuck"])
def test_a_failed_or_stuck_hop_2_names_the_gates_backup_for_its_rollback(bench: TrackBench, how: str) -> None:
    backup_id = to_hop_2(bench)
    if how == "refused":  # the service refuses hop 2's call (its one documented 400)
        rule = {"product": "dds", "action": "UpgradeDBInstanceEngineVersion", "error_rate": 1.0,
                "error_code": "EngineVersion.ERROR", "error_status": 400}  # fmt: skip
        bench.post("/_localcloud/faults", {"rules": [rule]})
        bench.tick()  # hop 1 verified at 5.0; hop 2 refused
    else:
        bench.tick()  # hop 1 verified at 5.0: hop 2 goes out
        bench.advance(HOP_SECONDS / 2)
        bench.tick(DBUPGRADE_STUCK_AFTER='{"mongodb": 120}')  # hop 2 runs past its stuck limit

    ended = bench.upgrader().status(MONGO)
    assert ended is not None and (ended.status, ended.hop) == ({"refused": "failed"}.get(how, how), 2)
    assert ended.backup_id == backup_id
    [note] = [
        n
        for n in bench.published()
        if n["instance_id"] == MONGO and n["hop"] == 2 and n["event"] != "upgrade.submitted"
    ]
    assert (note["backup_id"], note["rollback"]) == (backup_id, ended.rollback)
    rollback = str(ended.rollback)
    assert f"restore backup {backup_id} to a NEW instance at 4.4" in rollback  # the chain's start
    assert "left the instance at 5.0" in rollback
