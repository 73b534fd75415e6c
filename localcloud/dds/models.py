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

from localcloud.clock import Clock
from localcloud.openapi.backend import CallContext
from localcloud.openapi.errors import (
    InvalidActionNotFound,
    InvalidParameter,
    OpenApiError,
    one_of,
    page,
    require,
)
from localcloud.openapi.lifecycle import (
    Instance,
    failed_status_for,
    matches_tags,
    minute_of_day,
    render_tags,
    tag_filters,
    version_key,
)

READY = "Running"
UPGRADING = "EngineVersionUpgrading"
FAILED = "Error"
VERSIONS = ("4.0", "4.2", "4.4", "5.0", "6.0", "7.0", "8.0")
SWITCH_MODES = {"0": "0", "1": "1"}
LOCAL_ONLY_SEED_KEYS = ("FailUpgrade", "Tags")

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


class DdsBackend:
    """The Dds model: answers ``call(action, params, ctx)`` (openapi/backend.py)."""

    product = "dds"
    version = "2015-12-01"
    actions = frozenset(
        {
            "DescribeDBInstances",
            "DescribeDBInstanceAttribute",
            "DescribeAvailableEngineVersion",
            "UpgradeDBInstanceEngineVersion",
        }
    )

    def __init__(self, entries: list[dict[str, Any]], clock: Clock, upgrade_seconds: float) -> None:
        self.clock = clock
        self.upgrade_seconds = upgrade_seconds
        self.instances: dict[str, Instance] = {}
        for entry in entries:
            attrs = _defaults(entry)
            attrs.update({k: v for k, v in entry.items() if k not in LOCAL_ONLY_SEED_KEYS})
            attrs["EngineVersion"] = str(attrs["EngineVersion"])
            minute_of_day(attrs["MaintainStartTime"])
            minute_of_day(attrs["MaintainEndTime"])
            self.instances[entry["DBInstanceId"]] = Instance(
                attrs=attrs,
                tags={str(k): str(v) for k, v in (entry.get("Tags") or {}).items()},
                status_key="DBInstanceStatus",
                ready_status=READY,
                upgrading_status=UPGRADING,
                failed_status=failed_status_for(entry, FAILED),
            )

    @classmethod
    def from_seed(cls, seed: dict[str, Any], cloud: Any) -> DdsBackend:
        return cls(seed.get("mongodb", []), cloud.clock, float(seed.get("upgrade_seconds", 2)))

    # --- protocol -------------------------------------------------------------------------------

    def call(self, action: str, params: dict[str, str], ctx: CallContext) -> dict[str, Any]:
        if action == "DescribeDBInstances":
            return self.describe_instances(params)
        if action == "DescribeDBInstanceAttribute":
            inst = self._find(params)
            return {"DBInstances": {"DBInstance": [self._render(inst, full=True)]}}
        if action == "DescribeAvailableEngineVersion":
            inst = self._find(params)
            newer = [v for v in VERSIONS if version_key(v) > version_key(inst.version)]
            return {"EngineVersions": {"EngineVersion": newer}}
        if action == "UpgradeDBInstanceEngineVersion":
            return self.upgrade_engine_version(params)
        raise InvalidActionNotFound()

    def snapshot(self) -> dict[str, Any]:
        return {"instances": {iid: inst.snapshot() for iid, inst in self.instances.items()}}

    def restore(self, state: dict[str, Any]) -> None:
        for iid, saved in state.get("instances", {}).items():
            if iid in self.instances:
                self.instances[iid].restore(saved)

    def close(self) -> None:
        """Nothing to release: the model holds no files or threads."""

    # --- actions --------------------------------------------------------------------------------

    def describe_instances(self, params: dict[str, str]) -> dict[str, Any]:
        number, size = page(params, default_size=30, max_size=100)
        region = params.get("RegionId")
        wanted = {i.strip() for i in params.get("DBInstanceId", "").split(",") if i.strip()}
        status = params.get("DBInstanceStatus")
        kind = params.get("DBInstanceType")
        tags = tag_filters(params)
        now = self.clock.now()
        selected = []
        for iid, inst in self.instances.items():
            inst.settle(now)
            if region and inst.attrs["RegionId"] != region:
                continue
            if wanted and iid not in wanted:
                continue
            if status and inst.status != status:
                continue
            if kind and inst.attrs["DBInstanceType"] != kind:
                continue
            if not matches_tags(inst.tags, tags):
                continue
            selected.append(inst)
        chunk = selected[(number - 1) * size : number * size]
        return {
            "DBInstances": {"DBInstance": [self._render(inst, full=False) for inst in chunk]},
            "TotalCount": len(selected),
            "PageNumber": number,
            "PageSize": size,
        }

    def upgrade_engine_version(self, params: dict[str, str]) -> dict[str, Any]:
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

    # --- helpers --------------------------------------------------------------------------------

    def _find(self, params: dict[str, str]) -> Instance:
        iid = require(params, "DBInstanceId")
        inst = self.instances.get(iid)
        region = params.get("RegionId")
        if inst is None or (region and inst.attrs["RegionId"] != region):
            raise DBInstanceNotFound()
        inst.settle(self.clock.now())
        return inst

    @staticmethod
    def _render(inst: Instance, full: bool) -> dict[str, Any]:
        attrs = dict(inst.attrs) if full else {k: inst.attrs[k] for k in LIST_KEYS if k in inst.attrs}
        attrs["Tags"] = render_tags(inst.tags)
        return attrs
