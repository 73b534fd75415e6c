"""R-kvstore's own errors: each renders the gateway's JSON error body (openapi/errors.py ``OpenApiError``).

Codes, statuses and messages: research/alibaba-apis.md §3 and the sources named on each class.
"""

from __future__ import annotations

from localcloud.openapi.errors import OpenApiError


class InstanceNotFound(OpenApiError):
    status = 404
    code = "InvalidInstanceId.NotFound"
    default_message = "The InstanceId provided does not exist in our records."


class InstanceStatusNotSupport(OpenApiError):
    """Assumption: ModifyInstanceMajorVersion documents only 403 NoQuota (metadata 2024); the code for
    an instance in a status that cannot upgrade (e.g. Flushing, Error) is unverified."""

    status = 403
    code = "InstanceStatus.NotSupport"
    default_message = "Instance status does not support this operation."


class TaskConflict(OpenApiError):
    """The instance is busy with another task. The code is the one Terraform retries for kvstore changes
    (terraform-provider-alicloud ``resource_alicloud_kvstore_instance.go`` L1442, real-cloud-facts.md #6).
    Assumption: its HTTP status (403) and message; and that a booked maintenance-window upgrade counts
    as such a task (real-cloud-facts.md #14: no source says what a second call returns)."""

    status = 403
    code = "Task.Conflict"
    default_message = "The instance has a task in progress; try again later."


class IncorrectEngineVersion(OpenApiError):
    """A target outside the instance's deployment mode, not newer, or not allowed. Assumption: the
    code and status; crossing modes (4.0 -> 6.0) failed with "invalid instance class" in
    aliyun/terraform-provider-alicloud#5053, whose exact code is unknown."""

    status = 403
    code = "IncorrectEngineVersion"
    default_message = "The specified major version is not supported by the instance class."


class InstanceTypeNotSupport(OpenApiError):
    """Assumption: the code, status and message for a major-version upgrade asked of a Memcache
    instance; no source shows what the service answers."""

    status = 403
    code = "InstanceType.NotSupport"
    default_message = "The instance type does not support this operation."
