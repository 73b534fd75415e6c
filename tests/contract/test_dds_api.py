"""Contract: the official Dds client (alibabacloud-dds20151201) against localcloud.

Each describe, the kind of instance (KindCode, StorageType, ReplicationFactor), the next-major-only
offer, the busy instance (booked or running upgrade, a running task), the engine-version upgrade
and its state machine on the emulated clock, the
maintenance-window wait (SwitchMode=1), the failure-marked instance, and every refusal through the
raised exception's ``code`` and ``status_code``.
"""

from __future__ import annotations

from typing import Any

import pytest
from alibabacloud_dds20151201 import models as m
from alibabacloud_dds20151201.client import Client

from tests.contract.helpers import advance, hhmm, openapi_config, refused, seconds_until


def mongo(iid: str, version: str, **extra: Any) -> dict[str, Any]:
    return {
        "DBInstanceId": iid,
        "RegionId": "cn-hangzhou",
        "EngineVersion": version,
        "DBInstanceStatus": "Running",
        "DBInstanceType": "replicate",
        "MaintainStartTime": "18:00Z",
        "MaintainEndTime": "19:00Z",
        **extra,
    }


def seed() -> dict[str, Any]:
    """Built when the fixture loads it: the windowed instance's window opens two hours from then."""
    return {
        "mongodb": [
            mongo("dds-bp1catalog00001", "4.4", Tags={"env": "prod", "team": "catalog"}),
            mongo("dds-bp1events000001", "5.0", DBInstanceType="sharding", Tags={"env": "prod"}),
            mongo("dds-bp1latest000001", "8.0"),
            mongo("dds-bp1shanghai0001", "6.0", RegionId="cn-shanghai"),
            mongo("dds-bp1rebooting001", "4.2", DBInstanceStatus="Rebooting"),
            mongo("dds-bp1failing00001", "5.0", FailUpgrade=True),
            # the window opens two hours from now and lasts an hour
            mongo("dds-bp1windowed0001", "6.0", MaintainStartTime=hhmm(7200), MaintainEndTime=hhmm(10800)),
            mongo("dds-bp1localdisk001", "4.2", KindCode="0", StorageType="local_ssd"),
            mongo("dds-bp1standalone01", "4.0", KindCode="3", ReplicationFactor="1"),
            mongo("dds-bp1cloud40000001", "4.0", KindCode="18", StorageType="cloud_essd1"),
            mongo("dds-bp1backup000001", "6.0", RunningTask="Backup", RunningTaskSeconds=60),
            mongo("dds-bp1backupever01", "6.0", RunningTask="Backup"),
        ],
        "upgrade_seconds": 3,
    }


@pytest.fixture
def lc(make_localcloud):
    return make_localcloud(seed())


@pytest.fixture
def client(lc) -> Client:
    return Client(openapi_config(lc))


def attribute(client: Client, iid: str) -> m.DescribeDBInstanceAttributeResponseBodyDBInstancesDBInstance:
    request = m.DescribeDBInstanceAttributeRequest(dbinstance_id=iid, engine="MongoDB")
    return client.describe_dbinstance_attribute(request).body.dbinstances.dbinstance[0]


def upgrade(client: Client, iid: str, version: str | None, switch_mode: int | None = None) -> str:
    request = m.UpgradeDBInstanceEngineVersionRequest(
        dbinstance_id=iid, engine_version=version, switch_mode=switch_mode
    )
    return client.upgrade_dbinstance_engine_version(request).body.request_id


def available(client: Client, iid: str) -> list[str]:
    request = m.DescribeAvailableEngineVersionRequest(dbinstance_id=iid)
    return client.describe_available_engine_version(request).body.engine_versions.engine_version


# --- describes -------------------------------------------------------------------------------------


def listed(client: Client, **kw: Any) -> list[str]:
    body = client.describe_dbinstances(m.DescribeDBInstancesRequest(**kw)).body
    return [i.dbinstance_id for i in body.dbinstances.dbinstance]


def test_describe_dbinstances_filters_by_region_id_type_and_tags(client):
    assert listed(client, region_id="cn-shanghai") == ["dds-bp1shanghai0001"]
    assert listed(client, dbinstance_id="dds-bp1latest000001") == ["dds-bp1latest000001"]
    assert listed(client, dbinstance_type="sharding") == ["dds-bp1events000001"]
    prod = [m.DescribeDBInstancesRequestTag(key="env", value="prod")]
    # DBInstanceType defaults to replicate (API metadata): a sharded cluster is listed only when asked for.
    assert listed(client, region_id="cn-hangzhou", tag=prod) == ["dds-bp1catalog00001"]
    assert listed(client, tag=prod, dbinstance_type="sharding") == ["dds-bp1events000001"]


