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
from types import MappingProxyType
from typing import Any, NamedTuple

# The task and O&M-event actions both products name alike (API metadata, R-kvstore 2015-01-01 and Dds
# 2015-12-01): a task's progress (``dbupgrade.progress``) and booked upgrades (``dbupgrade.booked``).
HISTORY_ACTION = "DescribeHistoryTasks"
BOOKED_LIST_ACTION = "DescribeActiveOperationTasks"
BOOKED_MODIFY_ACTION = "ModifyActiveOperationTasks"
BOOKED_CANCEL_ACTION = "CancelActiveOperationTasks"
TASK_ACTIONS = (HISTORY_ACTION, BOOKED_LIST_ACTION, BOOKED_MODIFY_ACTION, BOOKED_CANCEL_ACTION)


def version_key(version: str) -> tuple[int, ...]:
    """Numeric ordering of "major.minor" versions ("10.0" > "7.0")."""
    return tuple(int(part) for part in version.split("."))


class Engine(NamedTuple):
    """One engine's API, endpoints, versions and statuses: what the use case reads instead of branching.

    A ``NamedTuple``, not a dataclass: the two engines are read-only records only ever read by
    attribute, and ``@dataclass`` would exec its generated ``__init__``, ``__repr__`` and frozen
    ``__setattr__``/``__delattr__`` for these 46 fields on every cold start (~2 ms; bench/NOTES.md).
    """

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
    label: str  # the product's name in messages ("Redis", "MongoDB")
    ram_service: str  # the RAM action prefix: "kvstore:ModifyInstanceMajorVersion"
    # How long an upgrade may run before the tracker calls it stuck (DBUPGRADE_STUCK_AFTER overrides).
    stuck_after_seconds: float
    # The list call once per entry: each lists a different kind of instance (Dds lists sharded
    # clusters only when asked for them), and items must carry these attribute values to count.
    list_variants: tuple[Mapping[str, str], ...] = ({},)
    list_item_filter: Mapping[str, frozenset[str]] = MappingProxyType({})
    # Upgrades stay inside one deployment mode (Redis); None: the engine has one mode.
    modes: DeploymentModes | None = None
    # A describe whose boolean answer gates any major upgrade (None: no such call).
    gate_action: str | None = None
    gate_key: str = ""
    # The offered list holds only the next major version: a target past it is a later hop.
    one_hop: bool = False
    # Readiness and the backup gate (dbupgrade.readiness, dbupgrade.backup); the same action names in
    # both products (API metadata research/api-meta, both files), their ID fields differ.
    backups_action: str = "DescribeBackups"
    backups_path: tuple[str, ...] = ("Backups", "Backup")
    backup_create_action: str = "CreateBackup"
    backup_created_key: str = "BackupJobID"  # what CreateBackup answers
    backup_filter_param: str = "BackupJobId"  # the DescribeBackups parameter that finds its set
    operations_action: str = "DescribeActiveOperationTasks"  # upgrades booked for the window (O&M events)
    history_action: str = "DescribeHistoryTasks"  # tasks accepted and their progress
    # Every region the product serves (a selector that names no region scans them all): the same
    # action in both products, its answer nested differently (SDK DescribeRegionsResponseBody).
    regions_action: str = "DescribeRegions"
    regions_path: tuple[str, ...] = ()

    def endpoint(self, region: str) -> str:
        """The official endpoint host of ``region`` (as the product SDK's endpoint map has it)."""
        if region in self.central_regions:
            return f"{self.endpoint_prefix}.aliyuncs.com"
        return f"{self.endpoint_prefix}.{region}.aliyuncs.com"

    def actions(self) -> tuple[str, ...]:
        """Every API action called for this engine (what its RAM policies must allow together)."""
        calls = (
            self.describe_action,
            self.list_action,
            self.regions_action,
            self.gate_action,
            self.available_action,
        )
        every = (*calls, *self.readiness_actions(), self.upgrade_action, *TASK_ACTIONS)
        return tuple(dict.fromkeys(action for action in every if action))

    def readiness_actions(self) -> tuple[str, ...]:
        """The reads of the readiness report and the backup gate, and the backup it may start."""
        return (
            self.backups_action,
            self.backup_create_action,
            self.operations_action,
            self.history_action,
        )

    def listable(self, item: Mapping[str, Any]) -> bool:
        """Whether a list item is an instance this engine upgrades (not Memcache, say)."""
        return all(item.get(key) in allowed for key, allowed in self.list_item_filter.items())


class ModeVerdict(NamedTuple):
    """The deployment mode an instance's attributes prove (``mode``), or why they prove none."""

    mode: str | None
    targets: tuple[str, ...]  # the versions that mode may be upgraded to (empty when unknown)
    why: str  # the evidence, or the missing / contradicting evidence


