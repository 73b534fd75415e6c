"""ApsaraDB for MongoDB (Dds, API 2015-12-01): instances, their engine versions and the rules.

Actions: DescribeDBInstances, DescribeDBInstanceAttribute, DescribeAvailableEngineVersion,
UpgradeDBInstanceEngineVersion (research/alibaba-apis.md §4).

Rules of UpgradeDBInstanceEngineVersion:

- the instance must be ``Running`` (else 403 ``IncorrectDBInstanceState``);
- ``EngineVersion`` must be one the API knows (4.0 4.2 4.4 5.0 6.0 7.0 8.0; else 400
  ``InvalidParameter``) and newer than the current one (else 400 ``EngineVersion.ERROR`` with the
  service's verbatim, double-spaced message);
- ``SwitchMode`` 0 (default: now) or 1 (in the maintenance window).

An accepted upgrade shows ``EngineVersionUpgrading`` for the seed's ``upgrade_seconds`` of emulated
time, then ``Running`` with the new EngineVersion. The localcloud-only seed key ``FailUpgrade``
(true) ends the upgrade in ``Error`` with the old version: Dds documents no failure status, so this
is localcloud's choice; a string names another status.
"""

from __future__ import annotations

from typing import Any

from localcloud.openapi.errors import InvalidParameter, OpenApiError, one_of, require
from localcloud.openapi.instances import InstanceActions, InstanceBackend
from localcloud.openapi.lifecycle import Instance, version_key

READY = "Running"
UPGRADING = "EngineVersionUpgrading"
FAILED = "Error"
VERSIONS = ("4.0", "4.2", "4.4", "5.0", "6.0", "7.0", "8.0")
SWITCH_MODES = {"0": "0", "1": "1"}

# Rendered by DescribeDBInstances (the SDK model's DBInstance keys), seed values win.
LIST_KEYS = (
    "ChargeType", "CreationTime", "DBInstanceClass", "DBInstanceDescription", "DBInstanceId",
    "DBInstanceStatus", "DBInstanceStorage", "DBInstanceType", "Engine", "EngineVersion", "ExpireTime",
    "KindCode", "LockMode", "NetworkType", "RegionId", "ReplicationFactor", "ResourceGroupId",
    "StorageType", "VpcAuthMode", "ZoneId",
)  # fmt: skip


class DBInstanceNotFound(OpenApiError):
    status = 404
    code = "InvalidDBInstanceId.NotFound"
    default_message = "The DBInstanceId provided does not exist in our records."


class IncorrectDBInstanceState(OpenApiError):
    status = 403
    code = "IncorrectDBInstanceState"
    default_message = "Current DB instance state does not support this operation."


class EngineVersionError(OpenApiError):
    status = 400
    code = "EngineVersion.ERROR"
    default_message = "Target  engineVersion must be greater than the current one."


def _defaults(entry: dict[str, Any]) -> dict[str, Any]:
    """A plausible full attribute set for a seed entry (the real API's keys, research §4)."""
    iid = entry["DBInstanceId"]
    region = entry.get("RegionId", "cn-hangzhou")
    version = str(entry["EngineVersion"])
    return {
        "DBInstanceId": iid,
        "DBInstanceDescription": iid,
        "RegionId": region,
        "ZoneId": f"{region}-h",
        "SecondaryZoneId": "",
        "HiddenZoneId": "",
        "Engine": "MongoDB",
        "EngineVersion": version,
        "CurrentKernelVersion": f"mongodb_{version}_localcloud",
        "DBInstanceStatus": READY,
        "DBInstanceType": "replicate",
        "DBInstanceClass": "mdb.shard.2x.xlarge.d",
        "DBInstanceStorage": 20,
        "KindCode": "18",
        "LockMode": "Unlock",
        "StorageEngine": "WiredTiger",
        "StorageType": "cloud_essd1",
        "ChargeType": "PostPaid",
        "NetworkType": "VPC",
        "VPCId": "vpc-bp1localcloud0000001",
        "VSwitchId": "vsw-bp1localcloud0000001",
        "VpcAuthMode": "Open",
        "ReplicationFactor": "3",
        "ReadonlyReplicas": "0",
        "MaxConnections": 3000,
        "MaxIOPS": 8000,
        "ProtocolType": "mongodb",
        "ResourceGroupId": "rg-acfmlocalcloud",
        "CreationTime": "2024-01-01T00:00:00Z",
        "ExpireTime": "",
        "DBInstanceReleaseProtection": False,
        "Encrypted": False,
        "MaintainStartTime": "18:00Z",
        "MaintainEndTime": "22:00Z",
    }


class DdsBackend(InstanceBackend):
    """The Dds model: answers ``call(action, params, ctx)`` (openapi/backend.py)."""

    product = "dds"
    version = "2015-12-01"
    action_names = InstanceActions(
        list="DescribeDBInstances",
        attribute="DescribeDBInstanceAttribute",
        versions="DescribeAvailableEngineVersion",
        upgrade="UpgradeDBInstanceEngineVersion",
    )
    actions = action_names.names()
    seed_key = "mongodb"
    id_param = "DBInstanceId"
    status_key = "DBInstanceStatus"
    ready_status = READY
    upgrading_status = UPGRADING
    failed_status = FAILED
    not_found = DBInstanceNotFound
    list_ids_param = "DBInstanceId"
    list_filters = ("DBInstanceType",)
    max_page_size = 100
    list_keys = LIST_KEYS
    list_body = ("DBInstances", "DBInstance")
    attribute_body = ("DBInstances", "DBInstance")
    defaults = staticmethod(_defaults)

    def describe_versions(self, inst: Instance) -> dict[str, Any]:
        newer = [v for v in VERSIONS if version_key(v) > version_key(inst.version)]
        return {"EngineVersions": {"EngineVersion": newer}}

    def upgrade(self, params: dict[str, str]) -> dict[str, Any]:
        inst = self._find(params)
        target = require(params, "EngineVersion")
        if target not in VERSIONS:
            raise InvalidParameter("EngineVersion", f"Allowed values: {', '.join(VERSIONS)}.")
        switch_mode = one_of(params, "SwitchMode", SWITCH_MODES, "0")
        if inst.status != READY:
            raise IncorrectDBInstanceState()
        if version_key(target) <= version_key(inst.version):
            raise EngineVersionError()
        inst.schedule(target, self.clock.now(), self.upgrade_seconds, in_window=switch_mode == "1")
        return {}
