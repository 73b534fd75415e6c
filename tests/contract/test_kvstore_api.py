"""Contract: the official R-kvstore client (alibabacloud-r-kvstore20150101) against localcloud.

Each describe, the major-version upgrade and its state machine on the emulated clock (advanced
through ``POST /_localcloud/clock``), the maintenance-window wait, the failure-marked instance,
every refusal through the raised exception's ``code`` and ``status_code``, and ``--state`` persistence.
"""

from __future__ import annotations

from typing import Any

import pytest
from alibabacloud_r_kvstore20150101 import models as m
from alibabacloud_r_kvstore20150101.client import Client

from tests.contract.helpers import advance, hhmm, openapi_config, refused, seconds_until


def redis(iid: str, version: str, mode: str, **extra: Any) -> dict[str, Any]:
    return {
        "InstanceId": iid,
        "RegionId": "cn-hangzhou",
        "EngineVersion": version,
        "InstanceStatus": "Normal",
        "DeploymentMode": mode,
        "MaintainStartTime": "18:00Z",
        "MaintainEndTime": "19:00Z",
        **extra,
    }


def seed() -> dict[str, Any]:
    return {
        "redis": [
            redis("r-bp1classic000001", "5.0", "classic", Tags={"env": "prod", "team": "orders"}),
            redis("r-bp1classic000004", "4.0", "classic", Tags={"env": "staging"}),
            redis("r-bp1native0000006", "6.0", "cloud_native", Tags={"env": "prod"}),
            redis("r-bp1native0000007", "7.0", "cloud_native"),
            redis("r-bp1shanghai00001", "6.0", "cloud_native", RegionId="cn-shanghai"),
            redis("r-bp1failing000001", "6.0", "cloud_native", FailUpgrade=True),
            # the window opens two hours from now and lasts an hour
            redis(
                "r-bp1windowed00001",
                "6.0",
                "cloud_native",
                MaintainStartTime=hhmm(7200),
                MaintainEndTime=hhmm(10800),
            ),
            redis("r-bp1flushing00001", "6.0", "cloud_native", InstanceStatus="Flushing"),
        ],
        "upgrade_seconds": 2,
    }


@pytest.fixture
def lc(make_localcloud):
    return make_localcloud(seed())


def client_for(lc) -> Client:
    return Client(openapi_config(lc))


@pytest.fixture
def client(lc) -> Client:
    return client_for(lc)


def attribute(
    client: Client, iid: str
) -> m.DescribeInstanceAttributeResponseBodyInstancesDBInstanceAttribute:
    body = client.describe_instance_attribute(m.DescribeInstanceAttributeRequest(instance_id=iid)).body
    return body.instances.dbinstance_attribute[0]


def upgrade(client: Client, iid: str, version: str, effective: str | None = None) -> str:
    request = m.ModifyInstanceMajorVersionRequest(
        instance_id=iid, major_version=version, effective_time=effective
    )
    return client.modify_instance_major_version(request).body.request_id


# --- describes -------------------------------------------------------------------------------------


def ids(body: m.DescribeInstancesResponseBody) -> list[str]:
    return [i.instance_id for i in body.instances.kvstore_instance]


def test_describe_instances_filters_by_region_ids_status_and_tags(client):
    def listed(**kw: Any) -> list[str]:
        return ids(client.describe_instances(m.DescribeInstancesRequest(**kw)).body)

    assert listed(region_id="cn-shanghai") == ["r-bp1shanghai00001"]
    assert listed(instance_ids="r-bp1classic000001,r-bp1native0000007") == [
        "r-bp1classic000001",
        "r-bp1native0000007",
    ]
    assert listed(instance_status="Flushing") == ["r-bp1flushing00001"]
    prod = [m.DescribeInstancesRequestTag(key="env", value="prod")]
    assert listed(region_id="cn-hangzhou", tag=prod) == ["r-bp1classic000001", "r-bp1native0000006"]
    keyed = [m.DescribeInstancesRequestTag(key="team")]
    assert listed(tag=keyed) == ["r-bp1classic000001"]


