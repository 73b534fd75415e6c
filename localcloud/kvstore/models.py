"""ApsaraDB for Redis (R-kvstore, API 2015-01-01): instances, their major versions and the rules.

State and rules only: the requests and bodies are ``responses.py``, the errors ``exceptions.py``,
what routes here ``urls.py``. One ``KvstoreBackend`` holds one account's instances in one region.

Actions: DescribeInstances, DescribeInstanceAttribute, DescribeEngineVersion,
ModifyInstanceMajorVersion (research/alibaba-apis.md §3; facts: research/real-cloud-facts.md #1, #2).
Also CreateBackup, DescribeBackupTasks, DescribeBackups, DescribeHistoryTasks and the O&M-event
actions (openapi/task_responses.py; seed keys AutomaticBackup, Backups, BackupSeconds, FailBackup).

Deployment mode. The API has no field naming it; it shows in two real attributes, which a seed
must not contradict (a ValueError naming the instance):

- ``NodeType``: MASTER_SLAVE / STAND_ALONE on cloud-native instances, double / single on classic
  ones (SDK 7.0.0 ``models/_describe_instances_request.py`` L97-101, ``_create_instance_request.py``
  L172-176: "For cloud-native instances, select MASTER_SLAVE or STAND_ALONE. For classic instances,
  select double or single");
- ``InstanceClass``: cloud-disk (cloud-native) classes end in ``.ce`` / ``.ee`` (terraform-provider-
  alicloud ``alicloud/resource_alicloud_kvstore_instance.go`` ``isCloudDiskSpec``) or are Tair
  classes ``tair.*`` (same function in the provider version cited by real-cloud-facts.md #1, L1939-1945).

A seed naming neither is placed by its EngineVersion: 2.8 and 4.0 run only on classic instances,
5.0 is the default version of a new cloud-native instance (``_create_instance_request.py`` L112-122),
6.0 and 7.0 run only on cloud-native ones. A classic 5.0 names NodeType double (or a classic class).

Rules of ModifyInstanceMajorVersion (checked in this order):

- ``MajorVersion`` must be one the API names (4.0, 5.0, 6.0, 7.0; else 400 ``InvalidParameter``);
- ``EffectiveTime`` Immediately (default, also "0") or MaintainTime (also "1") (metadata enum); the
  older name ``EffectTime`` (doc 95259) is not honoured: the gateway applies the documented
  ``EffectiveTime`` default first (localcloud/apimeta), and whether the real service still reads
  the old name is unverified;
- a Memcache instance has no Redis major version to move to (403 ``InstanceType.NotSupport``,
  assumption);
- the instance must not be busy: an upgrade booked for the maintenance window or running, or a
  seeded running task (403 ``Task.Conflict``, the code Terraform retries for kvstore changes);
- the instance must be ``Normal`` (else 403 ``InstanceStatus.NotSupport``, assumption);
- the target must be newer and in the instance's own mode: classic 4.0/5.0, cloud-native 6.0/7.0
  ("Only upgrades to the same deployment mode are supported", ``_modify_instance_major_version_
  request.py`` L29-32; else 403 ``IncorrectEngineVersion``, assumption).

An accepted upgrade shows ``MajorVersionUpgrading`` for the seed's ``upgrade_seconds`` of emulated
time, then ``Normal`` with the new EngineVersion.

localcloud-only seed keys (never rendered):

- ``FailUpgrade``: true ends the upgrade in ``Error`` with the old version (assumption: the docs
  call ``Error`` a failed creation, and no source says how a failed major upgrade shows); a string
  names that status instead;
- ``RunningTask``: the name of a task (e.g. ``"Backup"``) keeping the instance busy from the start;
  ``RunningTaskSeconds``: when it ends, in emulated seconds (absent: never). The status stays
  ``Normal`` meanwhile: only the upgrade call notices;
- ``IsLatestVersion``: false when the instance's minor version is not the newest of its major
  (DescribeEngineVersion; default true).
- ``AccountId``: the account owning the instance (default: the seed's first account); another
  account's calls do not find it.

A seed naming ``DeploymentMode`` (a key the real API does not have) is refused.
"""

