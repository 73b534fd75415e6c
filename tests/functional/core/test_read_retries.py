"""Reads are retried after a lost reply (#12.5): only the upgrade call is ambiguous.

localcloud's ``lost_reply_rate`` processes the call and closes the connection without a reply. The
rule's draws are deterministic for a seed, so each test picks the seed whose first call of the action
loses its reply and whose second does not (asked of localcloud's own fault engine, never guessed).
"""

from __future__ import annotations

from dbupgrade.request import parse_request

from localcloud.faults import Faults
from tests.functional.core.conftest import Bench


def lose_first_reply(bench: Bench, product: str, action: str) -> None:
    """Lose the reply of ``action``'s first call only (the seed is found with localcloud's own engine)."""
    rule = {"product": product, "action": action, "lost_reply_rate": 0.5}
    for seed in range(1000):
        faults = Faults({"seed": seed, "rules": [rule]})
        if [faults.decide(product, action).lost_reply for _ in range(3)] == [True, False, False]:
            bench.faults([rule], seed=seed)
            return
    raise AssertionError("no seed loses only the first reply")


def test_a_lost_describe_reply_is_retried_and_the_upgrade_submitted_once(bench: Bench) -> None:
    lose_first_reply(bench, "r-kvstore", "DescribeInstanceAttribute")
    request = parse_request({"instance_id": "r-bp1ready0000001", "target_version": "7.0"}, source="cli")

    outcome = bench.upgrader().run(request)

    assert (outcome.status, outcome.reason) == ("submitted", None)
    describes = bench.calls("DescribeInstanceAttribute", instance_id="r-bp1ready0000001")
    assert [c["fault"] for c in describes] == ["lost_reply", None]
    assert len(bench.upgrade_calls("r-bp1ready0000001")) == 1
    assert [n["event"] for n in bench.published()] == ["upgrade.submitted"]


def test_a_lost_reply_of_the_offered_versions_is_retried(bench: Bench) -> None:
    lose_first_reply(bench, "dds", "DescribeAvailableEngineVersion")
    request = parse_request({"instance_id": "dds-bp1ready000001", "target_version": "5.0"}, source="cli")

    outcome = bench.upgrader().run(request)

    assert outcome.status == "submitted"
    assert len(bench.calls("DescribeAvailableEngineVersion")) == 2
    assert len(bench.upgrade_calls("dds-bp1ready000001")) == 1


def test_a_lost_page_of_a_selection_is_fetched_again(bench: Bench) -> None:
    lose_first_reply(bench, "r-kvstore", "DescribeInstances")

    found = bench.upgrader().select({"engine": "redis", "tags": {"env": "prod"}, "from_versions": ["6.0"]})

    assert sorted(f["instance_id"] for f in found) == [f"r-bp1fleet00000{n}" for n in range(8)]
    assert [c["fault"] for c in bench.calls("DescribeInstances")] == ["lost_reply", None]


def test_the_upgrade_call_alone_is_never_resent_after_a_lost_reply(bench: Bench) -> None:
    bench.faults([{"product": "r-kvstore", "action": "ModifyInstanceMajorVersion", "lost_reply_rate": 1.0}])
    request = parse_request({"instance_id": "r-bp1ready0000002", "target_version": "7.0"}, source="cli")

    outcome = bench.upgrader().run(request)

    assert (outcome.status, outcome.reason) == ("submitted", "reconciled")
    assert len(bench.upgrade_calls("r-bp1ready0000002")) == 1
