"""Dds's protocol side: each action's parameters into a ``DdsBackend`` call, its result into a body.

The body keys are the official SDK models' (alibabacloud_dds20151201); the gateway
(openapi/responses.py) then cuts them to the API metadata's response fields.
"""

from __future__ import annotations

from typing import Any

from localcloud.dds.models import DdsBackend, upgrade_targets
from localcloud.openapi.errors import require
from localcloud.openapi.handler import CallContext
from localcloud.openapi.instance_responses import InstanceActions
from localcloud.openapi.lifecycle import BackupJob, BackupSet, Instance, iso
from localcloud.openapi.task_responses import TASK_ACTIONS, TaskResponse

# Rendered by DescribeDBInstances (the SDK model's DBInstance keys), seed values win.
LIST_KEYS = (
    "ChargeType", "CreationTime", "DBInstanceClass", "DBInstanceDescription", "DBInstanceId",
    "DBInstanceStatus", "DBInstanceStorage", "DBInstanceType", "Engine", "EngineVersion", "ExpireTime",
    "KindCode", "LockMode", "NetworkType", "RegionId", "ReplicationFactor", "ResourceGroupId",
    "StorageType", "VpcAuthMode", "ZoneId",
)  # fmt: skip


REGIONS_ACTION = "DescribeRegions"
# The metadata's example answers cn-hangzhou with the central host (DescribeRegions EndPoint,
# "mongodb.aliyuncs.com"). assumption: every other region answers its regional host (tea-openapi's
# "regional" rule); a region's RegionName and a zone's ZoneName are their IDs (localcloud keeps no
# table of names) and every zone is VpcEnabled (the metadata's example).
CENTRAL_ENDPOINT = ("cn-hangzhou", "mongodb.aliyuncs.com")

# assumption: a plausible backup set size; no rule reads it.
BACKUP_SIZE = 6 * 1024 * 1024


class DdsResponse(TaskResponse[DdsBackend]):
    """The Dds actions of one localcloud (``cloud.dds``'s backends)."""

    product = DdsBackend.product
    action_names = InstanceActions(
        list="DescribeDBInstances",
        attribute="DescribeDBInstanceAttribute",
        versions="DescribeAvailableEngineVersion",
        upgrade="UpgradeDBInstanceEngineVersion",
    )
    actions = action_names.names() | TASK_ACTIONS | {REGIONS_ACTION}
    db_type = "mongodb"  # "fixed: mongodb" (metadata DescribeHistoryTasks DbType)
    history_product = "dds"  # "fixed: dds" (metadata DescribeHistoryTasks Product)
    # assumption: the history TaskType of an engine-version upgrade; the documented list (metadata) has
    # KernelVersionUpgrade, "kernel version upgrade", and no other version upgrade.
    history_task_type = "KernelVersionUpgrade"
    list_ids_param = "DBInstanceId"
    list_filters = ("DBInstanceType",)
    max_page_size = 100
    list_keys = LIST_KEYS
    list_body = ("DBInstances", "DBInstance")
    central_endpoint = CENTRAL_ENDPOINT
    attribute_body = ("DBInstances", "DBInstance")

    def __init__(self, cloud: Any) -> None:
        super().__init__(cloud.dds)
        self._answers[REGIONS_ACTION] = self.describe_regions

    def describe_regions(self, params: dict[str, str], ctx: CallContext) -> dict[str, Any]:
        """The regions Dds serves (SDK ``_describe_regions_response_body.py``: Regions.DdsRegion[] of
        RegionId, RegionName, EndPoint, Zones.Zone[] {ZoneId, ZoneName, VpcEnabled}). A RegionId
        parameter names the one region wanted (the SDK request model: "If you do not specify this
        parameter, all supported regions are queried"); the host's region filters nothing."""
        wanted = params.get("RegionId")
        return {
            "Regions": {
                "DdsRegion": [
                    {
                        "RegionId": region,
                        "RegionName": region,
                        "EndPoint": self.region_endpoint(region),
                        "Zones": {
                            "Zone": [{"ZoneId": zone, "ZoneName": zone, "VpcEnabled": True} for zone in zones]
                        },
                    }
                    for region, zones in self.backends.served_regions()
                    if not wanted or region == wanted
                ]
            }
        }

    def describe_versions(self, backend: DdsBackend, inst: Instance) -> dict[str, Any]:
        return {"EngineVersions": {"EngineVersion": upgrade_targets(inst.attrs)}}

    def upgrade(self, backend: DdsBackend, params: dict[str, str]) -> dict[str, Any]:
        backend.upgrade(params["DBInstanceId"], require(params, "EngineVersion"), params.get("SwitchMode"))
        return {}

    # --- backups (field names: metadata CreateBackup / DescribeBackupTasks / DescribeBackups) ----

    def render_created(self, job: BackupJob) -> dict[str, Any]:
        # "BackupId": the metadata calls it the backup ID, and DescribeBackupTasks takes it as BackupJobId.
        return {"BackupId": str(job.backup_id)}

    def render_jobs(self, inst: Instance, jobs: list[BackupJob], now: float) -> dict[str, Any]:
        return {
            "BackupJobs": [
                {
                    "BackupjobId": str(job.job_id),
                    # Scheduled/Checking/Backuping/Finished (metadata)
                    "BackupSetStatus": "Backuping" if job.running(now) else "Finished",
                    "BackupStartTime": iso(job.started_at),
                    "Progress": f"{job.percent(now)}%",  # "18%" (metadata example)
                    "JobMode": "Manual",
                }
                for job in jobs
            ]
        }

    def render_set(self, inst: Instance, backup: BackupSet) -> dict[str, Any]:
        # "cloud-disk instances support only snapshot backups" (metadata CreateBackup BackupMethod)
        method = "Physical" if inst.attrs.get("KindCode") == "0" else "Snapshot"
        return {
            "BackupId": str(backup.backup_id),
            "BackupJobId": str(backup.job_id),
            "BackupStatus": "Success" if backup.ok else "Failed",
            "BackupStartTime": iso(backup.started_at),
            "BackupEndTime": iso(backup.ended_at),
            "BackupType": "FullBackup",
            "BackupMode": backup.mode,
            "BackupMethod": method,
            "BackupDBNames": "",
            "BackupSize": BACKUP_SIZE if backup.ok else 0,
            "BackupDownloadURL": "",
            "BackupIntranetDownloadURL": "",
            "BackupName": "",
            "BackupScale": "",
            "IsAvail": backup.ok,
        }
