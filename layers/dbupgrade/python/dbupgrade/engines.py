"""Engines as data: everything that differs between ApsaraDB for Redis and for MongoDB.

The use case never branches on an engine's name; it reads these entries. A third engine is one
more ``Engine(...)`` in ``ENGINES`` (plus its localcloud model).

Example::

    from dbupgrade.engines import engine_for_instance
    engine = engine_for_instance("dds-bp1abc")          # ENGINES["mongodb"]
    engine.endpoint("ap-southeast-1")                   # "mongodb.ap-southeast-1.aliyuncs.com"
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


def version_key(version: str) -> tuple[int, ...]:
    """Numeric ordering of "major.minor" versions ("10.0" > "7.0")."""
    return tuple(int(part) for part in version.split("."))


@dataclass(frozen=True)
class Engine:
    name: str  # "redis" | "mongodb": the request's `engine` value
    product: str  # OpenAPI product code, also the localcloud product name
    api_version: str
    endpoint_prefix: str  # host prefix: "<prefix>.aliyuncs.com" or "<prefix>.<region>.aliyuncs.com"
    central_regions: frozenset[str]  # regions served by the central endpoint (the product SDK's map)
    endpoint_variable: str  # the environment variable that overrides the endpoint
    id_prefix: str
    id_pattern: re.Pattern[str]
    id_param: str  # the instance ID parameter of every action
    # describe one instance
    describe_action: str
    describe_extra: Mapping[str, str]  # fixed parameters the describe needs
    describe_path: tuple[str, ...]  # where the list of instance attribute objects sits in the body
    id_key: str
    status_key: str
    version_key: str
    # list instances (select)
    list_action: str
    list_path: tuple[str, ...]
    list_page_size: int
    # upgrade
    upgrade_action: str
    version_param: str
    effective_param: str
    effective_values: Mapping[str, str]  # our effective -> the API's value
    # target versions the instance may move to: an action listing them, or a rule on versions
    available_action: str | None
    available_path: tuple[str, ...]
    ready_statuses: frozenset[str]
    upgrading_statuses: frozenset[str]  # the instance is being upgraded to a new major version
    failed_statuses: frozenset[str]
    versions: tuple[str, ...]  # every target version the API accepts
    # Upgrades stay inside one family (Redis: classic 4.0/5.0 vs cloud-native 6.0/7.0).
    families: Mapping[str, tuple[str, ...]]
    family_key: str | None  # the attribute naming the instance's family (None: one family)
    # How long an upgrade may run before the tracker calls it stuck (DBUPGRADE_STUCK_AFTER overrides).
    stuck_after_seconds: float

    def endpoint(self, region: str) -> str:
        """The official endpoint host of ``region`` (as the product SDK's endpoint map has it)."""
        if region in self.central_regions:
            return f"{self.endpoint_prefix}.aliyuncs.com"
        return f"{self.endpoint_prefix}.{region}.aliyuncs.com"

    def family_of(self, attributes: Mapping[str, Any]) -> tuple[str, ...]:
        """The versions an instance may be upgraded to, given its describe attributes."""
        if not self.family_key or not self.families:
            return self.versions
        mode = attributes.get(self.family_key)
        if isinstance(mode, str) and mode in self.families:
            return self.families[mode]
        # No explicit mode (the real API has no such field): the current version's family decides,
        # because the API only upgrades within one deployment mode (research §3).
        current = str(attributes.get(self.version_key, ""))
        for versions in self.families.values():
            if current in versions:
                return versions
        return self.versions


REDIS = Engine(
    name="redis",
    product="r-kvstore",
    api_version="2015-01-01",
    endpoint_prefix="r-kvstore",
    central_regions=frozenset({"cn-hangzhou", "cn-hangzhou-finance"}),
    endpoint_variable="DBUPGRADE_KVSTORE_ENDPOINT",
    id_prefix="r-",
    id_pattern=re.compile(r"^r-[a-z0-9]{6,32}$"),
    id_param="InstanceId",
    describe_action="DescribeInstanceAttribute",
    describe_extra={},
    describe_path=("Instances", "DBInstanceAttribute"),
    id_key="InstanceId",
    status_key="InstanceStatus",
    version_key="EngineVersion",
    list_action="DescribeInstances",
    list_path=("Instances", "KVStoreInstance"),
    list_page_size=50,
    upgrade_action="ModifyInstanceMajorVersion",
    version_param="MajorVersion",
    effective_param="EffectiveTime",
    effective_values={"immediate": "Immediately", "maintenance_window": "MaintainTime"},
    available_action=None,
    available_path=(),
    ready_statuses=frozenset({"Normal"}),
    upgrading_statuses=frozenset({"MajorVersionUpgrading"}),
    failed_statuses=frozenset({"Error", "Unavailable", "Released"}),
    versions=("4.0", "5.0", "6.0", "7.0"),
    # "Only upgrades to the same deployment mode are allowed" (ModifyInstanceMajorVersion doc).
    # The real DescribeInstanceAttribute has no deployment-mode field, so family_of falls back to
    # the current version's family; localcloud seeds name it explicitly as "DeploymentMode".
    families={"classic": ("4.0", "5.0"), "cloud_native": ("6.0", "7.0")},
    family_key="DeploymentMode",
    stuck_after_seconds=2 * 3600,
)

MONGODB = Engine(
    name="mongodb",
    product="dds",
    api_version="2015-12-01",
    endpoint_prefix="mongodb",
    central_regions=frozenset(
        {"cn-hangzhou", "cn-beijing", "cn-shanghai", "cn-wulanchabu", "cn-heyuan", "cn-hangzhou-finance"}
    ),
    endpoint_variable="DBUPGRADE_DDS_ENDPOINT",
    id_prefix="dds-",
    id_pattern=re.compile(r"^dds-[a-z0-9]{6,32}$"),
    id_param="DBInstanceId",
    describe_action="DescribeDBInstanceAttribute",
    describe_extra={"Engine": "MongoDB"},
    describe_path=("DBInstances", "DBInstance"),
    id_key="DBInstanceId",
    status_key="DBInstanceStatus",
    version_key="EngineVersion",
    list_action="DescribeDBInstances",
    list_path=("DBInstances", "DBInstance"),
    list_page_size=100,
    upgrade_action="UpgradeDBInstanceEngineVersion",
    version_param="EngineVersion",
    effective_param="SwitchMode",
    effective_values={"immediate": "0", "maintenance_window": "1"},
    available_action="DescribeAvailableEngineVersion",
    available_path=("EngineVersions", "EngineVersion"),
    ready_statuses=frozenset({"Running"}),
    upgrading_statuses=frozenset({"EngineVersionUpgrading"}),
    failed_statuses=frozenset({"Error"}),  # not documented by Dds; what localcloud uses
    versions=("4.0", "4.2", "4.4", "5.0", "6.0", "7.0", "8.0"),
    families={},
    family_key=None,
    stuck_after_seconds=6 * 3600,
)

ENGINES: dict[str, Engine] = {engine.name: engine for engine in (REDIS, MONGODB)}


def engine_for_instance(instance_id: str) -> Engine | None:
    """The engine whose ID prefix ``instance_id`` carries, or None."""
    for engine in ENGINES.values():
        if instance_id.startswith(engine.id_prefix):
            return engine
    return None


def dig(body: Mapping[str, Any], path: tuple[str, ...]) -> list[Any]:
    """The list at ``path`` in an OpenAPI body ({"Instances": {"DBInstanceAttribute": [...]}})."""
    node: Any = body
    for key in path:
        if not isinstance(node, Mapping):
            return []
        node = node.get(key)
    if node is None:
        return []
    return list(node) if isinstance(node, list) else [node]
