"""R-kvstore's protocol side: each action's parameters into a ``KvstoreBackend`` call, its result into a body.

The body keys are the official SDK models' (alibabacloud_r_kvstore20150101 7.0.0); the gateway
(openapi/responses.py) then cuts them to the API metadata's response fields.
"""

from __future__ import annotations

from typing import Any

from localcloud.kvstore.models import MEMCACHE, KvstoreBackend
from localcloud.openapi.errors import require
from localcloud.openapi.instance_responses import InstanceActions, InstanceResponse
from localcloud.openapi.lifecycle import Instance

# Rendered by DescribeInstances (the KVStoreInstance keys of the SDK model), seed values win.
LIST_KEYS = (
    "ArchitectureType", "Bandwidth", "Capacity", "ChargeType", "CloudType", "ConnectionDomain",
    "Connections", "CreateTime", "EditionType", "EndTime", "EngineVersion", "GlobalInstanceId",
    "HasRenewChangeOrder", "InstanceClass", "InstanceId", "InstanceName", "InstanceStatus", "InstanceType",
    "IsRds", "NetworkType", "NodeType", "PackageType", "Port", "PrivateIp", "QPS", "RegionId",
    "ResourceGroupId", "ShardCount", "UserName", "VSwitchId", "VpcId", "ZoneId",
)  # fmt: skip


class KvstoreResponse(InstanceResponse[KvstoreBackend]):
    """The R-kvstore actions of one localcloud (``cloud.kvstore``'s backends)."""

    product = KvstoreBackend.product
    action_names = InstanceActions(
        list="DescribeInstances",
        attribute="DescribeInstanceAttribute",
        versions="DescribeEngineVersion",
        upgrade="ModifyInstanceMajorVersion",
    )
    actions = action_names.names()
    list_ids_param = "InstanceIds"
    max_page_size = 50
    list_keys = LIST_KEYS
    list_body = ("Instances", "KVStoreInstance")
    attribute_body = ("Instances", "DBInstanceAttribute")

    def __init__(self, cloud: Any) -> None:
        super().__init__(cloud.kvstore)

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