from __future__ import annotations

from typing import Any

from localcloud.clock import Clock
from localcloud.kvstore.exceptions import (
    IncorrectEngineVersion,
    InstanceNotFound,
    InstanceStatusNotSupport,
    InstanceTypeNotSupport,
    TaskConflict,
)
from localcloud.openapi.errors import InvalidParameter, one_of
from localcloud.openapi.instances import LOCAL_ONLY_SEED_KEYS, InstanceBackend
from localcloud.openapi.lifecycle import Instance, version_key

READY = "Normal"
UPGRADING = "MajorVersionUpgrading"
# Assumption (real-cloud-facts.md #9): the docs define ``Error`` as "creation failed"; how a failed
# major upgrade shows is unverified. Kept so rehearsals have a failure path (seed ``FailUpgrade``).
FAILED = "Error"

CLASSIC = "classic"
CLOUD_NATIVE = "cloud_native"
# NodeType -> deployment mode (_describe_instances_request.py L97-101).
NODE_TYPE_MODE = {
    "MASTER_SLAVE": CLOUD_NATIVE,
    "STAND_ALONE": CLOUD_NATIVE,
    "double": CLASSIC,
    "single": CLASSIC,
}
# The versions each mode runs (_create_instance_request.py L112-122).
RUNS = {CLASSIC: ("2.8", "4.0", "5.0"), CLOUD_NATIVE: ("5.0", "6.0", "7.0")}
# The majors ModifyInstanceMajorVersion moves each mode to (_modify_instance_major_version_request.py
# L29-32; metadata 2024 ModifyInstanceMajorVersion.MajorVersion).
UPGRADES_TO = {CLASSIC: ("4.0", "5.0"), CLOUD_NATIVE: ("6.0", "7.0")}
TARGETS = ("4.0", "5.0", "6.0", "7.0")
# The mode of a seed naming neither NodeType nor InstanceClass, by version (see the module docstring).
MODE_BY_VERSION = {
    "2.8": CLASSIC,
    "4.0": CLASSIC,
    "5.0": CLOUD_NATIVE,
    "6.0": CLOUD_NATIVE,
    "7.0": CLOUD_NATIVE,
}
DEFAULT_NODE_TYPE = {CLASSIC: "double", CLOUD_NATIVE: "MASTER_SLAVE"}
# Plausible classes per (mode, ArchitectureType): the classic ones are the metadata's own examples
# (DescribeInstanceAttribute / DescribeInstances InstanceClass; _create_instance_request.py L139 calls
# redis.master.small.default "classic architecture"); the cloud-native ones end in .ce (isCloudDiskSpec).
DEFAULT_CLASS = {
    (CLASSIC, "standard"): "redis.master.small.default",
    (CLASSIC, "cluster"): "redis.logic.sharding.2g.2db.0rodb.4proxy.default",
    (CLOUD_NATIVE, "standard"): "redis.shard.small.2.ce",
    (CLOUD_NATIVE, "cluster"): "redis.cluster.sharding.common.ce",
}
# InstanceType values (metadata DescribeInstances/DescribeInstanceAttribute; _describe_instances_request.py
# L87-91). Memcache instances are listed by the same DescribeInstances (real-cloud-facts.md #17).
INSTANCE_TYPES = ("Redis", "Tair", "Memcache")
MEMCACHE = "Memcache"
MEMCACHE_CLASS = "memcache.master.small.default"  # assumption: a plausible Memcache class name
# EffectiveTime values: the documented names and the metadata's older "0"/"1".
EFFECTIVE = {
    "Immediately": "Immediately",
    "0": "Immediately",
    "MaintainTime": "MaintainTime",
    "1": "MaintainTime",
}


