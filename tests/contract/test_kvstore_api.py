"""Contract: the official R-kvstore client (alibabacloud-r-kvstore20150101) against localcloud.

Each describe, the deployment mode as NodeType/InstanceClass show it (and seeds that contradict
themselves), the major-version rules per mode, DescribeEngineVersion's flags, Memcache, the busy
instance (booked or running upgrade, a running task), the major-version upgrade and its state machine on the emulated clock (advanced
through ``POST /_localcloud/clock``), the maintenance-window wait, the failure-marked instance,
every refusal through the raised exception's ``code`` and ``status_code``, and ``--state`` persistence.
"""

from __future__ import annotations

from typing import Any

import pytest
from alibabacloud_r_kvstore20150101 import models as m
from alibabacloud_r_kvstore20150101.client import Client

from tests.contract.helpers import advance, call_api, hhmm, openapi_config, refused, seconds_until

CLASSIC = {"NodeType": "double", "InstanceClass": "redis.master.small.default"}
NATIVE = {"NodeType": "MASTER_SLAVE", "InstanceClass": "redis.shard.small.2.ce"}


def redis(iid: str, version: str, mode: dict[str, str] | None = None, **extra: Any) -> dict[str, Any]:
    """A seed entry; ``mode`` (CLASSIC / NATIVE) states NodeType and InstanceClass, None leaves both out."""
    return {
        "InstanceId": iid,
        "RegionId": "cn-hangzhou",
        "EngineVersion": version,
        "InstanceStatus": "Normal",
        **(mode or {}),
        "MaintainStartTime": "18:00Z",
        "MaintainEndTime": "19:00Z",
        **extra,
    }


