"""ApsaraDB for Redis (R-kvstore, API 2015-01-01): instances, their major versions and the rules.

Actions: DescribeInstances, DescribeInstanceAttribute, DescribeEngineVersion,
ModifyInstanceMajorVersion (research/alibaba-apis.md §3).

Rules of ModifyInstanceMajorVersion:

- the instance must be ``Normal`` (else 403 ``InstanceStatus.NotSupport``);
- ``MajorVersion`` must be one the API knows (4.0, 5.0, 6.0, 7.0; else 400 ``InvalidParameter``),
  newer than the current one and in the instance's deployment mode (else 403
  ``IncorrectEngineVersion``): classic 4.0/5.0, cloud-native 6.0/7.0;
- ``EffectiveTime`` Immediately (default, also "0") or MaintainTime (also "1"); the older name
  ``EffectTime`` is accepted too.

An accepted upgrade shows ``MajorVersionUpgrading`` for the seed's ``upgrade_seconds`` of emulated
time, then ``Normal`` with the new EngineVersion. localcloud-only seed keys: ``DeploymentMode``
(``classic`` | ``cloud_native``; the real API has no such field, so a seed without it is placed by
its EngineVersion), rendered in describes so clients can apply the same rule; ``FailUpgrade``
(true: the upgrade ends in ``Error``, the documented status of an instance whose change failed,
keeping the old version; a string: that status instead).
"""

from __future__ import annotations

from typing import Any

from localcloud.openapi.errors import InvalidParameter, OpenApiError, one_of, require
from localcloud.openapi.instances import InstanceActions, InstanceBackend
from localcloud.openapi.lifecycle import Instance, version_key

READY = "Normal"
UPGRADING = "MajorVersionUpgrading"
FAILED = "Error"
MODES: dict[str, tuple[str, ...]] = {"classic": ("4.0", "5.0"), "cloud_native": ("6.0", "7.0")}
TARGETS = ("4.0", "5.0", "6.0", "7.0")
# EffectiveTime values: the documented names and the metadata's older "0"/"1".
EFFECTIVE = {
    "Immediately": "Immediately",
    "0": "Immediately",
    "MaintainTime": "MaintainTime",
    "1": "MaintainTime",
}

# Rendered by DescribeInstances (the KVStoreInstance keys of the SDK model), seed values win.
LIST_KEYS = (
    "ArchitectureType", "Bandwidth", "Capacity", "ChargeType", "CloudType", "ConnectionDomain",
    "Connections", "CreateTime", "EditionType", "EndTime", "EngineVersion", "GlobalInstanceId",
    "HasRenewChangeOrder", "InstanceClass", "InstanceId", "InstanceName", "InstanceStatus", "InstanceType",
    "IsRds", "NetworkType", "NodeType", "PackageType", "Port", "PrivateIp", "QPS", "RegionId",
    "ResourceGroupId", "ShardCount", "UserName", "VSwitchId", "VpcId", "ZoneId", "DeploymentMode",
)  # fmt: skip


class InstanceNotFound(OpenApiError):
    status = 404
    code = "InvalidInstanceId.NotFound"
    default_message = "The InstanceId provided does not exist in our records."


class InstanceStatusNotSupport(OpenApiError):
    status = 403
    code = "InstanceStatus.NotSupport"
    default_message = "Instance status does not support this operation."


class IncorrectEngineVersion(OpenApiError):
    status = 403
    code = "IncorrectEngineVersion"
    default_message = "Current engine version does not support this operation."


def deployment_mode(entry: dict[str, Any]) -> str:
    mode = entry.get("DeploymentMode")
    if mode is not None:
        if mode not in MODES:
            raise ValueError(f"redis {entry.get('InstanceId')}: DeploymentMode must be one of {list(MODES)}")
        return str(mode)
    return "cloud_native" if version_key(str(entry["EngineVersion"])) >= (6, 0) else "classic"


