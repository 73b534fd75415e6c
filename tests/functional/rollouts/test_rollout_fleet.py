"""Fleet rollouts end to end on localcloud (emulated clock) and a real Redis: waves, error budget,
halt / resume, summaries, and a plan that only describes."""

from __future__ import annotations

import json
import random
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from dbupgrade.cli.commands import cli
from dbupgrade.cli.rollout import EXIT_HALTED
from dbupgrade.context import adapt_context
from dbupgrade.rollouts import RolloutSpec, advance_all, parse_waves, validate_targets
from dbupgrade.rollouts.model import MAX_BUSY_RELEASES, MAX_RELEASES
from dbupgrade.triggers import fanout_payload, parse_rollout_event
from dbupgrade.triggers.runs import run_rollout
from dbupgrade.usecase import Upgrader

from tests.functional.rollouts.conftest import FAST_RETRY, Fleet, mongo_instance, redis_instance

FLEET_SIZE = 500  # the acceptance size


def mixed_fleet(size: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, str]]:
    """Redis 6.0 -> 7.0 and MongoDB 4.4 -> 5.0, with 5 % failing the pre-check (not ready), 1 % failing
    the upgrade itself (seed FailUpgrade) and 4 % already at the target. Returns the expected fate."""
    rejected, failing, at_target = size * 5 // 100, size // 100, size * 4 // 100
    mongo_count = size * 30 // 100
    plain = size - rejected - failing - at_target - mongo_count
    fate: dict[str, str] = {}
    redis: list[dict[str, Any]] = []
    for n in range(plain):
        redis.append(redis_instance(f"r-fleet{n:05d}"))
        fate[f"r-fleet{n:05d}"] = "completed"
    for n in range(rejected):
        redis.append(redis_instance(f"r-busy{n:05d}", status="Changing"))
        fate[f"r-busy{n:05d}"] = "rejected"
    for n in range(failing):
        redis.append(redis_instance(f"r-fails{n:05d}", FailUpgrade=True))
        fate[f"r-fails{n:05d}"] = "failed"
    for n in range(at_target):
        redis.append(redis_instance(f"r-done{n:05d}", version="7.0"))
        fate[f"r-done{n:05d}"] = "noop"
    mongodb = [mongo_instance(f"dds-fleet{n:05d}") for n in range(mongo_count)]
    fate.update({f"dds-fleet{n:05d}": "completed" for n in range(mongo_count)})
    return redis, mongodb, fate


def targets_for(instance_ids: list[str]) -> list[dict[str, Any]]:
    return validate_targets(
        [{"instance_id": i, "target_version": "5.0" if i.startswith("dds-") else "7.0"} for i in instance_ids]
    )


def spec(rollout_id: str, targets: list[dict[str, Any]], waves: str, **limits: Any) -> RolloutSpec:
    return RolloutSpec(rollout_id, tuple(targets), parse_waves(waves, len(targets)), waves, **limits)


def assert_waves_in_order(fleet: Fleet, rollout_id: str) -> None:
    """No target of a wave was released before every target of the waves before it had finished."""
    states = list(fleet.rollouts.repo.targets(rollout_id).values())
    for wave in sorted({s.wave for s in states})[1:]:
        released = min(s.released_tick for s in states if s.wave == wave and s.released_tick is not None)
        earlier = [s for s in states if s.wave < wave]
        assert all(s.done_tick is not None and s.done_tick <= released for s in earlier), wave


