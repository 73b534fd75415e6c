"""R-kvstore's protocol side: each action's parameters into a ``KvstoreBackend`` call, its result into a body.

The body keys are the official SDK models' (alibabacloud_r_kvstore20150101 7.0.0); the gateway
(openapi/responses.py) then cuts them to the API metadata's response fields.
"""

from __future__ import annotations

from typing import Any

from localcloud.kvstore.models import MEMCACHE, KvstoreBackend
from localcloud.openapi.errors import require
from localcloud.openapi.handler import CallContext
from localcloud.openapi.instance_responses import InstanceActions
from localcloud.openapi.lifecycle import BackupJob, BackupSet, Instance, iso
from localcloud.openapi.task_responses import TASK_ACTIONS, TaskResponse

# Rendered by DescribeInstances (the KVStoreInstance keys of the SDK model), seed values win.
LIST_KEYS = (
    "ArchitectureType", "Bandwidth", "Capacity", "ChargeType", "CloudType", "ConnectionDomain",
    "Connections", "CreateTime", "EditionType", "EndTime", "EngineVersion", "GlobalInstanceId",
    "HasRenewChangeOrder", "InstanceClass", "InstanceId", "InstanceName", "InstanceStatus", "InstanceType",
    "IsRds", "NetworkType", "NodeType", "PackageType", "Port", "PrivateIp", "QPS", "RegionId",
    "ResourceGroupId", "ShardCount", "UserName", "VSwitchId", "VpcId", "ZoneId",
)  # fmt: skip


REGIONS_ACTION = "DescribeRegions"
# The metadata's example answers cn-hangzhou with the central host (DescribeRegions RegionEndpoint,
# "r-kvstore.aliyuncs.com"; the SDK client's ``_endpoint_map`` maps cn-hangzhou there too).
# assumption: every other region answers its regional host (tea-openapi's "regional" rule), and a
# region's LocalName is its ID (localcloud keeps no table of region names).
CENTRAL_ENDPOINT = ("cn-hangzhou", "r-kvstore.aliyuncs.com")

# assumption: the backup set size and download hosts are plausible values; no rule reads them.
BACKUP_SIZE = 1024 * 1024