def _defaults(entry: dict[str, Any]) -> dict[str, Any]:
    """A plausible full attribute set for a seed entry (the real API's keys, research §3)."""
    iid = entry["InstanceId"]
    region = entry.get("RegionId", "cn-hangzhou")
    version = str(entry["EngineVersion"])
    return {
        "InstanceId": iid,
        "InstanceName": iid,
        "RegionId": region,
        "ZoneId": f"{region}-h",
        "SecondaryZoneId": "",
        "EngineVersion": version,
        "Engine": "Redis",
        "InstanceStatus": READY,
        "InstanceType": "Redis",
        "ArchitectureType": "standard",
        "InstanceClass": "redis.shard.small.2.ce",
        "RealInstanceClass": "redis.shard.small.2.ce",
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
        "NodeType": "double",
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
    """The R-kvstore model: answers ``call(action, params, ctx)`` (openapi/backend.py)."""

    product = "r-kvstore"
    version = "2015-01-01"
    action_names = InstanceActions(
        list="DescribeInstances",
        attribute="DescribeInstanceAttribute",
        versions="DescribeEngineVersion",
        upgrade="ModifyInstanceMajorVersion",
    )
    actions = action_names.names()
    seed_key = "redis"
    id_param = "InstanceId"
    status_key = "InstanceStatus"
    ready_status = READY
    upgrading_status = UPGRADING
    failed_status = FAILED
    not_found = InstanceNotFound
    list_ids_param = "InstanceIds"
    max_page_size = 50
    list_keys = LIST_KEYS
    list_body = ("Instances", "KVStoreInstance")
    attribute_body = ("Instances", "DBInstanceAttribute")

    defaults = staticmethod(_defaults)

    def seed_attrs(self, entry: dict[str, Any]) -> dict[str, Any]:
        attrs = super().seed_attrs(entry)
        attrs["DeploymentMode"] = deployment_mode(entry)
        return attrs

    def describe_versions(self, inst: Instance) -> dict[str, Any]:
        major = inst.version
        newer = [v for v in MODES[inst.attrs["DeploymentMode"]] if version_key(v) > version_key(major)]
        minor = f"redis-{major}_0.5.0"
        release = {"ReleaseInfo": {"ReleaseInfoList": []}, "VersionChangesLevel": "1"}
        return {
            "Engine": "redis",
            "MajorVersion": major,
            "MinorVersion": minor,
            "EnableUpgradeMajorVersion": bool(newer),
            "EnableUpgradeMinorVersion": False,
            "IsLatestVersion": True,
            "IsAutoUpgradeOpen": "0",
            "IsSSLEnable": "false",
            "IsNewSSLMode": "false",
            "IsOpenNGLB": "false",
            "IsRedisCompatibleVersion": "1",
            "DBVersionRelease": "{}",
            "ProxyMinorVersion": "7.0.10",
            "ProxyVersionRelease": "{}",
            "DBLatestMinorVersion": {"MinorVersion": minor, "Level": "0", "VersionRelease": release},
            "ProxyLatestMinorVersion": {"MinorVersion": "7.0.10", "Level": "0", "VersionRelease": release},
        }

    def upgrade(self, params: dict[str, str]) -> dict[str, Any]:
        inst = self._find(params)
        target = require(params, "MajorVersion")
        if target not in TARGETS:
            raise InvalidParameter("MajorVersion", f"Allowed values: {', '.join(TARGETS)}.")
        name = "EffectiveTime" if params.get("EffectiveTime") else "EffectTime"
        effective = one_of(params, name, EFFECTIVE, "Immediately")
        if inst.status != READY:
            raise InstanceStatusNotSupport()
        mode = MODES[inst.attrs["DeploymentMode"]]
        if target not in mode or version_key(target) <= version_key(inst.version):
            raise IncorrectEngineVersion()
        inst.schedule(target, self.clock.now(), self.upgrade_seconds, in_window=effective == "MaintainTime")
        return {}
