"""ApsaraDB for MongoDB (Dds, API 2015-12-01): instances, their engine versions and the rules.

State and rules only: the requests and bodies are ``responses.py``, the errors ``exceptions.py``,
what routes here ``urls.py``. One ``DdsBackend`` holds one account's instances in one region.

Actions: DescribeDBInstances, DescribeDBInstanceAttribute, DescribeAvailableEngineVersion,
UpgradeDBInstanceEngineVersion (research/alibaba-apis.md §4; facts: research/real-cloud-facts.md #4, #5).
Also CreateBackup, DescribeBackupTasks, DescribeBackups, DescribeHistoryTasks and the O&M-event
actions (openapi/task_responses.py; seed keys AutomaticBackup, Backups, BackupSeconds, FailBackup).

What an instance is, from its real attributes (metadata 2024 DescribeDBInstances/DescribeDBInstanceAttribute):

- ``KindCode``: "0" local-disk instance, "3" single-node (standalone) instance, "18" cloud-disk instance;
- ``StorageType``: ``local_ssd`` is a local SSD, ``cloud_essd1/2/3`` ESSD cloud disks;
- ``DBInstanceType``: ``replicate`` (replica set, and standalone) or ``sharding``;
- ``ReplicationFactor``: the node count of a replica set ("1" for a standalone).

A seed states what it needs; the rest is derived consistently (``local_ssd`` storage gives KindCode
"0" and back; KindCode "3" gives ReplicationFactor "1" and back). A seed whose attributes contradict
each other is a ValueError naming the instance.

DescribeAvailableEngineVersion offers only the next major version
(help.aliyun.com/en/mongodb/product-overview/upgrades-of-mongodb-major-versions):
4.0 -> 4.2, 4.2 -> 4.4, 4.4 -> 5.0, 5.0 -> 6.0, 6.0 -> 7.0, 7.0 -> 8.0; nothing for a local-disk 4.2
or a standalone 4.0 (same page); an empty list at the latest version (metadata: "empty when already
the latest"). 8.0 -> 8.3 is by ticket only and 8.3 is not in the API's EngineVersion enum: not offered.

Rules of UpgradeDBInstanceEngineVersion (checked in this order):

- ``EngineVersion`` must be one the API knows (metadata enum 3.4 4.0 4.2 4.4 5.0 6.0 7.0 8.0; else 400
  ``InvalidParameter``); ``SwitchMode`` 0 (default: now) or 1 (in the maintenance window);
- the instance must not be busy: an upgrade booked for the maintenance window or running, or a
  seeded running task (403 ``OperationDenied.DBInstanceStatus``, the code Terraform retries for Dds
  changes; assumption: its status and that a booking counts as busy);
- the instance must be ``Running`` (else 403 ``IncorrectDBInstanceState``, grouped by Terraform as
  "instance busy"; assumption: that this action answers it);
- the target must be newer than the current version (else 400 ``EngineVersion.ERROR`` with the
  service's verbatim, double-spaced message: the one documented error) and offered by
  DescribeAvailableEngineVersion (else 400 ``EngineVersion.ERROR``, assumption).

An accepted upgrade shows ``EngineVersionUpgrading`` for the seed's ``upgrade_seconds`` of emulated
time, then ``Running`` with the new EngineVersion.

localcloud-only seed keys (never rendered):

- ``FailUpgrade``: true ends the upgrade in ``Error`` with the old version. Assumption: Dds documents
  no ``Error`` status (alibabacloud.com/help/en/mongodb/instance-states) and no source says how a
  failed upgrade shows; kept so rehearsals have a failure path. A string names another status;
- ``RunningTask``: the name of a task (e.g. ``"Backup"``) keeping the instance busy from the start;
  ``RunningTaskSeconds``: when it ends, in emulated seconds (absent: never). The status stays
  ``Running`` meanwhile: only the upgrade call notices;
- ``AccountId``: the account owning the instance (default: the seed's first account); another
  account's calls do not find it.
"""

from __future__ import annotations

from typing import Any

from localcloud.dds.exceptions import (
    BackupJobExists,
    DBInstanceBusy,
    DBInstanceNotFound,
    EngineVersionError,
    IncorrectDBInstanceState,
)
from localcloud.openapi.errors import InvalidParameter, one_of
from localcloud.openapi.instances import InstanceBackend
from localcloud.openapi.lifecycle import version_key