class KvstoreResponse(TaskResponse[KvstoreBackend]):
    """The R-kvstore actions of one localcloud (``cloud.kvstore``'s backends)."""

    product = KvstoreBackend.product
    action_names = InstanceActions(
        list="DescribeInstances",
        attribute="DescribeInstanceAttribute",
        versions="DescribeEngineVersion",
        upgrade="ModifyInstanceMajorVersion",
    )
    actions = action_names.names() | TASK_ACTIONS | {REGIONS_ACTION}
    db_type = "redis"  # "fixed: redis" (metadata DescribeHistoryTasks DbType)
    history_product = "kvstore"  # "fixed: kvstore" (metadata DescribeHistoryTasks Product)
    # assumption: the history TaskType of a major upgrade; the documented types (metadata: ModifyInsSpec,
    # DeleteInsNode, AddInsNode, HaSwitch, RestartIns, CreateIns, ModifyInsConfig) name none.
    history_task_type = "ModifyInsConfig"
    list_ids_param = "InstanceIds"
    max_page_size = 50
    list_keys = LIST_KEYS
    list_body = ("Instances", "KVStoreInstance")
    central_endpoint = CENTRAL_ENDPOINT
    attribute_body = ("Instances", "DBInstanceAttribute")

    def __init__(self, cloud: Any) -> None:
        super().__init__(cloud.kvstore)
        self._answers[REGIONS_ACTION] = self.describe_regions

    def describe_regions(self, params: dict[str, str], ctx: CallContext) -> dict[str, Any]:
        """Every region R-kvstore serves (SDK ``_describe_regions_response_body.py``: RegionIds.
        KVStoreRegion[] of RegionId, LocalName, RegionEndpoint, ZoneIds "a,b", ZoneIdList.ZoneId[]).
        The metadata names no RegionId parameter: whatever the caller's region, all are listed."""
        return {
            "RegionIds": {
                "KVStoreRegion": [
                    {
                        "RegionId": region,
                        "LocalName": region,
                        "RegionEndpoint": self.region_endpoint(region),
                        "ZoneIds": ",".join(zones),
                        "ZoneIdList": {"ZoneId": zones},
                    }
                    for region, zones in self.backends.served_regions()
                ]
            }
        }

    def describe_versions(self, backend: KvstoreBackend, inst: Instance) -> dict[str, Any]:
        """DescribeEngineVersion's fields (SDK ``_describe_engine_version_response_body.py`` L11-86)."""
        major = inst.version
        newer = backend.major_upgrades(inst)
        latest = backend.minor_is_latest(inst)
        engine = "memcache" if inst.attrs["InstanceType"] == MEMCACHE else "redis"
        newest_minor = f"{engine}-{major}_0.5.0"
        minor = newest_minor if latest else f"{engine}-{major}_0.4.0"
        release = {"ReleaseInfo": {"ReleaseInfoList": []}, "VersionChangesLevel": "1"}
        return {
            "Engine": engine,
            "MajorVersion": major,
            "MinorVersion": minor,
            # false: "cannot be upgraded, usually already the latest" (metadata DescribeEngineVersion)
            "EnableUpgradeMajorVersion": bool(newer),
            "EnableUpgradeMinorVersion": not latest,
            "IsLatestVersion": latest,
            "IsAutoUpgradeOpen": "0",
            "IsSSLEnable": "false",
            "IsNewSSLMode": "false",
            "IsOpenNGLB": "false",
            "IsRedisCompatibleVersion": "1",
            "DBVersionRelease": "{}",
            "ProxyMinorVersion": "7.0.10",
            "ProxyVersionRelease": "{}",
            "DBLatestMinorVersion": {"MinorVersion": newest_minor, "Level": "0", "VersionRelease": release},
            "ProxyLatestMinorVersion": {"MinorVersion": "7.0.10", "Level": "0", "VersionRelease": release},
        }

    def upgrade(self, backend: KvstoreBackend, params: dict[str, str]) -> dict[str, Any]:
        backend.upgrade(params["InstanceId"], require(params, "MajorVersion"), params.get("EffectiveTime"))
        return {}

    # --- backups (field names: metadata CreateBackup / DescribeBackupTasks / DescribeBackups) ----

    def render_created(self, job: BackupJob) -> dict[str, Any]:
        return {"BackupJobID": str(job.job_id)}

    def render_jobs(self, inst: Instance, jobs: list[BackupJob], now: float) -> dict[str, Any]:
        return {
            "InstanceId": inst.instance_id,
            "BackupJobs": [
                {
                    "BackupJobID": job.job_id,
                    # NoStart/Preparing/Waiting/Uploading/Checking/Finished (metadata); assumption:
                    # a running job shows Uploading throughout.
                    "BackupProgressStatus": "Uploading" if job.running(now) else "Finished",
                    "Process": str(job.percent(now)),
                    "JobMode": "Manual",
                    "StartTime": iso(job.started_at),
                    "TaskAction": "TempBackupTask",  # "a manual backup" (metadata)
                    "NodeId": inst.instance_id,
                }
                for job in jobs
            ],
        }

    def render_set(self, inst: Instance, backup: BackupSet) -> dict[str, Any]:
        return {
            "BackupId": backup.backup_id,
            "BackupJobID": backup.job_id,
            "BackupStatus": "Success" if backup.ok else "Failed",
            "BackupStartTime": iso(backup.started_at),
            "BackupEndTime": iso(backup.ended_at),
            "BackupType": "FullBackup",
            "BackupMode": backup.mode,
            "BackupMethod": "Physical",
            "BackupDBNames": "all",  # "default all" (metadata)
            "BackupSize": BACKUP_SIZE if backup.ok else 0,
            "EngineVersion": inst.version,
            "NodeInstanceId": inst.instance_id,  # "the instance ID for a standard instance" (metadata)
            "BackupDownloadURL": "",
            "BackupIntranetDownloadURL": "",
            "RecoverConfigMode": "",
        }

    def backups_extra(self, inst: Instance, sets: list[BackupSet]) -> dict[str, Any]:
        return {"FullStorageSize": BACKUP_SIZE * sum(s.ok for s in sets), "LogStorageSize": 0, "FreeSize": 0}
