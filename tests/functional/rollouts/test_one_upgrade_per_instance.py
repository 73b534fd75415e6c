"""One accepted upgrade per instance, whatever asks for it: webhook tickets, the CLI, a rollout.

Real localcloud (every upgrade call recorded there) and a real Redis; the webhook's requests are
built exactly as its handler builds them (``parse_request(..., source="webhook", delivery_id=...)``),
the CLI runs as a subprocess, the rollout through its queue and the rollout function's own loop.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from dbupgrade.model import Outcome
from dbupgrade.request import parse_request
from dbupgrade.rollouts import RolloutSpec, TargetsOwned, parse_waves, validate_targets
from dbupgrade.usecase import Upgrader

from tests.functional.rollouts.conftest import FAST_RETRY, Fleet, redis_instance

INSTANCE = "r-bp1onlyone00001"


def webhook(fleet: Fleet, ticket: str, **fields: Any) -> Outcome:
    request = parse_request(
        {"instance_id": INSTANCE, "target_version": "7.0", "ticket_id": ticket, **fields},
        source="webhook",
        delivery_id=f"msg_{ticket}",
    )
    return Upgrader.from_env(fleet.env, retry=FAST_RETRY).run(request)


def cli_upgrade(fleet: Fleet, *args: str) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DBUPGRADE_", "ALIBABA_CLOUD_"))}
    done = subprocess.run(
        [sys.executable, "-m", "dbupgrade.cli", "upgrade", INSTANCE, "7.0", "--yes", *args],
        env={**env, **fleet.env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.stdout, done.stderr
    return dict(json.loads(done.stdout))


def spec(rollout_id: str, instance_ids: list[str], waves: str = "1,100%") -> RolloutSpec:
    targets = validate_targets([{"instance_id": i, "target_version": "7.0"} for i in instance_ids])
    return RolloutSpec(rollout_id, tuple(targets), parse_waves(waves, len(targets)), waves)


def test_two_tickets_the_cli_and_a_rollout_make_one_upgrade_call(make_fleet: Callable[..., Fleet]) -> None:
    fleet = make_fleet([redis_instance(INSTANCE, MaintainStartTime="18:00Z", MaintainEndTime="19:00Z")])

    # Booked for the window: the instance shows Normal at 6.0 until then, so a describe proves nothing.
    booked = webhook(fleet, "CHG-1", effective="maintenance_window")
    second = webhook(fleet, "CHG-2")
    by_cli = cli_upgrade(fleet, "--ticket", "CHG-3")
    fleet.rollouts.start(spec("overlap", [INSTANCE]))
    fleet.deliver()

    assert booked.status == "submitted"
    assert fleet.upgrade_calls() == {INSTANCE: 1}
    from_rollout = fleet.worker.store.latest(INSTANCE)
    assert from_rollout is not None and from_rollout.rollout_id == "overlap"
    for outcome in (second, Outcome.from_dict(by_cli), from_rollout):
        assert (outcome.status, outcome.reason) == ("in_progress", "upgrade_in_flight")
        assert outcome.request_id == booked.request_id
        assert outcome.upgrade is not None
        assert (outcome.upgrade["ticket_id"], outcome.upgrade["effective"]) == ("CHG-1", "maintenance_window")
        assert outcome.upgrade["at"] == booked.at


def test_concurrent_requests_from_every_source_make_one_upgrade_call(
    make_fleet: Callable[..., Fleet],
) -> None:
    fleet = make_fleet([redis_instance(INSTANCE)])
    # Every describe takes a second: all four requests pass the pre-check before any of them submits.
    fleet.post(
        "/_localcloud/faults",
        {
            "seed": 1,
            "rules": [{"product": "r-kvstore", "action": "DescribeInstanceAttribute", "latency_ms": 1000}],
        },
    )
    requests = [
        parse_request(
            {"instance_id": INSTANCE, "target_version": "7.0", "ticket_id": t}, source=s, delivery_id=d
        )
        for t, s, d in (("CHG-1", "webhook", "msg_1"), ("CHG-2", "webhook", "msg_2"), ("CHG-3", "cli", None))
    ]
    requests.append(
        parse_request(
            {"instance_id": INSTANCE, "target_version": "7.0", "rollout_id": "overlap"},
            source="queue",
            delivery_id="overlap:" + INSTANCE,
        )
    )
    # One function instance per request, warm before the race starts (as FC's would be).
    upgraders = [Upgrader.from_env(fleet.env, retry=FAST_RETRY) for _ in requests]
    start = threading.Barrier(len(requests))

    def run(index: int) -> Outcome:
        start.wait()
        return upgraders[index].run(requests[index])

    with ThreadPoolExecutor(len(requests)) as pool:
        outcomes = list(pool.map(run, range(len(requests))))

    # Every call the cloud saw, accepted or refused: exactly one upgrade was asked for.
    assert len(fleet.calls(action="ModifyInstanceMajorVersion")) == 1
    [submitted] = [o for o in outcomes if o.status == "submitted"]
    others = [o for o in outcomes if o is not submitted]
    assert {o.status for o in others} == {"in_progress"}
    # Those that passed the pre-check with it find the claim; one slowed down until after the
    # submission may see the instance upgrading instead. Either way: no second call.
    pointing = [o for o in others if o.reason == "upgrade_in_flight"]
    assert all(o.upgrade and o.upgrade["ticket_id"] == submitted.ticket_id for o in pointing)


def test_another_target_while_one_is_in_flight_is_refused_saying_so(make_fleet: Callable[..., Fleet]) -> None:
    cloud_native = {"NodeType": "MASTER_SLAVE", "InstanceClass": "redis.shard.small.2.ce"}
    fleet = make_fleet([redis_instance(INSTANCE, version="5.0", **cloud_native)])
    first = webhook(fleet, "CHG-1", target_version="6.0", effective="maintenance_window")
    other = webhook(fleet, "CHG-2")  # 7.0

    assert first.status == "submitted"
    assert (other.status, other.reason, other.field) == ("rejected", "upgrade_in_flight", "target_version")
    assert "6.0" in (other.message or "") and "CHG-1" in (other.message or "")
    assert fleet.upgrade_calls() == {INSTANCE: 1}


def test_rollout_start_refuses_targets_another_active_rollout_owns(make_fleet: Callable[..., Fleet]) -> None:
    ids = ["r-bp1owned000001", "r-bp1owned000002", "r-bp1owned000003"]
    fleet = make_fleet([redis_instance(i) for i in ids])
    fleet.rollouts.start(spec("first", ids[:2]))  # wave 1 released, the second target pending

    with pytest.raises(TargetsOwned) as refused:
        fleet.rollouts.start(spec("second", ids[1:]))
    assert refused.value.owned == {ids[1]: "first"}
    assert "r-bp1owned000002 (rollout first)" in str(refused.value)
    assert fleet.rollouts.repo.spec("second") is None  # nothing recorded

    status = fleet.rollouts.start(spec("second", ids[1:]), exclude_owned=True)
    assert status["excluded"] == {ids[1]: "first"}
    assert [t["instance_id"] for t in fleet.rollouts.repo.spec("second").targets] == [ids[2]]  # type: ignore[union-attr]
