"""Dds's protocol side: each action's parameters into a ``DdsBackend`` call, its result into a body.

The body keys are the official SDK models' (alibabacloud_dds20151201); the gateway
(openapi/responses.py) then cuts them to the API metadata's response fields.
"""

from __future__ import annotations

from typing import Any

from localcloud.dds.models import DdsBackend, upgrade_targets
from localcloud.openapi.errors import require
from localcloud.openapi.instance_responses import InstanceActions, InstanceResponse
from localcloud.openapi.lifecycle import Instance

# Rendered by DescribeDBInstances (the SDK model's DBInstance keys), seed values win.
LIST_KEYS = (
    "ChargeType", "CreationTime", "DBInstanceClass", "DBInstanceDescription", "DBInstanceId",
    "DBInstanceStatus", "DBInstanceStorage", "DBInstanceType", "Engine", "EngineVersion", "ExpireTime",
    "KindCode", "LockMode", "NetworkType", "RegionId", "ReplicationFactor", "ResourceGroupId",
    "StorageType", "VpcAuthMode", "ZoneId",
)  # fmt: skip


class DdsResponse(InstanceResponse[DdsBackend]):
    """The Dds actions of one localcloud (``cloud.dds``'s backends)."""

    product = DdsBackend.product
    action_names = InstanceActions(
        list="DescribeDBInstances",
        attribute="DescribeDBInstanceAttribute",
        versions="DescribeAvailableEngineVersion",
        upgrade="UpgradeDBInstanceEngineVersion",
    )
    actions = action_names.names()
    list_ids_param = "DBInstanceId"
    list_filters = ("DBInstanceType",)
    max_page_size = 100
    list_keys = LIST_KEYS
    list_body = ("DBInstances", "DBInstance")
    attribute_body = ("DBInstances", "DBInstance")

    def __init__(self, cloud: Any) -> None:
        super().__init__(cloud.dds)

    def describe_versions(self, backend: DdsBackend, inst: Instance) -> dict[str, Any]:
        return {"EngineVersions": {"EngineVersion": upgrade_targets(inst.attrs)}}

    def upgrade(self, backend: DdsBackend, params: dict[str, str]) -> dict[str, Any]:
        backend.upgrade(params["DBInstanceId"], require(params, "EngineVersion"), params.get("SwitchMode"))
        return {}