def test_describe_dbinstances_pages(make_localcloud):
    # PageSize is one of 30, 50, 100 (API metadata), so a second page needs more than 30 instances.
    many = [mongo(f"dds-bp1page{n:09d}", "5.0") for n in range(32)]
    client = Client(openapi_config(make_localcloud({"mongodb": many})))
    body = client.describe_dbinstances(
        m.DescribeDBInstancesRequest(region_id="cn-hangzhou", page_size=30, page_number=2)
    ).body

    assert (body.total_count, body.page_number, body.page_size) == (32, 2, 30)
    assert [i.dbinstance_id for i in body.dbinstances.dbinstance] == [
        "dds-bp1page000000030",
        "dds-bp1page000000031",
    ]
    first = body.dbinstances.dbinstance[0]
    assert (first.engine, first.engine_version, first.dbinstance_status) == ("MongoDB", "5.0", "Running")


def test_describe_dbinstance_attribute_has_the_real_keys_and_tags(client):
    inst = attribute(client, "dds-bp1catalog00001")

    assert (inst.dbinstance_id, inst.engine_version, inst.dbinstance_status) == (
        "dds-bp1catalog00001",
        "4.4",
        "Running",
    )
    assert (inst.dbinstance_type, inst.region_id, inst.engine) == ("replicate", "cn-hangzhou", "MongoDB")
    assert (inst.maintain_start_time, inst.maintain_end_time) == ("18:00Z", "19:00Z")
    assert [(t.key, t.value) for t in inst.tags.tag] == [("env", "prod"), ("team", "catalog")]


@pytest.mark.parametrize(
    ("iid", "offered"),
    [
        ("dds-bp1cloud40000001", ["4.2"]),
        ("dds-bp1rebooting001", ["4.4"]),  # cloud-disk 4.2
        ("dds-bp1catalog00001", ["5.0"]),
        ("dds-bp1events000001", ["6.0"]),  # a sharded cluster
        ("dds-bp1shanghai0001", ["7.0"]),
        ("dds-bp1latest000001", []),  # already the latest
        ("dds-bp1localdisk001", []),  # a local-disk 4.2 cannot upgrade
        ("dds-bp1standalone01", []),  # nor a standalone 4.0
    ],
)
def test_available_engine_versions_are_only_the_next_major(client, iid, offered):
    assert available(client, iid) == offered


def test_the_kind_of_instance_shows_in_kind_code_storage_type_and_replication_factor(client):
    local, single, events = (
        attribute(client, iid)
        for iid in ("dds-bp1localdisk001", "dds-bp1standalone01", "dds-bp1events000001")
    )
    assert (local.kind_code, local.storage_type, local.replication_factor) == ("0", "local_ssd", "3")
    assert (single.kind_code, single.dbinstance_type, single.replication_factor) == ("3", "replicate", "1")
    assert (events.kind_code, events.dbinstance_type, events.replication_factor) == ("18", "sharding", None)


@pytest.mark.parametrize(
    ("entry", "complaint"),
    [
        (mongo("dds-bp1mixed0000001", "4.2", KindCode="0", StorageType="cloud_essd1"), "StorageType"),
        (mongo("dds-bp1mixed0000001", "4.0", KindCode="3", ReplicationFactor="3"), "ReplicationFactor"),
        (mongo("dds-bp1mixed0000001", "4.0", KindCode="3", DBInstanceType="sharding"), "standalone"),
    ],
    ids=["local-disk-on-cloud-storage", "standalone-with-3-nodes", "standalone-sharding"],
)
def test_a_seed_that_contradicts_itself_is_refused_naming_the_instance(make_localcloud, entry, complaint):
    with pytest.raises(ValueError, match=complaint) as caught:
        make_localcloud({"mongodb": [entry]})
    assert "dds-bp1mixed0000001" in str(caught.value)


def test_unknown_instance_is_not_found_and_another_region_hides_it(client):
    assert refused(attribute, client, "dds-bp1nosuchthing1")[:2] == ("InvalidDBInstanceId.NotFound", 404)
    assert listed(client, region_id="cn-hangzhou", dbinstance_id="dds-bp1shanghai0001") == []


# --- the upgrade ----------------------------------------------------------------------------------


def test_an_immediate_upgrade_runs_for_upgrade_seconds_of_emulated_time(lc, client):
    assert upgrade(client, "dds-bp1catalog00001", "5.0", 0)

    now = attribute(client, "dds-bp1catalog00001")
    assert (now.dbinstance_status, now.engine_version) == ("EngineVersionUpgrading", "4.4")
    advance(lc, 2)
    assert attribute(client, "dds-bp1catalog00001").dbinstance_status == "EngineVersionUpgrading"
    advance(lc, 1)
    done = attribute(client, "dds-bp1catalog00001")
    assert (done.dbinstance_status, done.engine_version) == ("Running", "5.0")
    assert available(client, "dds-bp1catalog00001") == ["6.0"]


