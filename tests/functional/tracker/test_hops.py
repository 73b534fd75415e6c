"""Multi-hop MongoDB upgrades on localcloud and a real Redis: a target three majors ahead is reached
one hop at a time, each hop submitted only once the previous one is verified (the version read back
by the tracker), and a tracker that dies between hops resumes without sending a hop twice."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from alibabacloud_dds20151201 import models as dm
from alibabacloud_dds20151201.client import Client as DdsClient
from alibabacloud_tea_openapi.models import Config as SdkConfig
from dbupgrade.hops import CALLING, DUE
from dbupgrade.request import parse_request

from tests.conftest import AK_ID, AK_SECRET
from tests.functional.core.conftest import mongo_entry
from tests.functional.tracker.conftest import TrackBench

HOP_SECONDS = 600
MONGO = "dds-bp1hops00000001"
OTHER = "dds-bp1hops00000002"


@pytest.fixture
def hops(make_track: Callable[..., TrackBench]) -> TrackBench:
    return make_track(
        {"mongodb": [mongo_entry(MONGO, "4.4"), mongo_entry(OTHER, "4.4")], "upgrade_seconds": HOP_SECONDS}
    )


def hop_calls(bench: TrackBench, instance_id: str = MONGO) -> list[str]:
    """The versions each upgrade call for the instance asked for, in order."""
    return [c["params"]["EngineVersion"] for c in bench.upgrade_calls(instance_id)]


def version(bench: TrackBench, instance_id: str = MONGO) -> str:
    """The instance's EngineVersion as the official Dds client reads it."""
    request = dm.DescribeDBInstanceAttributeRequest(dbinstance_id=instance_id)
    return str(
        dds(bench).describe_dbinstance_attribute(request).body.dbinstances.dbinstance[0].engine_version
    )


def dds(bench: TrackBench) -> DdsClient:
    endpoint = bench.lc.url.removeprefix("http://")
    config = SdkConfig(access_key_id=AK_ID, access_key_secret=AK_SECRET, endpoint=endpoint, protocol="http")
    config.region_id = "cn-hangzhou"
    return DdsClient(config)


def hop_notes(bench: TrackBench, instance_id: str = MONGO) -> list[tuple[str, Any, Any, str]]:
    return [
        (n["event"], n["hop"], n["hops"], n["to_version"])
        for n in bench.published()
        if n["instance_id"] == instance_id
    ]


def test_three_majors_ahead_is_three_hops_each_after_the_previous_is_verified(hops: TrackBench) -> None:
    first = hops.upgrade(MONGO, "7.0", ticket_id="CHG-7")

    assert (first.status, first.hop, first.hops, first.path) == (
        "submitted",
        1,
        3,
        ["4.4", "5.0", "6.0", "7.0"],
    )
    assert first.to_version == "7.0" and hop_calls(hops) == ["5.0"]
    hops.advance(HOP_SECONDS / 2)
    hops.tick()
    assert hop_calls(hops) == ["5.0"]  # hop 1 still running: nothing else is sent

    for done, following in (("5.0", "6.0"), ("6.0", "7.0")):
        hops.advance(HOP_SECONDS + 1)
        assert version(hops) == done
        hops.tick()
        assert hop_calls(hops)[-1] == following  # sent on the tick that read `done` back
        hops.tick()  # the next hop is running: a tick sends nothing more
        assert hop_calls(hops).count(following) == 1
    hops.advance(HOP_SECONDS + 1)
    hops.tick()

    assert hop_calls(hops) == ["5.0", "6.0", "7.0"] and version(hops) == "7.0"
    latest = hops.upgrader().status(MONGO)
    assert latest is not None
    assert (latest.status, latest.hop, latest.hops, latest.from_version) == ("completed", 3, 3, "4.4")
    assert latest.ticket_id == "CHG-7" and "in 3 hops" in str(latest.message)
    assert hop_notes(hops) == [
        ("upgrade.submitted", 1, 3, "7.0"),
        ("upgrade.submitted", 2, 3, "7.0"),
        ("upgrade.submitted", 3, 3, "7.0"),
        ("upgrade.completed", 3, 3, "7.0"),
    ]
    assert hops.upgrader().store.claim_of(MONGO) is None  # the chain's claim is released at its end
    assert hops.upgrader().store.chain_of(MONGO) is None
    assert hops.tick()["checked"] == 0


def test_the_chain_holds_the_instance_against_other_requests_between_hops(hops: TrackBench) -> None:
    hops.upgrade(MONGO, "7.0")
    hops.advance(HOP_SECONDS + 1)  # hop 1 done, not yet verified: the instance is free in the cloud

    again = hops.upgrade(MONGO, "7.0", ticket_id="CHG-other")
    other_target = hops.upgrade(MONGO, "6.0")

    assert (again.status, again.reason) == ("in_progress", "upgrade_in_flight")
    assert (other_target.status, other_target.reason) == ("rejected", "upgrade_in_flight")
    assert hop_calls(hops) == ["5.0"]