class DeploymentModes(NamedTuple):
    """Which deployment mode an instance runs in, told from the attributes the real API returns.

    There is no deployment-mode field in DescribeInstanceAttribute or DescribeInstances (their SDK
    models' ``to_map``, alibabacloud_r_kvstore20150101 7.0.0). The evidence, strongest first:

    1. ``InstanceClass``: a cloud-disk (cloud-native) class ends in ``.ce`` / ``.ee`` (terraform
       ``alicloud/resource_alicloud_kvstore_instance.go`` ``isCloudDiskSpec``); Tair cloud-disk
       classes start with ``tair.`` (API metadata, DescribeInstanceAttribute ``RealInstanceClass``:
       "tair.rdb.with.proxy.1g" is the real shard class of a cloud-disk cluster). Decisive: the
       describe's NodeType is documented with the classic values only (metadata: "double"/"single").
    2. ``NodeType``: MASTER_SLAVE / STAND_ALONE are cloud-native, double / single classic
       (SDK ``models/_create_instance_request.py`` and ``_describe_instances_request.py``).
    3. ``EngineVersion``: classic runs 2.8 / 4.0 / 5.0, cloud-native 5.0 / 6.0 / 7.0 (SDK
       ``_create_instance_request.py``, EngineVersion), so only 5.0 leaves the mode open.

    The class (else the NodeType) names a mode; the version must agree with it. No evidence (a 5.0
    with neither) or evidence that contradicts itself is refused, never guessed: the upgrade API
    refuses a cross-mode target anyway, with a code nobody has documented
    (aliyun/terraform-provider-alicloud#5053), and there is no API to ask the mode of.
    """

    runs: Mapping[str, tuple[str, ...]]  # mode -> versions an instance of that mode runs
    targets: Mapping[str, tuple[str, ...]]  # mode -> versions the upgrade API takes for it
    node_types: Mapping[str, str]  # NodeType value -> mode
    class_suffixes: tuple[str, ...]
    class_prefixes: tuple[str, ...]
    class_mode: str  # the mode a class with one of those suffixes / prefixes proves
    names: Mapping[str, str]  # mode -> its name in messages

    def of(self, attributes: Mapping[str, Any], version: str) -> ModeVerdict:
        instance_class = str(attributes.get("InstanceClass") or "")
        node_type = str(attributes.get("NodeType") or "")
        if instance_class.endswith(self.class_suffixes) or instance_class.startswith(self.class_prefixes):
            named, evidence = self.class_mode, f"InstanceClass {instance_class}"
        elif node_type in self.node_types:
            named, evidence = self.node_types[node_type], f"NodeType {node_type}"
        else:
            named, evidence = None, ""
        running = [mode for mode, versions in self.runs.items() if version in versions]
        if named is not None and named in running:
            return ModeVerdict(named, self.targets[named], f"{self.names[named]} ({evidence})")
        if named is not None:
            return ModeVerdict(
                None,
                (),
                f"{evidence} says {self.names[named]}, which never runs {version}",
            )
        if len(running) == 1:
            mode = running[0]
            return ModeVerdict(mode, self.targets[mode], f"{self.names[mode]} (only it runs {version})")
        return ModeVerdict(
            None,
            (),
            f"neither its InstanceClass ({instance_class or 'none'}) nor its NodeType "
            f"({node_type or 'none'}) tells whether it is {' or '.join(self.names.values())}, "
            f"and both run {version}",
        )


def api_bool(value: Any) -> bool | None:
    """An API boolean (JSON true/false, or "true"/"false" as some gateways render it); None if absent."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    return None


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
    regions_path=("RegionIds", "KVStoreRegion"),
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
    label="Redis",
    stuck_after_seconds=2 * 3600,
    ram_service="kvstore",  # acs:kvstore:{region}:{account}:instance/{id} (doc 473776)
    # DescribeInstances lists Tair, Redis and Memcache (SDK _describe_instances_request.py,
    # InstanceType). Only Redis Open-Source Edition instances have a major version to upgrade
    # ("You can upgrade the major version of a Redis Open-Source Edition instance", alibabacloud.com/
    # help/en/redis/lifecycle-management); Tair series are compatible with fixed versions, so a
    # selection leaves Tair out too (an explicit request for one still meets DescribeEngineVersion).
    list_variants=({"InstanceType": "Redis"},),
    list_item_filter={"InstanceType": frozenset({"Redis"})},
    # "Only upgrades to the same deployment mode are allowed": cloud-native -> 6.0 / 7.0, classic ->
    # 4.0 / 5.0 (ModifyInstanceMajorVersion MajorVersion, API metadata; help.aliyun.com/document_detail/
    # 473776.html). See DeploymentModes for how the mode is told.
    modes=DeploymentModes(
        runs={"classic": ("2.8", "4.0", "5.0"), "cloud_native": ("5.0", "6.0", "7.0")},
        targets={"classic": ("4.0", "5.0"), "cloud_native": ("6.0", "7.0")},
        node_types={
            "MASTER_SLAVE": "cloud_native",
            "STAND_ALONE": "cloud_native",
            "double": "classic",
            "single": "classic",
        },
        class_suffixes=(".ce", ".ee"),
        class_prefixes=("tair.",),
        class_mode="cloud_native",
        names={"classic": "classic", "cloud_native": "cloud-native"},
    ),
    # EnableUpgradeMajorVersion: "false: cannot be upgraded, usually already the latest" (API metadata,
    # DescribeEngineVersion; SDK _describe_engine_version_response_body.py).
    gate_action="DescribeEngineVersion",
    gate_key="EnableUpgradeMajorVersion",
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
    regions_path=("Regions", "DdsRegion"),
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
    label="MongoDB",
    stuck_after_seconds=6 * 3600,
    ram_service="dds",  # acs:dds:{region}:{account}:dbinstance/{id} (UpgradeDBInstanceEngineVersion doc)
    # DBInstanceType defaults to replicate (replica sets and standalones); sharded clusters are listed
    # only when asked for (SDK 9.5.0 _describe_dbinstances_request.py; API metadata "default":
    # "replicate"). Serverless instances (China site only, same metadata) are left out: no source
    # says they take UpgradeDBInstanceEngineVersion.
    list_variants=({"DBInstanceType": "replicate"}, {"DBInstanceType": "sharding"}),
    # Cloud-disk instances are offered only the next major version (4.4 -> 5.0 -> 6.0 ...):
    # help.aliyun.com/en/mongodb/product-overview/upgrades-of-mongodb-major-versions.
    one_hop=True,
    # Dds CreateBackup answers BackupId, and DescribeBackups filters on BackupId (API metadata).
    backup_created_key="BackupId",
    backup_filter_param="BackupId",
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