def test_mixed_fleet_in_canary_waves_ends_with_one_terminal_state_per_target(
    make_fleet: Callable[..., Fleet],
) -> None:
    redis, mongodb, fate = mixed_fleet(FLEET_SIZE)
    fleet = make_fleet(redis, mongodb)
    order = sorted(fate)
    random.Random(4).shuffle(order)

    started = fleet.rollouts.start(spec("mixed", targets_for(order), "1,10%,100%"))
    assert (started["wave"], started["in_flight"], started["waves"]) == (
        1,
        1,
        [1, FLEET_SIZE // 10, FLEET_SIZE],
    )
    status = fleet.run_until_ended("mixed")

    assert status["status"] == "completed"
    states = fleet.rollouts.repo.targets("mixed")
    assert {i: s.state for i, s in states.items()} == fate
    assert {f["instance_id"]: f["code"] for f in status["failures"] if f["state"] == "failed"} == {
        i: "UpgradeFailed" for i, f in fate.items() if f == "failed"
    }
    assert_waves_in_order(fleet, "mixed")
    submitted = {i for i, f in fate.items() if f in ("completed", "failed")}
    assert fleet.upgrade_calls() == dict.fromkeys(submitted, 1)

    notes = fleet.notifications()
    per_target = Counter(n["instance_id"] for n in notes if n["event"].startswith("upgrade."))
    assert per_target == dict.fromkeys(fate, 1)  # one notification per target...
    assert {n["rollout_id"] for n in notes} == {"mixed"}
    [summary] = [n for n in notes if n["event"].startswith("rollout.")]  # ...and one summary
    assert (summary["event"], summary["_tag"]) == ("rollout.completed", "rollout.complete")
    assert summary["counts"] == dict(Counter(fate.values()))
    assert summary["upgrade_seconds"]["count"] == sum(f == "completed" for f in fate.values())


def test_error_budget_halts_the_rollout_and_resume_continues_it(
    make_fleet: Callable[..., Fleet], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Wave 2 (targets 2-20) holds 10 instances that fail the pre-check; max errors 3.
    ids = [f"r-halt{n:05d}" for n in range(40)]
    broken = set(ids[1:20:2])
    fleet = make_fleet([redis_instance(i, status="Changing" if i in broken else "Normal") for i in ids])
    fleet.rollouts.start(spec("budget", targets_for(ids), "1,20,100%", max_errors=3))

    fleet.tick()  # wave 1 done -> wave 2 released
    fleet.tick()  # wave 2 done with 10 errors -> halted
    status = fleet.rollouts.status("budget")
    assert status["status"] == "halted" and status["ended"]
    assert "error budget" in status["reason"]
    assert status["counts"] == {"completed": 10, "rejected": 10, "halted": 20}
    upgraded = fleet.upgrade_calls()
    assert set(upgraded) == set(ids[:20]) - broken

    fleet.tick()
    fleet.tick()  # the tracker keeps running: nothing more reaches the upgrade API
    assert fleet.upgrade_calls() == upgraded
    halted_notes = [n for n in fleet.notifications() if n["event"] == "upgrade.halted"]
    assert sorted(n["instance_id"] for n in halted_notes) == ids[20:]
    assert {n["_tag"] for n in halted_notes} == {"halted"}
    for key, value in fleet.env.items():
        monkeypatch.setenv(key, value)
    shown = CliRunner().invoke(cli, ["rollout", "status", "budget"])
    assert shown.exit_code == EXIT_HALTED
    assert "HALTED - error budget spent: 10 errors, more than the 3 allowed" in shown.output
    rejected_row = next(line for line in shown.output.splitlines() if line.startswith("r-halt00001 "))
    assert rejected_row.split()[2] == "rejected" and "not_ready" in rejected_row

    resumed = CliRunner().invoke(cli, ["rollout", "resume", "budget"])
    assert resumed.exit_code == 0, resumed.output
    status = fleet.run_until_ended("budget")

    assert status["status"] == "completed"
    assert fleet.upgrade_calls() == dict.fromkeys(set(ids) - broken, 1)
    summaries = [
        (n["event"], n["status"]) for n in fleet.notifications() if n["event"].startswith("rollout.")
    ]
    assert summaries == [("rollout.halted", "halted"), ("rollout.completed", "completed")]


def test_cancel_halts_what_was_not_released(make_fleet: Callable[..., Fleet]) -> None:
    ids = [f"r-cancel{n:05d}" for n in range(10)]
    fleet = make_fleet([redis_instance(i) for i in ids])
    fleet.rollouts.start(spec("stop", targets_for(ids), "1,100%"))

    status = fleet.rollouts.cancel("stop")
    assert status["counts"] == {"dispatched": 1, "halted": 9}
    assert not status["ended"]  # the canary's message is still on its way
    fleet.tick()  # the rollout function receives it after the cancel: halted, no upgrade call

    status = fleet.rollouts.status("stop")
    assert (status["status"], status["counts"], status["ended"]) == ("cancelled", {"halted": 10}, True)
    assert fleet.upgrade_calls() == {}
    halted = [n for n in fleet.notifications() if n["event"] == "upgrade.halted"]
    assert sorted(n["instance_id"] for n in halted) == ids
    assert {n["reason"] for n in halted} == {"cancelled"}
    summaries = [n["event"] for n in fleet.notifications() if n["event"].startswith("rollout.")]
    assert summaries == ["rollout.halted"]


def test_halt_stops_released_messages_and_resume_upgrades_them_once(
    make_fleet: Callable[..., Fleet],
) -> None:
    # Wave 2 is released whole; the budget is spent while 19 of its messages still wait in the queue.
    ids = [f"r-flight{n:05d}" for n in range(30)]
    broken = set(ids[1:6])
    fleet = make_fleet([redis_instance(i, status="Changing" if i in broken else "Normal") for i in ids])
    fleet.rollouts.start(spec("inflight", targets_for(ids), "1,100%", max_errors=2))
    fleet.tick()  # the canary completes -> wave 2 released, its 29 messages in no particular order

    assert fleet.deliver(only=broken | set(ids[6:11])) == 10  # 5 rejected, 5 submitted
    [status] = advance_all(fleet.tracker)
    assert status["status"] == "halted" and status["counts"]["dispatched"] == 19
    assert fleet.deliver() == 19  # released before the halt, run after it
    upgraded = fleet.upgrade_calls()
    assert set(upgraded) == set(ids[:11]) - broken

    status = fleet.tick()[0]
    assert status["ended"] and status["counts"] == {"completed": 6, "rejected": 5, "halted": 19}
    assert fleet.upgrade_calls() == upgraded
    halted = [n for n in fleet.notifications() if n["event"] == "upgrade.halted"]
    assert sorted(n["instance_id"] for n in halted) == ids[11:]
    assert {n["reason"] for n in halted} == {"error_budget"}

    # A redelivery of a halted message replays its outcome: no call, no second notification.
    late = fanout_payload(targets_for(ids[-1:])[0], rollout_id="inflight", delivery_id=f"inflight:{ids[-1]}")
    replay = run_rollout(parse_rollout_event(late), fleet.worker, adapt_context(None))
    assert replay["counts"] == {"halted": 1}
    assert len([n for n in fleet.notifications() if n["event"] == "upgrade.halted"]) == 19

    fleet.rollouts.resume("inflight")
    status = fleet.run_until_ended("inflight")
    assert (status["status"], status["counts"]) == ("completed", {"completed": 25, "rejected": 5})
    assert fleet.upgrade_calls() == dict.fromkeys(set(ids) - broken, 1)
    others = Counter(n["instance_id"] for n in fleet.notifications() if n["event"].startswith("upgrade."))
    assert others == {i: 2 if i in ids[11:] else 1 for i in ids}  # a halted one, then its real outcome


def test_a_transient_failure_is_released_again_without_spending_the_budget(
    make_fleet: Callable[..., Fleet],
) -> None:
    ids = [f"r-flaky{n:05d}" for n in range(4)]
    fleet = make_fleet([redis_instance(i) for i in ids])
    fleet.post(
        "/_localcloud/faults", {"rules": [{"action": "ModifyInstanceMajorVersion", "error_rate": 1.0}]}
    )
    fleet.rollouts.start(spec("flaky", targets_for(ids), "100%", max_errors=0))

    [status] = fleet.tick()  # every upgrade answers 5xx until the rollout function's retries run out
    assert (status["status"], status["counts"], status["errors"]) == ("running", {"dispatched": 4}, 0)
    fleet.post("/_localcloud/faults", {"rules": []})
    status = fleet.run_until_ended("flaky")

    assert (status["status"], status["counts"]) == ("completed", {"completed": 4})
    assert fleet.upgrade_calls() == dict.fromkeys(ids, 1)
    failed = [n for n in fleet.notifications() if n["event"] == "upgrade.failed"]
    assert sorted(n["instance_id"] for n in failed) == ids
    assert {n["reason"] for n in failed} == {"retries_exhausted"}


def test_a_target_failing_transiently_on_every_release_fails_for_good(
    make_fleet: Callable[..., Fleet],
) -> None:
    ids = [f"r-down{n:05d}" for n in range(3)]
    fleet = make_fleet([redis_instance(i) for i in ids])
    fleet.post(
        "/_localcloud/faults", {"rules": [{"action": "ModifyInstanceMajorVersion", "error_rate": 1.0}]}
    )
    fleet.rollouts.start(spec("down", targets_for(ids), "100%", max_errors=1))

    status = fleet.run_until_ended("down")

    assert (status["status"], status["counts"]) == ("halted", {"failed": 3})
    assert {f["code"] for f in status["failures"]} == {"ServiceUnavailable"}
    failed = Counter(n["instance_id"] for n in fleet.notifications() if n["event"] == "upgrade.failed")
    assert failed == dict.fromkeys(ids, MAX_RELEASES)
    assert fleet.upgrade_calls() == {}


def test_max_in_flight_bounds_the_released_upgrades(make_fleet: Callable[..., Fleet]) -> None:
    ids = [f"r-paced{n:05d}" for n in range(12)]
    fleet = make_fleet([redis_instance(i) for i in ids])

    started = fleet.rollouts.start(spec("paced", targets_for(ids), "100%", max_in_flight=5))
    assert started["in_flight"] == 5
    fleet.tick()
    assert fleet.rollouts.status("paced")["counts"] == {"dispatched": 5, "completed": 5, "pending": 2}
    assert fleet.run_until_ended("paced")["status"] == "completed"


def test_plan_only_describes(
    make_fleet: Callable[..., Fleet], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    redis, mongodb, fate = mixed_fleet(FLEET_SIZE)
    fleet = make_fleet(redis, mongodb)
    manifest = tmp_path / "fleet.csv"
    rows = ["instance_id,target_version,ticket_id"] + [
        f"{i},{'5.0' if i.startswith('dds-') else '7.0'},CHG-7" for i in sorted(fate)
    ]
    manifest.write_text("\n".join(rows) + "\n")
    for key, value in fleet.env.items():
        monkeypatch.setenv(key, value)

    result = CliRunner().invoke(cli, ["rollout", "plan", str(manifest), "--json"])

    assert result.exit_code == 0, result.output
    plan = json.loads(result.stdout)
    expected = {"completed": "submit", "failed": "submit", "rejected": "reject", "noop": "noop"}
    assert {row["instance_id"]: row["action"] for row in plan["rows"]} == {
        i: expected[f] for i, f in fate.items()
    }
    assert plan["totals"] == dict(sorted(Counter(expected[f] for f in fate.values()).items()))
    busy = next(row for row in plan["rows"] if row["action"] == "reject")
    assert (busy["current_version"], busy["reason"]) == ("6.0", "not_ready")
    actions = {call["action"] for call in fleet.calls()}
    assert actions and all(action.startswith("Describe") for action in actions), actions
    assert fleet.notifications() == []


def test_a_busy_instance_is_released_again_without_spending_the_budget(
    make_fleet: Callable[..., Fleet],
) -> None:
    ids = [f"r-backup{n:05d}" for n in range(3)]
    fleet = make_fleet([redis_instance(i) for i in ids])
    busy = {"product": "r-kvstore", "action": "ModifyInstanceMajorVersion", "error_rate": 1.0,
            "error_code": "Task.Conflict", "error_status": 403}  # fmt: skip
    fleet.post("/_localcloud/faults", {"rules": [busy]})
    fleet.rollouts.start(spec("busy", targets_for(ids), "100%", max_errors=0))

    [status] = fleet.tick()  # each instance answers Task.Conflict until the function's tries run out
    assert (status["status"], status["errors"]) == ("running", 0)
    assert status["counts"] == {"dispatched": 3}  # released again, not failed
    fleet.post("/_localcloud/faults", {"rules": []})
    status = fleet.run_until_ended("busy")

    assert (status["status"], status["counts"]) == ("completed", {"completed": 3})
    assert fleet.upgrade_calls() == dict.fromkeys(ids, 1)
    failed = [n for n in fleet.notifications() if n["event"] == "upgrade.failed"]
    assert sorted(n["instance_id"] for n in failed) == ids
    assert {n["reason"] for n in failed} == {"instance_busy"}


def test_a_target_busy_on_every_release_is_deferred_and_the_rollout_completes(
    make_fleet: Callable[..., Fleet],
) -> None:
    ids = [f"r-longtask{n:05d}" for n in range(2)]
    fleet = make_fleet([redis_instance(i) for i in ids])
    busy = {"product": "r-kvstore", "action": "ModifyInstanceMajorVersion", "error_rate": 1.0,
            "error_code": "OperationDenied.DBInstanceStatus", "error_status": 403}  # fmt: skip
    fleet.post("/_localcloud/faults", {"rules": [busy]})
    fleet.rollouts.start(spec("longtask", targets_for(ids), "100%", max_errors=0))

    status = fleet.run_until_ended("longtask")

    assert (status["status"], status["counts"], status["errors"]) == ("completed", {"deferred": 2}, 0)
    assert status["reason"] == "completed with 2 deferred: re-run them"
    assert status["failures"] == []
    assert {(d["instance_id"], d["reason"]) for d in status["deferred"]} == {
        (i, "instance_busy") for i in ids
    }
    assert all(f"after {MAX_BUSY_RELEASES} tries" in d["message"] for d in status["deferred"])
    assert fleet.upgrade_calls() == {}
    [summary] = [n for n in fleet.notifications() if n["event"] == "rollout.completed"]
    assert summary["counts"] == {"deferred": 2} and summary["errors"] == 0


def test_an_unknown_access_key_halts_the_rollout_at_once_without_spending_the_budget(
    make_fleet: Callable[..., Fleet],
) -> None:
    ids = [f"r-keyed{n:05d}" for n in range(6)]
    fleet = make_fleet([redis_instance(i) for i in ids])
    # The rollout function's key is wrong (rotated away, say); the tracker's is fine.
    fleet.worker = Upgrader.from_env(
        {**fleet.env, "ALIBABA_CLOUD_ACCESS_KEY_ID": "LTAI5tRotatedAway"}, retry=FAST_RETRY
    )
    fleet.rollouts.start(spec("keyed", targets_for(ids), "2,100%", max_errors=5))

    [status] = fleet.tick()

    assert status["status"] == "halted" and status["errors"] == 0
    assert status["reason"] == (
        "configuration error: the AccessKey ID is not known to Alibaba Cloud: check "
        "ALIBABA_CLOUD_ACCESS_KEY_ID or the function's role (InvalidAccessKeyId.NotFound)"
    )
    assert status["counts"] == {"halted": 6}  # the two released and the four never released
    assert fleet.calls(action="DescribeInstanceAttribute", status="404")  # only the first wave tried
    assert len({c["params"]["InstanceId"] for c in fleet.calls(action="DescribeInstanceAttribute")}) == 2
    # Fixed: resume releases every target again and the rollout completes.
    fleet.worker = Upgrader.from_env(fleet.env, retry=FAST_RETRY)
    fleet.rollouts.resume("keyed")
    status = fleet.run_until_ended("keyed")
    assert (status["status"], status["counts"]) == ("completed", {"completed": 6})
    assert fleet.upgrade_calls() == dict.fromkeys(ids, 1)
