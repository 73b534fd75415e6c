"""Resource Manager's own errors: each renders the gateway's JSON error body (openapi/errors.py)."""

from __future__ import annotations

from localcloud.openapi.errors import OpenApiError


class ResourceDirectoryNotFound(OpenApiError):
    """The caller's account is in no resource directory: ListAccounts' one documented error
    (metadata, dew-serverless/acs-sdk-php data/resourcemanager/2020-03-31/api-docs.json)."""

    status = 404
    code = "EntityNotExists.ResourceDirectory"
    default_message = (
        "The resource directory for the account is not enabled. "
        "We recommend that you first enable the resource directory for the account."
    )


class NotManagementAccount(OpenApiError):
    """A member that is neither the management account nor a delegated administrator called a
    management-only action. The metadata says only those two may call ListAccounts but documents no
    error for anyone else. assumption: 403 NoPermission with STS's wording, the code Alibaba's
    gateways give a caller that lacks the right to an action (STS AssumeRole metadata)."""

    status = 403
    code = "NoPermission"
    default_message = "You are not authorized to do this action. You should be authorized by RAM."