def class_mode(instance_class: str) -> str:
    """The deployment mode an InstanceClass implies (isCloudDiskSpec; see the module docstring)."""
    cloud_disk = instance_class.endswith((".ce", ".ee")) or instance_class.startswith("tair.")
    return CLOUD_NATIVE if cloud_disk else CLASSIC


def mode_of(attrs: dict[str, Any]) -> str:
    """An instance's deployment mode from its NodeType (consistent with its class by construction)."""
    return NODE_TYPE_MODE[str(attrs["NodeType"])]


def seed_mode(entry: dict[str, Any]) -> str:
    """The deployment mode a Redis/Tair seed entry states or implies; ValueError if it contradicts itself."""
    iid = entry.get("InstanceId")
    if "DeploymentMode" in entry:
        raise ValueError(
            f"redis {iid}: DeploymentMode is not an R-kvstore attribute; name NodeType/InstanceClass"
        )
    node_type, instance_class = entry.get("NodeType"), entry.get("InstanceClass")
    if node_type is not None and node_type not in NODE_TYPE_MODE:
        raise ValueError(f"redis {iid}: NodeType must be one of {list(NODE_TYPE_MODE)}, got {node_type!r}")
    by_node = NODE_TYPE_MODE[node_type] if node_type is not None else None
    by_class = class_mode(str(instance_class)) if instance_class else None
    if by_node and by_class and by_node != by_class:
        raise ValueError(
            f"redis {iid}: NodeType {node_type} is {by_node} but InstanceClass {instance_class} is {by_class}"
        )
    version = str(entry["EngineVersion"])
    mode = by_node or by_class or MODE_BY_VERSION.get(version)
    if mode is None or version not in RUNS[mode]:
        raise ValueError(f"redis {iid}: EngineVersion {version} does not run on a {mode or 'known'} instance")
    return mode


def _defaults(entry: dict[str, Any]) -> dict[str, Any]:
    """A plausible full attribute set for a seed entry (the real API's keys, research §3)."""
    iid = entry["InstanceId"]
    region = entry.get("RegionId", "cn-hangzhou")
    version = str(entry["EngineVersion"])
    instance_type = entry.get("InstanceType", "Redis")
    if instance_type not in INSTANCE_TYPES:
        raise ValueError(
            f"redis {iid}: InstanceType must be one of {list(INSTANCE_TYPES)}, got {instance_type!r}"
        )
    architecture = entry.get("ArchitectureType", "standard")
    if instance_type == MEMCACHE:
        node_type, instance_class = "double", MEMCACHE_CLASS
    else:
        mode = seed_mode(entry)
        node_type = DEFAULT_NODE_TYPE[mode]
        instance_class = DEFAULT_CLASS.get((mode, architecture), DEFAULT_CLASS[(mode, "standard")])
    return {
        "InstanceId": iid,
        "InstanceName": iid,
        "RegionId": region,
        "ZoneId": f"{region}-h",
        "SecondaryZoneId": "",
        "EngineVersion": version,
        "Engine": "Redis",
        "InstanceStatus": READY,
        "InstanceType": instance_type,
        "ArchitectureType": architecture,
        "InstanceClass": instance_class,
        "RealInstanceClass": entry.get("InstanceClass", instance_class),
        "Capacity": 1024,
        "Bandwidth": 96,
        "Connections": 20000,
        "QPS": 100000,
        "Port": 6379,
        "ConnectionDomain": f"{iid}.redis.rds.aliyuncs.com",
        "PrivateIp": "172.16.0.10",
        "NetworkType": "VPC",
        "VpcId": "vpc-bp1localcloud0000001",
        "VSwitchId": "vsw-bp1localcloud0000001",
        "VpcAuthMode": "Open",
        "ChargeType": "PostPaid",
        "CloudType": "public",
        "ComputingType": "buffer",
        "EditionType": "Community",
        "NodeType": node_type,
        "PackageType": "standard",
        "ReplicationMode": "master-slave",
        "ShardCount": 1,
        "ReadOnlyCount": 0,
        "ReplicaCount": 1,
        "SlaveReadOnlyCount": 0,
        "SlaveReplicaCount": 0,
        "ReplicaId": "",
        "GlobalInstanceId": "",
        "ResourceGroupId": "rg-acfmlocalcloud",
        "CreateTime": "2024-01-01T00:00:00Z",
        "EndTime": "",
        "HasRenewChangeOrder": "false",
        "IsRds": True,
        "IsOrderCompleted": True,
        "IsSupportTDE": False,
        "AutoSecondaryZone": False,
        "InstanceReleaseProtection": False,
        "AuditLogRetention": "0",
        "AvailabilityValue": "100%",
        "BackupLogStartTime": "",
        "Config": '{"maxmemory-policy":"volatile-lru"}',
        "SecurityIPList": "127.0.0.1",
        "Storage": "",
        "StorageType": "",
        "UserName": iid,
        "VpcCloudInstanceId": iid,
        "ZoneType": "",
        "MaintainStartTime": "18:00Z",
        "MaintainEndTime": "22:00Z",
    }