READY = "Running"
UPGRADING = "EngineVersionUpgrading"
# Assumption (real-cloud-facts.md #9): Dds has no Error status; the failure path of rehearsals.
FAILED = "Error"
# UpgradeDBInstanceEngineVersion.EngineVersion enum (metadata HEAD Dec 2025).
VERSIONS = ("3.4", "4.0", "4.2", "4.4", "5.0", "6.0", "7.0", "8.0")
# The one version each offers (upgrades-of-mongodb-major-versions, see the module docstring).
NEXT_MAJOR = {"4.0": "4.2", "4.2": "4.4", "4.4": "5.0", "5.0": "6.0", "6.0": "7.0", "7.0": "8.0"}
# KindCode values (metadata DescribeDBInstances.KindCode).
LOCAL_DISK, STANDALONE, CLOUD_DISK = "0", "3", "18"
# The versions with no upgrade at all, per kind (same page: local-disk 4.2, standalone 4.0).
NO_UPGRADE = {LOCAL_DISK: ("4.2",), STANDALONE: ("4.0",)}
LOCAL_STORAGE = "local_ssd"
SWITCH_MODES = {"0": "0", "1": "1"}


# Assumption: a newer target DescribeAvailableEngineVersion does not offer (e.g. 4.4 -> 7.0) answers the
# action's only documented code; the real code and message for it are unverified.
NOT_OFFERED_MESSAGE = "Target engineVersion is not available for the instance."


def upgrade_targets(attrs: dict[str, Any]) -> list[str]:
    """What DescribeAvailableEngineVersion offers an instance (see the module docstring)."""
    version = str(attrs["EngineVersion"])
    if version in NO_UPGRADE.get(str(attrs["KindCode"]), ()):
        return []
    following = NEXT_MAJOR.get(version)
    return [following] if following else []


def seed_kind(entry: dict[str, Any]) -> dict[str, Any]:
    """KindCode, StorageType and ReplicationFactor of a seed entry, derived consistently (see above)."""
    iid = entry.get("DBInstanceId")
    kind, storage = entry.get("KindCode"), entry.get("StorageType")
    replicas = entry.get("ReplicationFactor")
    sharding = entry.get("DBInstanceType") == "sharding"
    if kind is None:
        if storage == LOCAL_STORAGE:
            kind = LOCAL_DISK
        elif str(replicas) == "1" and not sharding:
            kind = STANDALONE
        else:
            kind = CLOUD_DISK
    kind = str(kind)
    if kind not in (LOCAL_DISK, STANDALONE, CLOUD_DISK):
        raise ValueError(f"mongodb {iid}: KindCode must be 0, 3 or 18, got {kind!r}")
    if storage is None:
        storage = LOCAL_STORAGE if kind == LOCAL_DISK else "cloud_essd1"
    if (kind == LOCAL_DISK) != (storage == LOCAL_STORAGE):
        raise ValueError(f"mongodb {iid}: KindCode {kind} and StorageType {storage} disagree")
    if kind == STANDALONE and sharding:
        raise ValueError(f"mongodb {iid}: a standalone (KindCode 3) is not a sharded cluster")
    if replicas is None:
        replicas = "1" if kind == STANDALONE else "3"
    if (kind == STANDALONE) != (str(replicas) == "1"):
        raise ValueError(f"mongodb {iid}: KindCode {kind} and ReplicationFactor {replicas} disagree")
    kind_attrs = {"KindCode": kind, "StorageType": storage}
    if not sharding:  # "returned when the instance is a replica set" (metadata ReplicationFactor)
        kind_attrs["ReplicationFactor"] = str(replicas)
    return kind_attrs


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
        "LockMode": "Unlock",
        "StorageEngine": "WiredTiger",
        "ChargeType": "PostPaid",
        "NetworkType": "VPC",
        "VPCId": "vpc-bp1localcloud0000001",
        "VSwitchId": "vsw-bp1localcloud0000001",
        "VpcAuthMode": "Open",
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
        **seed_kind(entry),
    }


class DdsBackend(InstanceBackend):
    """The Dds instances of one account in one region, and the rules of their engine versions."""

    product = "dds"
    seed_key = "mongodb"
    id_param = "DBInstanceId"
    status_key = "DBInstanceStatus"
    ready_status = READY
    upgrading_status = UPGRADING
    failed_status = FAILED
    not_found = DBInstanceNotFound
    busy = DBInstanceBusy
    not_ready = IncorrectDBInstanceState
    backup_exists = BackupJobExists
    defaults = staticmethod(_defaults)

    def upgrade(self, instance_id: str, engine_version: str, switch_mode: str | None) -> None:
        inst = self.get_instance(instance_id)
        target = engine_version
        if target not in VERSIONS:
            raise InvalidParameter("EngineVersion", f"Allowed values: {', '.join(VERSIONS)}.")
        mode = one_of("SwitchMode", switch_mode, SWITCH_MODES, "0")
        busy = inst.busy_with(self.clock.now())
        if busy:
            raise DBInstanceBusy(f"{DBInstanceBusy.default_message} ({busy})")
        if inst.status != READY:
            raise IncorrectDBInstanceState()
        if version_key(target) <= version_key(inst.version):
            raise EngineVersionError()
        if target not in upgrade_targets(inst.attrs):
            raise EngineVersionError(NOT_OFFERED_MESSAGE)
        inst.schedule(target, self.clock.now(), self.upgrade_seconds, in_window=mode == "1")