def test_describe_instances_pages(client):
    body = client.describe_instances(
        m.DescribeInstancesRequest(region_id="cn-hangzhou", page_size=3, page_number=2)
    ).body

    assert (body.total_count, body.page_number, body.page_size) == (7, 2, 3)
    assert ids(body) == ["r-bp1native0000007", "r-bp1failing000001", "r-bp1windowed00001"]
    listed = body.instances.kvstore_instance[0]
    assert (listed.engine_version, listed.instance_status, listed.region_id) == (
        "7.0",
        "Normal",
        "cn-hangzhou",
    )


def test_describe_instances_refuses_a_page_size_over_50(client):
    request = m.DescribeInstancesRequest(page_size=51)
    code, status, message = refused(client.describe_instances, request)
    assert (code, status) == ("InvalidParameter", 400)
    assert "PageSize" in message


def test_describe_instance_attribute_has_the_real_keys_and_tags(client):
    body = client.describe_instance_attribute(
        m.DescribeInstanceAttributeRequest(instance_id="r-bp1classic000001")
    ).body.to_map()

    attrs = body["Instances"]["DBInstanceAttribute"][0]
    for key in (
        "InstanceId",
        "EngineVersion",
        "InstanceStatus",
        "ArchitectureType",
        "InstanceType",
        "MaintainStartTime",
        "MaintainEndTime",
        "RegionId",
        "ZoneId",
        "Engine",
        "Capacity",
    ):
        assert key in attrs, key
    assert attrs["Tags"] == {"Tag": [{"Key": "env", "Value": "prod"}, {"Key": "team", "Value": "orders"}]}


def test_describe_engine_version_allows_a_major_upgrade_only_within_the_deployment_mode(client):
    def enabled(iid: str) -> bool:
        body = client.describe_engine_version(m.DescribeEngineVersionRequest(instance_id=iid)).body
        assert body.major_version == attribute(client, iid).engine_version
        return body.enable_upgrade_major_version

    assert enabled("r-bp1classic000004") is True  # 4.0 -> 5.0
    assert enabled("r-bp1classic000001") is False  # 5.0 is the newest classic
    assert enabled("r-bp1native0000006") is True  # 6.0 -> 7.0
    assert enabled("r-bp1native0000007") is False


def test_unknown_instance_is_not_found_and_another_region_hides_it(client):
    assert refused(attribute, client, "r-bp1nosuchinstance")[:2] == ("InvalidInstanceId.NotFound", 404)
    request = m.DescribeInstancesRequest(region_id="cn-hangzhou", instance_ids="r-bp1shanghai00001")
    assert client.describe_instances(request).body.total_count == 0


# --- the upgrade ----------------------------------------------------------------------------------


def test_an_immediate_upgrade_runs_for_upgrade_seconds_of_emulated_time(lc, client):
    request_id = upgrade(client, "r-bp1native0000006", "7.0")

    assert request_id
    now = attribute(client, "r-bp1native0000006")
    assert (now.instance_status, now.engine_version) == ("MajorVersionUpgrading", "6.0")
    advance(lc, 2)
    done = attribute(client, "r-bp1native0000006")
    assert (done.instance_status, done.engine_version) == ("Normal", "7.0")
    logged = [c for c in lc.cloud.calls.query({"action": "ModifyInstanceMajorVersion"})]
    assert [(c["params"], c["status"], c["request_id"]) for c in logged] == [
        ({"InstanceId": "r-bp1native0000006", "MajorVersion": "7.0"}, 200, request_id)
    ]


def test_an_upgrading_instance_refuses_a_second_upgrade(client):
    upgrade(client, "r-bp1classic000004", "5.0")
    assert refused(upgrade, client, "r-bp1classic000004", "5.0")[:2] == ("InstanceStatus.NotSupport", 403)