def seed() -> dict[str, Any]:
    return {
        "redis": [
            redis("r-bp1classic000001", "5.0", CLASSIC, Tags={"env": "prod", "team": "orders"}),
            redis("r-bp1classic000004", "4.0", CLASSIC, Tags={"env": "staging"}),
            redis("r-bp1native0000006", "6.0", NATIVE, Tags={"env": "prod"}),
            redis("r-bp1native0000007", "7.0", NATIVE),
            redis("r-bp1shanghai00001", "6.0", NATIVE, RegionId="cn-shanghai"),
            redis("r-bp1failing000001", "6.0", NATIVE, FailUpgrade=True),
            # the window opens two hours from now and lasts an hour
            redis(
                "r-bp1windowed00001",
                "6.0",
                NATIVE,
                MaintainStartTime=hhmm(7200),
                MaintainEndTime=hhmm(10800),
            ),
            redis("r-bp1flushing00001", "6.0", NATIVE, InstanceStatus="Flushing"),
            # no NodeType / InstanceClass: placed by version (2.8 classic, 5.0 cloud-native)
            redis("r-bp1classic000028", "2.8"),
            redis("r-bp1native0000005", "5.0"),
            redis("r-bp1memcache00001", "2.8", InstanceType="Memcache"),
            redis("r-bp1backup0000001", "6.0", NATIVE, RunningTask="Backup", RunningTaskSeconds=60),
            redis("r-bp1backupever001", "6.0", NATIVE, RunningTask="Backup"),
            redis("r-bp1oldminor00001", "6.0", NATIVE, IsLatestVersion=False),
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

    assert (body.total_count, body.page_number, body.page_size) == (13, 2, 3)
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


def test_the_deployment_mode_shows_only_in_node_type_and_instance_class(client):
    # The real API has no DeploymentMode field; the raw body (what a call_api caller sees) has none.
    def raw(iid: str) -> dict[str, Any]:
        body = call_api(client, "DescribeInstanceAttribute", {"InstanceId": iid})["body"]
        return body["Instances"]["DBInstanceAttribute"][0]

    classic, native = raw("r-bp1classic000001"), raw("r-bp1native0000006")
    assert "DeploymentMode" not in classic and "DeploymentMode" not in native
    assert (classic["NodeType"], classic["InstanceClass"]) == ("double", "redis.master.small.default")
    assert (native["NodeType"], native["InstanceClass"]) == ("MASTER_SLAVE", "redis.shard.small.2.ce")
    listed = client.describe_instances(m.DescribeInstancesRequest(instance_ids="r-bp1classic000001")).body
    assert "DeploymentMode" not in listed.to_map()["Instances"]["KVStoreInstance"][0]


def test_a_seed_without_node_type_is_placed_by_its_version(client):
    # 2.8 runs only on classic instances; 5.0 is the default version of a new cloud-native one.
    old, new = attribute(client, "r-bp1classic000028"), attribute(client, "r-bp1native0000005")
    assert (old.node_type, old.instance_class.endswith((".ce", ".ee"))) == ("double", False)
    assert (new.node_type, new.instance_class.endswith(".ce")) == ("MASTER_SLAVE", True)


@pytest.mark.parametrize(
    ("entry", "complaint"),
    [
        (
            redis("r-bp1mixed00000001", "6.0", NodeType="double", InstanceClass="redis.shard.small.2.ce"),
            "NodeType",
        ),
        (redis("r-bp1mixed00000001", "6.0", CLASSIC), "EngineVersion 6.0"),  # classic runs 2.8-5.0
        (redis("r-bp1mixed00000001", "4.0", NATIVE), "EngineVersion 4.0"),  # cloud-native runs 5.0-7.0
        (redis("r-bp1mixed00000001", "6.0", DeploymentMode="cloud_native"), "DeploymentMode"),
    ],
    ids=["node-type-vs-class", "classic-6.0", "native-4.0", "invented-key"],
)
def test_a_seed_that_contradicts_itself_is_refused_naming_the_instance(make_localcloud, entry, complaint):
    with pytest.raises(ValueError, match=complaint) as caught:
        make_localcloud({"redis": [entry]})
    assert "r-bp1mixed00000001" in str(caught.value)


def test_memcache_instances_are_listed_with_their_instance_type(client):
    request = m.DescribeInstancesRequest(instance_ids="r-bp1memcache00001,r-bp1native0000006")
    listed = client.describe_instances(request).body.instances.kvstore_instance
    assert [(i.instance_id, i.instance_type) for i in listed] == [
        ("r-bp1native0000006", "Redis"),
        ("r-bp1memcache00001", "Memcache"),
    ]


def engine_version(client: Client, iid: str) -> m.DescribeEngineVersionResponseBody:
    return client.describe_engine_version(m.DescribeEngineVersionRequest(instance_id=iid)).body


@pytest.mark.parametrize(
    ("iid", "enabled"),
    [
        ("r-bp1classic000028", True),  # classic 2.8 -> 4.0/5.0
        ("r-bp1classic000004", True),  # classic 4.0 -> 5.0
        ("r-bp1classic000001", False),  # 5.0 is the newest classic major
        ("r-bp1native0000005", True),  # cloud-native 5.0 -> 6.0/7.0
        ("r-bp1native0000006", True),  # 6.0 -> 7.0
        ("r-bp1native0000007", False),
        ("r-bp1memcache00001", False),
    ],
)
def test_describe_engine_version_allows_a_major_upgrade_only_within_the_deployment_mode(client, iid, enabled):
    body = engine_version(client, iid)
    assert body.major_version == attribute(client, iid).engine_version
    assert body.enable_upgrade_major_version is enabled


def test_describe_engine_version_names_the_engine_and_whether_the_minor_version_is_the_newest(lc, client):
    memcache, current, behind = (
        engine_version(client, iid)
        for iid in ("r-bp1memcache00001", "r-bp1native0000006", "r-bp1oldminor00001")
    )
    assert (memcache.engine, current.engine) == ("memcache", "redis")
    assert (current.is_latest_version, current.enable_upgrade_minor_version) == (True, False)
    assert current.minor_version == current.dblatest_minor_version.minor_version
    assert (behind.is_latest_version, behind.enable_upgrade_minor_version) == (False, True)
    assert behind.minor_version != behind.dblatest_minor_version.minor_version
    # A major upgrade lands on the newest minor version of the new major.
    upgrade(client, "r-bp1oldminor00001", "7.0")
    advance(lc, 2)
    after = engine_version(client, "r-bp1oldminor00001")
    assert (after.major_version, after.is_latest_version, after.enable_upgrade_major_version) == (
        "7.0",
        True,
        False,
    )


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


@pytest.mark.parametrize(
    ("iid", "version"),
    [("r-bp1native0000005", "7.0"), ("r-bp1native0000005", "6.0"), ("r-bp1classic000028", "5.0")],
    ids=["cloud-native-5.0-to-7.0", "cloud-native-5.0-to-6.0", "classic-2.8-to-5.0"],
)
def test_an_upgrade_within_the_deployment_mode_is_accepted_and_completes(lc, client, iid, version):
    upgrade(client, iid, version)
    advance(lc, 2)

    done = attribute(client, iid)
    assert (done.instance_status, done.engine_version) == ("Normal", version)


def test_an_upgrading_instance_refuses_a_second_upgrade_as_a_task_conflict(client):
    upgrade(client, "r-bp1classic000004", "5.0")
    assert refused(upgrade, client, "r-bp1classic000004", "5.0")[:2] == ("Task.Conflict", 403)


def test_an_upgrade_booked_for_the_window_refuses_a_second_one_and_keeps_the_first(lc, client):
    upgrade(client, "r-bp1windowed00001", "7.0", "MaintainTime")

    code, status, message = refused(upgrade, client, "r-bp1windowed00001", "7.0", "Immediately")
    assert (code, status, "booked" in message) == ("Task.Conflict", 403, True)
    assert attribute(client, "r-bp1windowed00001").instance_status == "Normal"  # not started now
    advance(lc, seconds_until(lc, attribute(client, "r-bp1windowed00001").maintain_start_time) + 3)
    assert attribute(client, "r-bp1windowed00001").engine_version == "7.0"


def test_a_running_backup_refuses_the_upgrade_while_the_status_stays_normal_until_it_ends(lc, client):
    code, status, message = refused(upgrade, client, "r-bp1backup0000001", "7.0")
    assert (code, status, "Backup" in message) == ("Task.Conflict", 403, True)
    assert attribute(client, "r-bp1backup0000001").instance_status == "Normal"

    advance(lc, 60)
    upgrade(client, "r-bp1backup0000001", "7.0")
    assert attribute(client, "r-bp1backup0000001").instance_status == "MajorVersionUpgrading"


def test_a_task_without_an_end_keeps_refusing(lc, client):
    advance(lc, 86400)
    assert refused(upgrade, client, "r-bp1backupever001", "7.0")[:2] == ("Task.Conflict", 403)


def test_a_memcache_instance_has_no_major_version_upgrade(client):
    assert refused(upgrade, client, "r-bp1memcache00001", "5.0")[:2] == ("InstanceType.NotSupport", 403)
    assert attribute(client, "r-bp1memcache00001").instance_status == "Normal"


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


def test_the_older_effect_time_parameter_name_is_accepted(lc, client):
    query = {"InstanceId": "r-bp1windowed00001", "MajorVersion": "7.0", "EffectTime": "MaintainTime"}
    call_api(client, "ModifyInstanceMajorVersion", query)

    assert attribute(client, "r-bp1windowed00001").instance_status == "Normal"  # waits for its window


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
        ("r-bp1classic000004", "6.0", "IncorrectEngineVersion", 403),  # classic 4.0 -> cloud-native
        ("r-bp1classic000028", "7.0", "IncorrectEngineVersion", 403),  # classic 2.8 -> cloud-native
        ("r-bp1native0000005", "5.0", "IncorrectEngineVersion", 403),  # 5.0 is no cloud-native target
        ("r-bp1native0000006", "9.9", "InvalidParameter", 400),
    ],
    ids=[
        "unknown",
        "not-normal",
        "same",
        "downgrade",
        "classic-5.0-to-6.0",
        "classic-4.0-to-6.0",
        "classic-2.8-to-7.0",
        "native-5.0-to-5.0",
        "unknown-version",
    ],
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
    advance(first, 60)  # the seeded backup of r-bp1backup0000001 ends
    upgrade(client_for(first), "r-bp1native0000006", "7.0")
    first.cloud.save()

    second = make_localcloud(seed(), state_file=state)
    client = client_for(second)
    assert attribute(client, "r-bp1native0000006").instance_status == "MajorVersionUpgrading"
    advance(second, 2)
    assert attribute(client, "r-bp1native0000006").engine_version == "7.0"
    upgrade(client, "r-bp1backup0000001", "7.0")  # the ended backup stays ended
    assert refused(upgrade, client, "r-bp1backupever001", "7.0")[:2] == ("Task.Conflict", 403)