def test_switch_mode_1_waits_for_the_maintenance_window(lc, client):
    upgrade(client, "dds-bp1windowed0001", "7.0", 1)

    assert attribute(client, "dds-bp1windowed0001").dbinstance_status == "Running"
    advance(lc, 3600)
    assert attribute(client, "dds-bp1windowed0001").dbinstance_status == "Running"
    advance(lc, seconds_until(lc, attribute(client, "dds-bp1windowed0001").maintain_start_time) + 1)
    assert attribute(client, "dds-bp1windowed0001").dbinstance_status == "EngineVersionUpgrading"
    advance(lc, 3)
    done = attribute(client, "dds-bp1windowed0001")
    assert (done.dbinstance_status, done.engine_version) == ("Running", "7.0")


def test_a_failure_marked_instance_ends_in_error_with_its_old_version(lc, client):
    upgrade(client, "dds-bp1failing00001", "6.0")
    advance(lc, 3)

    failed = attribute(client, "dds-bp1failing00001")
    assert (failed.dbinstance_status, failed.engine_version) == ("Error", "5.0")


@pytest.mark.parametrize(
    ("iid", "version", "code", "status"),
    [
        ("dds-bp1nosuchthing1", "6.0", "InvalidDBInstanceId.NotFound", 404),
        ("dds-bp1rebooting001", "5.0", "IncorrectDBInstanceState", 403),
        ("dds-bp1events000001", "5.0", "EngineVersion.ERROR", 400),  # same version
        ("dds-bp1events000001", "4.4", "EngineVersion.ERROR", 400),  # downgrade
        ("dds-bp1events000001", "5.5", "InvalidParameter", 400),
        ("dds-bp1catalog00001", "7.0", "EngineVersion.ERROR", 400),  # not offered: 4.4 -> 5.0 only
        ("dds-bp1localdisk001", "4.4", "EngineVersion.ERROR", 400),  # local-disk 4.2: none offered
        ("dds-bp1standalone01", "4.2", "EngineVersion.ERROR", 400),  # standalone 4.0: none offered
        ("dds-bp1latest000001", "3.4", "EngineVersion.ERROR", 400),  # in the enum, not greater
    ],
    ids=[
        "unknown",
        "not-running",
        "same",
        "downgrade",
        "unknown-version",
        "skips-a-major",
        "local-disk",
        "standalone",
        "enum-but-older",
    ],
)
def test_refused_upgrades(client, iid, version, code, status):
    assert refused(upgrade, client, iid, version)[:2] == (code, status)


def test_a_downgrade_carries_the_services_verbatim_double_spaced_message(client):
    _, _, message = refused(upgrade, client, "dds-bp1events000001", "4.0")
    assert "Target  engineVersion must be greater than the current one." in message


def test_a_refused_target_leaves_the_instance_as_it_was(client):
    refused(upgrade, client, "dds-bp1catalog00001", "7.0")
    inst = attribute(client, "dds-bp1catalog00001")
    assert (inst.dbinstance_status, inst.engine_version) == ("Running", "4.4")


BUSY = ("OperationDenied.DBInstanceStatus", 403)


def test_an_upgrading_instance_refuses_a_second_upgrade_as_busy(client):
    upgrade(client, "dds-bp1catalog00001", "5.0")
    assert refused(upgrade, client, "dds-bp1catalog00001", "5.0")[:2] == BUSY


def test_an_upgrade_booked_for_the_window_refuses_a_second_one_and_keeps_the_first(lc, client):
    upgrade(client, "dds-bp1windowed0001", "7.0", 1)

    code, status, message = refused(upgrade, client, "dds-bp1windowed0001", "7.0", 0)
    assert ((code, status), "booked" in message) == (BUSY, True)
    assert attribute(client, "dds-bp1windowed0001").dbinstance_status == "Running"  # not started now
    advance(lc, seconds_until(lc, attribute(client, "dds-bp1windowed0001").maintain_start_time) + 4)
    assert attribute(client, "dds-bp1windowed0001").engine_version == "7.0"


def test_a_running_backup_refuses_the_upgrade_while_the_status_stays_running_until_it_ends(lc, client):
    code, status, message = refused(upgrade, client, "dds-bp1backup000001", "7.0")
    assert ((code, status), "Backup" in message) == (BUSY, True)
    assert attribute(client, "dds-bp1backup000001").dbinstance_status == "Running"

    advance(lc, 60)
    upgrade(client, "dds-bp1backup000001", "7.0")
    assert attribute(client, "dds-bp1backup000001").dbinstance_status == "EngineVersionUpgrading"


def test_a_task_without_an_end_keeps_refusing(lc, client):
    advance(lc, 86400)
    assert refused(upgrade, client, "dds-bp1backupever01", "7.0")[:2] == BUSY


def test_missing_and_invalid_parameters_are_named(client):
    code, status, message = refused(upgrade, client, "dds-bp1catalog00001", None)
    assert (code, status, '"EngineVersion"' in message) == ("MissingParameter", 400, True)
    code, status, message = refused(upgrade, client, "dds-bp1catalog00001", "6.0", 2)
    assert (code, status, '"SwitchMode"' in message) == ("InvalidParameter", 400, True)