class KvstoreBackend(InstanceBackend):
    """The R-kvstore instances of one account in one region, and the rules of their versions."""

    product = "r-kvstore"
    seed_key = "redis"
    id_param = "InstanceId"
    status_key = "InstanceStatus"
    ready_status = READY
    upgrading_status = UPGRADING
    failed_status = FAILED
    not_found = InstanceNotFound
    busy = TaskConflict
    not_ready = InstanceStatusNotSupport
    # Assumption: R-kvstore documents no error for CreateBackup (metadata: none); a second backup while
    # one runs answers the busy code Terraform retries for kvstore changes (Dds has its own code).
    backup_exists = TaskConflict
    local_only_seed_keys = (*LOCAL_ONLY_SEED_KEYS, "IsLatestVersion")

    defaults = staticmethod(_defaults)

    def __init__(
        self,
        account_id: str,
        region: str,
        entries: list[dict[str, Any]],
        clock: Clock,
        upgrade_seconds: float,
        seeded_at: float,
        backup_seconds: float = 5.0,
    ) -> None:
        # The major version whose minor version a seed marks as not the newest (``IsLatestVersion``).
        self.stale_minor = {
            str(e["InstanceId"]): str(e["EngineVersion"])
            for e in entries
            if e.get("IsLatestVersion") is False
        }
        super().__init__(account_id, region, entries, clock, upgrade_seconds, seeded_at, backup_seconds)

    def major_upgrades(self, inst: Instance) -> list[str]:
        """The newer majors of the instance's own deployment mode; none for Memcache."""
        if inst.attrs["InstanceType"] == MEMCACHE:
            return []
        return [v for v in UPGRADES_TO[mode_of(inst.attrs)] if version_key(v) > version_key(inst.version)]

    def minor_is_latest(self, inst: Instance) -> bool:
        """IsLatestVersion is about the minor version (metadata: "whether the minor version is the newest")."""
        return self.stale_minor.get(inst.attrs["InstanceId"]) != inst.version

    def upgrade(self, instance_id: str, major_version: str, effective_time: str | None) -> None:
        inst = self.get_instance(instance_id)
        target = major_version
        if target not in TARGETS:
            raise InvalidParameter("MajorVersion", f"Allowed values: {', '.join(TARGETS)}.")
        effective = one_of("EffectiveTime", effective_time, EFFECTIVE, "Immediately")
        if inst.attrs["InstanceType"] == MEMCACHE:
            raise InstanceTypeNotSupport()
        busy = inst.busy_with(self.clock.now())
        if busy:
            raise TaskConflict(f"{TaskConflict.default_message} ({busy})")
        if inst.status != READY:
            raise InstanceStatusNotSupport()
        if target not in UPGRADES_TO[mode_of(inst.attrs)] or version_key(target) <= version_key(inst.version):
            raise IncorrectEngineVersion()
        inst.schedule(target, self.clock.now(), self.upgrade_seconds, in_window=effective == "MaintainTime")
