"""Engines are data: endpoints, ID shapes, actions, statuses and version rules per engine."""

from __future__ import annotations

from dbupgrade.engines import ENGINES, MONGODB, REDIS, dig, engine_for_instance


def test_both_engines_are_registered_by_name() -> None:
    assert set(ENGINES) == {"redis", "mongodb"}
    assert (REDIS.product, REDIS.api_version) == ("r-kvstore", "2015-01-01")
    assert (MONGODB.product, MONGODB.api_version) == ("dds", "2015-12-01")


def test_endpoints_follow_the_product_sdks_maps() -> None:
    assert REDIS.endpoint("cn-hangzhou") == "r-kvstore.aliyuncs.com"
    assert REDIS.endpoint("cn-beijing") == "r-kvstore.cn-beijing.aliyuncs.com"
    assert REDIS.endpoint("ap-southeast-1") == "r-kvstore.ap-southeast-1.aliyuncs.com"
    for central in ("cn-hangzhou", "cn-beijing", "cn-shanghai"):
        assert MONGODB.endpoint(central) == "mongodb.aliyuncs.com"
    assert MONGODB.endpoint("ap-southeast-1") == "mongodb.ap-southeast-1.aliyuncs.com"
    assert MONGODB.endpoint("cn-shenzhen") == "mongodb.cn-shenzhen.aliyuncs.com"


def test_instance_ids_pick_their_engine() -> None:
    assert engine_for_instance("r-bp1zxszhcgatnx") is REDIS
    assert engine_for_instance("dds-bp1abcdef") is MONGODB
    assert engine_for_instance("rm-bp1abcdef") is None
    assert REDIS.id_pattern.match("r-bp1zxszhcgatnx")
    assert not REDIS.id_pattern.match("dds-bp1abcdef")


def test_upgrade_actions_and_parameters() -> None:
    assert (REDIS.upgrade_action, REDIS.version_param, REDIS.effective_param) == (
        "ModifyInstanceMajorVersion",
        "MajorVersion",
        "EffectiveTime",
    )
    assert dict(REDIS.effective_values) == {"immediate": "Immediately", "maintenance_window": "MaintainTime"}
    assert (MONGODB.upgrade_action, MONGODB.version_param, MONGODB.effective_param) == (
        "UpgradeDBInstanceEngineVersion",
        "EngineVersion",
        "SwitchMode",
    )
    assert dict(MONGODB.effective_values) == {"immediate": "0", "maintenance_window": "1"}


def test_statuses() -> None:
    assert "Normal" in REDIS.ready_statuses and "MajorVersionUpgrading" in REDIS.upgrading_statuses
    assert "Running" in MONGODB.ready_statuses and "EngineVersionUpgrading" in MONGODB.upgrading_statuses


def test_redis_upgrades_stay_within_the_deployment_mode() -> None:
    assert REDIS.family_of({"DeploymentMode": "classic", "EngineVersion": "4.0"}) == ("4.0", "5.0")
    assert REDIS.family_of({"DeploymentMode": "cloud_native", "EngineVersion": "6.0"}) == ("6.0", "7.0")
    # The real API names no mode: the current version's family decides.
    assert REDIS.family_of({"EngineVersion": "5.0"}) == ("4.0", "5.0")
    assert REDIS.family_of({"EngineVersion": "6.0"}) == ("6.0", "7.0")


def test_mongodb_allows_every_listed_version() -> None:
    assert MONGODB.versions == ("4.0", "4.2", "4.4", "5.0", "6.0", "7.0", "8.0")
    assert MONGODB.family_of({"EngineVersion": "4.4"}) == MONGODB.versions
    assert MONGODB.available_action == "DescribeAvailableEngineVersion"


def test_dig_reads_nested_lists() -> None:
    body = {"Instances": {"DBInstanceAttribute": [{"InstanceId": "r-1"}]}}
    assert dig(body, REDIS.describe_path) == [{"InstanceId": "r-1"}]
    assert dig({"Instances": {}}, REDIS.describe_path) == []
    assert dig({}, MONGODB.describe_path) == []
