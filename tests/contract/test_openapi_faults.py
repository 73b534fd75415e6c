"""Contract: injected faults as the official clients experience them.

Throttle rates are observed and reproduce exactly for the same fault seed; a lost reply changes
state while the client sees a broken connection; a drop changes nothing; a per-action QPS limit
answers Throttling.User; tea-openapi raises ThrottlingException when ``x-acs-retry-after`` is sent;
a rule naming an error code (a busy code, Rejected.Throttling) answers that code and status.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
import requests
from alibabacloud_dds20151201 import models as dds_models
from alibabacloud_dds20151201.client import Client as DdsClient
from alibabacloud_r_kvstore20150101 import models as m
from alibabacloud_r_kvstore20150101.client import Client
from alibabacloud_tea_openapi.exceptions import ClientException, ServerException, ThrottlingException
from darabonba.exceptions import UnretryableException

from localcloud.faults import Faults
from tests.contract.helpers import openapi_config, set_faults

SEED: dict[str, Any] = {
    "redis": [
        {"InstanceId": "r-bp1fault00000001", "RegionId": "cn-hangzhou", "EngineVersion": "6.0",
         "InstanceStatus": "Normal", "NodeType": "MASTER_SLAVE"},
    ],
    "mongodb": [
        {"DBInstanceId": "dds-bp1fault0000001", "RegionId": "cn-hangzhou", "EngineVersion": "4.4",
         "DBInstanceStatus": "Running", "DBInstanceType": "replicate"},
    ],
    "upgrade_seconds": 2,
}  # fmt: skip
IID = "r-bp1fault00000001"


def client_for(lc) -> Client:
    return Client(openapi_config(lc))


def describe(client: Client) -> m.DescribeInstanceAttributeResponseBodyInstancesDBInstanceAttribute:
    body = client.describe_instance_attribute(m.DescribeInstanceAttributeRequest(instance_id=IID)).body
    return body.instances.dbinstance_attribute[0]


def upgrade(client: Client) -> None:
    client.modify_instance_major_version(
        m.ModifyInstanceMajorVersionRequest(instance_id=IID, major_version="7.0")
    )


def outcome(fn, *args: Any) -> str:
    try:
        fn(*args)
    except ClientException as exc:
        return exc.code
    return "ok"


def faulted(make_localcloud, rule: dict[str, Any], seed: int = 1):
    """A localcloud from SEED with one fault rule in force."""
    lc = make_localcloud(SEED)
    set_faults(lc, seed=seed, rules=[rule])
    return lc


def upgrade_over_a_broken_connection(lc) -> Client:
    """The upgrade call must end in a broken connection; the client, to look at what changed."""
    client = client_for(lc)
    with pytest.raises(UnretryableException):
        upgrade(client)
    return client


def throttled_sequence(make_localcloud, seed: int, calls: int) -> list[str]:
    rule = {"product": "r-kvstore", "action": "DescribeInstances", "throttle_rate": 0.3}
    client = client_for(faulted(make_localcloud, rule, seed))
    request = m.DescribeInstancesRequest(region_id="cn-hangzhou")
    return [outcome(client.describe_instances, request) for _ in range(calls)]


def test_a_30_percent_throttle_rate_is_observed_and_reproduces_exactly_with_the_same_seed(make_localcloud):
    first = throttled_sequence(make_localcloud, seed=7, calls=400)
    again = throttled_sequence(make_localcloud, seed=7, calls=400)
    other = throttled_sequence(make_localcloud, seed=8, calls=100)

    assert set(first) == {"ok", "Throttling.User"}
    assert 0.24 <= first.count("Throttling.User") / 400 <= 0.36
    assert again == first
    assert other != first[:100]


def test_a_throttle_only_hits_the_action_its_rule_names(make_localcloud):
    lc = faulted(make_localcloud, {"action": "ModifyInstanceMajorVersion", "throttle_rate": 1.0})
    client = client_for(lc)

    assert outcome(describe, client) == "ok"
    assert outcome(upgrade, client) == "Throttling.User"
    assert describe(client).instance_status == "Normal"  # a throttled call is not processed
    logged = lc.cloud.calls.query({"action": "ModifyInstanceMajorVersion"})
    assert [(c["status"], c["code"], c["fault"]) for c in logged] == [(400, "Throttling.User", "throttle")]


def test_a_lost_reply_processes_the_upgrade_but_the_client_sees_a_broken_connection(make_localcloud):
    lc = faulted(make_localcloud, {"action": "ModifyInstanceMajorVersion", "lost_reply_rate": 1.0})

    client = upgrade_over_a_broken_connection(lc)

    assert describe(client).instance_status == "MajorVersionUpgrading"
    logged = lc.cloud.calls.query({"action": "ModifyInstanceMajorVersion"})
    assert [(c["status"], c["fault"]) for c in logged] == [(200, "lost_reply")]


def test_a_dropped_call_is_not_processed(make_localcloud):
    lc = faulted(make_localcloud, {"action": "ModifyInstanceMajorVersion", "drop_rate": 1.0})

    client = upgrade_over_a_broken_connection(lc)

    assert describe(client).instance_status == "Normal"
    assert [c["fault"] for c in lc.cloud.calls.query({"action": "ModifyInstanceMajorVersion"})] == ["drop"]


def test_an_injected_error_is_a_503_service_unavailable(make_localcloud):
    lc = faulted(make_localcloud, {"product": "r-kvstore", "error_rate": 1.0})

    with pytest.raises(ServerException) as caught:
        describe(client_for(lc))

    assert (caught.value.code, caught.value.status_code) == ("ServiceUnavailable", 503)


def test_a_throttle_with_retry_after_raises_tea_openapis_throttling_exception(make_localcloud):
    lc = faulted(
        make_localcloud, {"action": "DescribeInstanceAttribute", "throttle_rate": 1.0, "retry_after_ms": 250}
    )

    with pytest.raises(ThrottlingException) as caught:
        describe(client_for(lc))

    assert (caught.value.code, caught.value.status_code, caught.value.retry_after) == (
        "Throttling.User",
        400,
        250,
    )


def test_a_rate_limit_answers_throttling_past_n_calls_per_second(make_localcloud):
    seed = dict(SEED, rate_limits={"DescribeInstanceAttribute": 3})
    lc = make_localcloud(seed)
    client = client_for(lc)

    outcomes = []
    for _ in range(30):
        try:
            describe(client)
            outcomes.append("ok")
        except ThrottlingException as exc:  # the limit says when to come back
            assert exc.retry_after > 0
            outcomes.append(exc.code)

    assert outcomes[:3] == ["ok"] * 3  # a full bucket: one second's worth of calls
    assert "Throttling.User" in outcomes
    assert outcomes.count("ok") < 30
    assert outcome(upgrade, client) == "ok"  # other actions are not limited
    logged = lc.cloud.calls.query({"code": "Throttling.User"})
    assert {c["fault"] for c in logged} == {"rate_limit"}


def test_an_error_rule_naming_a_code_answers_that_code_and_status_and_changes_nothing(make_localcloud):
    rule = {
        "product": "dds",
        "action": "UpgradeDBInstanceEngineVersion",
        "error_rate": 1,
        "error_code": "OperationDenied.DBInstanceStatus",
        "error_status": 403,
    }
    lc = faulted(make_localcloud, rule)
    client = DdsClient(openapi_config(lc))
    request = dds_models.UpgradeDBInstanceEngineVersionRequest(
        dbinstance_id="dds-bp1fault0000001", engine_version="5.0"
    )

    with pytest.raises(ClientException) as caught:
        client.upgrade_dbinstance_engine_version(request)

    assert (caught.value.code, caught.value.status_code) == ("OperationDenied.DBInstanceStatus", 403)
    attribute = dds_models.DescribeDBInstanceAttributeRequest(dbinstance_id="dds-bp1fault0000001")
    inst = client.describe_dbinstance_attribute(attribute).body.dbinstances.dbinstance[0]
    assert (inst.dbinstance_status, inst.engine_version) == ("Running", "4.4")
    logged = lc.cloud.calls.query({"action": "UpgradeDBInstanceEngineVersion"})
    assert [(c["status"], c["code"], c["fault"]) for c in logged] == [
        (403, "OperationDenied.DBInstanceStatus", "error")
    ]


# Every upgrade call refused with a named error code and message of its own.
UPGRADE_REJECTED = {
    "product": "r-kvstore",
    "action": "ModifyInstanceMajorVersion",
    "error_rate": 1,
    "error_code": "Rejected.Throttling",
    "error_message": "The request was rejected by flow control.",
}


def test_rejected_throttling_can_be_injected_with_its_own_message(make_localcloud):
    client = client_for(faulted(make_localcloud, UPGRADE_REJECTED))

    with pytest.raises(ClientException) as caught:
        upgrade(client)

    assert (caught.value.code, caught.value.status_code) == ("Rejected.Throttling", 400)
    assert "rejected by flow control" in caught.value.message
    assert describe(client).instance_status == "Normal"


@pytest.mark.parametrize(
    ("rule", "complaint"),
    [
        ({"product": "mns", "error_rate": 1, "error_code": "Task.Conflict"}, "product"),
        ({"error_rate": 1, "error_code": "Task.Conflict"}, "product"),
        (
            {"product": "dds", "error_rate": 1, "error_code": "Task.Conflict", "error_status": 200},
            "error_status",
        ),
    ],
    ids=["mns", "every-product", "not-an-error-status"],
)
def test_a_named_error_code_needs_an_openapi_product_and_an_error_status(rule, complaint):
    with pytest.raises(ValueError, match=complaint):
        Faults({"rules": [rule]})


def test_a_slowed_call_is_listed_in_flight_while_served_and_logged_once_answered(make_localcloud):
    lc = faulted(make_localcloud, {"action": "DescribeInstanceAttribute", "latency_ms": 1500})
    in_flight = {"action": "DescribeInstanceAttribute", "instance_id": IID, "in_flight": "1"}
    served = threading.Thread(target=describe, args=(client_for(lc),))
    served.start()
    deadline = time.monotonic() + 10
    while not lc.cloud.calls.query(in_flight) and time.monotonic() < deadline:
        time.sleep(0.01)
    listed = lc.cloud.calls.query(in_flight)
    assert [(c["product"], c["params"]["InstanceId"]) for c in listed] == [("r-kvstore", IID)]
    assert lc.cloud.calls.query({"action": "DescribeInstanceAttribute"}) == []  # not answered yet
    served.join()
    assert lc.cloud.calls.query(in_flight) == []
    answered = lc.cloud.calls.query({"action": "DescribeInstanceAttribute"})
    assert [(c["status"], c["request_id"]) for c in answered] == [(200, listed[0]["request_id"])]


def test_counted_calls_are_the_listed_calls_per_product_and_action(make_localcloud):
    """``?count=1`` (a benchmark's meter) answers what the listing would, summed per action."""
    lc = faulted(make_localcloud, UPGRADE_REJECTED)
    client = client_for(lc)
    describe(client)
    describe(client)
    assert outcome(upgrade, client) == "Rejected.Throttling"

    def counted(**filters: str) -> list[dict[str, Any]]:
        reply = requests.get(f"{lc.url}/_localcloud/calls", params={"count": "1", **filters}, timeout=10)
        return list(reply.json()["counts"])

    assert counted() == [
        {"product": "r-kvstore", "action": "DescribeInstanceAttribute", "calls": 2},
        {"product": "r-kvstore", "action": "ModifyInstanceMajorVersion", "calls": 1},
    ]
    assert counted(status="200") == [
        {"product": "r-kvstore", "action": "DescribeInstanceAttribute", "calls": 2}
    ]
    listed = requests.get(f"{lc.url}/_localcloud/calls", timeout=10).json()["calls"]
    assert len(listed) == 3