def test_a_tracker_killed_after_a_hops_call_resumes_without_sending_it_again(hops: TrackBench) -> None:
    hops.upgrade(MONGO, "7.0")
    hops.advance(HOP_SECONDS + 1)
    store = hops.upgrader().store
    # What a tick that died right after hop 2's call leaves: the checkpoint says "calling" hop 2,
    # the cloud accepted 6.0, and the followed outcome is still hop 1's submission.
    chain = store.chain_of(MONGO)
    assert chain is not None
    chain.update(hop=2, state=CALLING, verified=[{"hop": 1, "version": "5.0", "at": "x"}])
    store.save_chain(MONGO, chain, 3600)
    request = dm.UpgradeDBInstanceEngineVersionRequest(dbinstance_id=MONGO, engine_version="6.0")
    dds(hops).upgrade_dbinstance_engine_version(request)

    hops.tick()  # a fresh Tracker (and Upgrader) picks the chain up

    assert hop_calls(hops) == ["5.0", "6.0"]  # the dead tick's call only
    latest = hops.upgrader().status(MONGO)
    assert latest is not None
    assert (latest.status, latest.hop, latest.reason) == ("submitted", 2, "reconciled")
    hops.advance(HOP_SECONDS + 1)
    hops.tick()
    hops.advance(HOP_SECONDS + 1)
    hops.tick()
    assert hop_calls(hops) == ["5.0", "6.0", "7.0"] and version(hops) == "7.0"
    assert hops.upgrader().status(MONGO).status == "completed"  # type: ignore[union-attr]


def test_a_tracker_killed_before_a_hops_call_sends_it_exactly_once(hops: TrackBench) -> None:
    hops.upgrade(MONGO, "7.0")
    hops.advance(HOP_SECONDS + 1)
    store = hops.upgrader().store
    chain = store.chain_of(MONGO)
    assert chain is not None
    chain.update(hop=2, state=DUE)  # died after verifying hop 1, before hop 2's call
    store.save_chain(MONGO, chain, 3600)

    hops.tick()
    hops.tick()

    assert hop_calls(hops) == ["5.0", "6.0"]
    assert [n[:2] for n in hop_notes(hops)] == [("upgrade.submitted", 1), ("upgrade.submitted", 2)]


def test_a_hop_the_service_no_longer_offers_ends_the_chain_with_its_answer(hops: TrackBench) -> None:
    hops.upgrade(MONGO, "7.0")
    hops.advance(HOP_SECONDS + 1)
    rule = {"product": "dds", "action": "DescribeAvailableEngineVersion", "error_rate": 1.0,
            "error_code": "InvalidDBInstanceId.NotFound", "error_status": 404}  # fmt: skip
    hops.faults([rule])

    hops.tick()

    latest = hops.upgrader().status(MONGO)
    assert latest is not None
    assert (latest.status, latest.hop, latest.reason) == ("failed", 2, "not_found")
    assert "stays at 5.0" in str(latest.message)
    assert hop_calls(hops) == ["5.0"]
    assert hops.upgrader().store.claim_of(MONGO) is None


def test_more_hops_than_allowed_is_refused_naming_the_limit(hops: TrackBench) -> None:
    request = parse_request({"instance_id": MONGO, "target_version": "7.0"}, source="cli")
    refused = hops.upgrader(DBUPGRADE_MAX_HOPS="2").run(request)

    assert (refused.status, refused.reason) == ("rejected", "not_offered")
    assert "DBUPGRADE_MAX_HOPS=2" in str(refused.message) and "4.4 -> 5.0 -> 6.0 -> 7.0" in str(
        refused.message
    )
    assert hop_calls(hops) == []


def test_progress_is_kept_on_the_followed_outcome_without_notifying(hops: TrackBench) -> None:
    hops.upgrade(MONGO, "5.0")
    hops.advance(HOP_SECONDS / 2)

    hops.tick()

    followed = hops.upgrader().status(MONGO)
    assert followed is not None and followed.status == "submitted"
    assert 40 <= float(followed.progress or 0) <= 60
    assert 250 <= int(followed.remaining_seconds or 0) <= 350
    assert (followed.current_step, followed.task_status) == ("exec_task", "Running")
    assert [n["event"] for n in hops.published() if n["instance_id"] == MONGO] == ["upgrade.submitted"]
    history = hops.calls("DescribeHistoryTasks")
    assert len(history) == 1 and history[0]["params"]["InstanceId"] == MONGO
    hops.advance(HOP_SECONDS)
    hops.tick()
    assert hops.upgrader().status(MONGO).status == "completed"  # type: ignore[union-attr]


def test_one_history_call_covers_every_followed_instance(hops: TrackBench) -> None:
    hops.upgrade(MONGO, "5.0")
    hops.upgrade(OTHER, "5.0")
    hops.advance(60)

    hops.tick()

    [call] = hops.calls("DescribeHistoryTasks")
    assert sorted(call["params"]["InstanceId"].split(",")) == [MONGO, OTHER]
    for instance in (MONGO, OTHER):
        assert hops.upgrader().status(instance).progress is not None  # type: ignore[union-attr]
