"""Dds's own errors: each renders the gateway's JSON error body (openapi/errors.py ``OpenApiError``).

Codes, statuses and messages: research/alibaba-apis.md §4 and the sources named on each class.
"""

from __future__ import annotations

from localcloud.openapi.errors import OpenApiError


class DBInstanceNotFound(OpenApiError):
    status = 404
    code = "InvalidDBInstanceId.NotFound"
    default_message = "The DBInstanceId provided does not exist in our records."


class IncorrectDBInstanceState(OpenApiError):
    """An instance not Running (e.g. Rebooting). The code is one Terraform groups as "instance busy"
    (``alicloud/errors.go`` L44, real-cloud-facts.md #6). Assumption: that this action answers it, and
    its status and message."""

    status = 403
    code = "IncorrectDBInstanceState"
    default_message = "Current DB instance state does not support this operation."


class DBInstanceBusy(OpenApiError):
    """The instance is busy with another task: the code Terraform retries for Dds modify calls
    (``resource_alicloud_mongodb_instance.go`` L954, L1101, L1645; ``service_alicloud_mongodb.go`` L420,
    L457; real-cloud-facts.md #6). Assumption: its 403 status, the message (the wording RDS uses for its
    OperationDenied.* codes, developer.aliyun.com/ask/54453), and that a booked maintenance-window
    upgrade counts as busy (real-cloud-facts.md #14)."""

    status = 403
    code = "OperationDenied.DBInstanceStatus"
    default_message = "The operation is not permitted due to status of instance."


class EngineVersionError(OpenApiError):
    """The one documented error of UpgradeDBInstanceEngineVersion (metadata: 400, verbatim message)."""

    status = 400
    code = "EngineVersion.ERROR"
    default_message = "Target  engineVersion must be greater than the current one."


class BackupJobExists(OpenApiError):
    """CreateBackup while a backup job runs (metadata CreateBackup: 403, verbatim message)."""

    status = 403
    code = "OperationDenied.BackupJobExists"
    default_message = "The operation is not permitted due to backup job exist."