def test_a_maintenance_window_upgrade_waits_for_the_window(lc, client):
    upgrade(client, "r-bp1windowed00001", "7.0", "MaintainTime")

    assert attribute(client, "r-bp1windowed00001").instance_status == "Normal"
    advance(lc, 3600)  # still an hour before the window
    assert attribute(client, "r-bp1windowed00001").instance_status == "Normal"
    advance(lc, seconds_until(lc, attribute(client, "r-bp1windowed00001").maintain_start_time) + 1)
    inside = attribute(client, "r-bp1windowed00001")
    assert (inside.instance_status, inside.engine_version) == ("MajorVersionUpgrading", "6.0")
    advance(lc, 2)
    done = attribute(client, "r-bp1windowed00001")
    assert (done.instance_status, done.engine_version) == ("Normal", "7.0")


@pytest.mark.parametrize("value", ["1", "MaintainTime"])
def test_effective_time_maintain_time_has_an_older_numeric_form(client, value):
    upgrade(client, "r-bp1windowed00001", "7.0", value)
    assert attribute(client, "r-bp1windowed00001").instance_status == "Normal"


def test_a_failure_marked_instance_ends_in_error_with_its_old_version(lc, client):
    upgrade(client, "r-bp1failing000001", "7.0")
    advance(lc, 2)

    failed = attribute(client, "r-bp1failing000001")
    assert (failed.instance_status, failed.engine_version) == ("Error", "6.0")
    assert refused(upgrade, client, "r-bp1failing000001", "7.0")[:2] == ("InstanceStatus.NotSupport", 403)


@pytest.mark.parametrize(
    ("iid", "version", "code", "status"),
    [
        ("r-bp1nosuchinstance", "7.0", "InvalidInstanceId.NotFound", 404),
        ("r-bp1flushing00001", "7.0", "InstanceStatus.NotSupport", 403),
        ("r-bp1native0000007", "7.0", "IncorrectEngineVersion", 403),  # same version
        ("r-bp1native0000007", "6.0", "IncorrectEngineVersion", 403),  # downgrade
        ("r-bp1classic000001", "6.0", "IncorrectEngineVersion", 403),  # classic -> cloud-native
        ("r-bp1native0000006", "9.9", "InvalidParameter", 400),
    ],
    ids=["unknown", "not-normal", "same", "downgrade", "other-mode", "unknown-version"],
)
def test_refused_upgrades_leave_the_instance_as_it_was(client, iid, version, code, status):
    assert refused(upgrade, client, iid, version)[:2] == (code, status)
    if code != "InvalidInstanceId.NotFound":
        assert attribute(client, iid).instance_status in ("Normal", "Flushing")


def test_missing_and_invalid_parameters_are_named(client):
    code, status, message = refused(upgrade, client, "r-bp1native0000006", None)
    assert (code, status) == ("MissingParameter", 400)
    assert '"MajorVersion"' in message
    code, status, message = refused(upgrade, client, "r-bp1native0000006", "7.0", "Tomorrow")
    assert (code, status) == ("InvalidParameter", 400)
    assert '"EffectiveTime"' in message
    code, status, message = refused(attribute, client, None)
    assert (code, status) == ("MissingParameter", 400)
    assert '"InstanceId"' in message


def test_state_persists_across_a_restart(make_localcloud, tmp_path):
    state = tmp_path / "state.json"
    first = make_localcloud(seed(), state_file=state)
    upgrade(client_for(first), "r-bp1native0000006", "7.0")
    first.cloud.save()

    second = make_localcloud(seed(), state_file=state)
    client = client_for(second)
    assert attribute(client, "r-bp1native0000006").instance_status == "MajorVersionUpgrading"
    advance(second, 2)
    assert attribute(client, "r-bp1native0000006").engine_version == "7.0"
