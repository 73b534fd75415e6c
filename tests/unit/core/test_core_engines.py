"""Engines are data: endpoints, ID shapes, actions, statuses and version rules per engine."""

from __future__ import annotations

import pytest
from dbupgrade.engines import ENGINES, MONGODB, REDIS, api_bool, dig, engine_for_instance


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


CLOUD_NATIVE_CLASS = "redis.shard.small.2.ce"
CLASSIC_CLASS = "redis.master.small.default"


def mode(attributes: dict[str, str]) -> tuple[str | None, tuple[str, ...]]:
    assert REDIS.modes is not None
    verdict = REDIS.modes.of(attributes, attributes["EngineVersion"])
    return verdict.mode, verdict.targets


@pytest.mark.parametrize(
    ("attributes", "expected"),
    [
        # The most common real path: a cloud-native 5.0 (the creation default) may go to 6.0 / 7.0.
        (
            {"EngineVersion": "5.0", "NodeType": "MASTER_SLAVE", "InstanceClass": CLOUD_NATIVE_CLASS},
            "cloud_native",
        ),
        ({"EngineVersion": "5.0", "NodeType": "STAND_ALONE"}, "cloud_native"),
        ({"EngineVersion": "5.0", "InstanceClass": "tair.rdb.1g"}, "cloud_native"),
        # The class is decisive: the describe documents NodeType with the classic values only.
        (
            {"EngineVersion": "6.0", "NodeType": "double", "InstanceClass": "redis.shard.small.2.ee"},
            "cloud_native",
        ),
        ({"EngineVersion": "5.0", "NodeType": "double", "InstanceClass": CLASSIC_CLASS}, "classic"),
        ({"EngineVersion": "4.0", "NodeType": "single"}, "classic"),
        # No class, no NodeType: only a version one mode alone runs tells.
        ({"EngineVersion": "2.8"}, "classic"),
        ({"EngineVersion": "7.0"}, "cloud_native"),
    ],
)
def test_the_redis_mode_comes_from_instance_class_node_type_and_version(
    attributes: dict[str, str], expected: str
) -> None:
    targets = {"classic": ("4.0", "5.0"), "cloud_native": ("6.0", "7.0")}[expected]
    assert mode(attributes) == (expected, targets)


@pytest.mark.parametrize(
    "attributes",
    [
        {"EngineVersion": "5.0"},  # both modes run 5.0 and nothing else says which
        {"EngineVersion": "5.0", "NodeType": "weird", "InstanceClass": CLASSIC_CLASS},
        {"EngineVersion": "4.0", "NodeType": "MASTER_SLAVE"},  # cloud-native never runs 4.0
        {"EngineVersion": "6.0", "NodeType": "double", "InstanceClass": CLASSIC_CLASS},
    ],
)
def test_a_redis_mode_nothing_proves_is_unknown_not_guessed(attributes: dict[str, str]) -> None:
    assert REDIS.modes is not None
    verdict = REDIS.modes.of(attributes, attributes["EngineVersion"])
    assert (verdict.mode, verdict.targets) == (None, ())
    assert attributes["EngineVersion"] in verdict.why


def test_no_deployment_mode_field_is_read() -> None:
    # The real API has no DeploymentMode: naming one changes nothing.
    assert mode({"EngineVersion": "5.0", "DeploymentMode": "classic", "NodeType": "MASTER_SLAVE"})[0] == (
        "cloud_native"
    )


def test_redis_gates_on_describe_engine_version() -> None:
    assert (REDIS.gate_action, REDIS.gate_key) == ("DescribeEngineVersion", "EnableUpgradeMajorVersion")
    assert api_bool(False) is False and api_bool("false") is False and api_bool(True) is True
    assert api_bool(None) is None


def test_listing_asks_for_every_kind_it_can_upgrade_and_only_those() -> None:
    assert MONGODB.list_variants == ({"DBInstanceType": "replicate"}, {"DBInstanceType": "sharding"})
    assert REDIS.list_variants == ({"InstanceType": "Redis"},)
    assert REDIS.listable({"InstanceType": "Redis"})
    assert not REDIS.listable({"InstanceType": "Memcache"}) and not REDIS.listable({"InstanceType": "Tair"})
    assert MONGODB.listable({"DBInstanceType": "sharding"})


def test_mongodb_takes_one_major_at_a_time_from_the_offered_list() -> None:
    assert MONGODB.versions == ("4.0", "4.2", "4.4", "5.0", "6.0", "7.0", "8.0")
    assert MONGODB.available_action == "DescribeAvailableEngineVersion" and MONGODB.one_hop
    assert MONGODB.modes is None and MONGODB.gate_action is None


def test_dig_reads_nested_lists() -> None:
    body = {"Instances": {"DBInstanceAttribute": [{"InstanceId": "r-1"}]}}
    assert dig(body, REDIS.describe_path) == [{"InstanceId": "r-1"}]
    assert dig({"Instances": {}}, REDIS.describe_path) == []
    assert dig({}, MONGODB.describe_path) == []
