"""OpenAPI errors: exception classes that render the gateway's own JSON error body.

Body: ``{"RequestId", "HostId", "Code", "Message", "Recommend"}``; the gateway, a product's
responses and its models raise these (a product's own classes live in its ``exceptions.py``) and
the gateway renders them with the right status. Codes, statuses and messages follow research/alibaba-apis.md §2 (the gateway's common errors) and §3/§4 (products).

Example::

    raise InvalidParameter("MajorVersion")    # 400 InvalidParameter, names the field
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from urllib.parse import quote


class OpenApiError(Exception):
    """One refused call: ``status``, ``code`` and ``default_message`` unless the raiser words it."""

    status = 400
    code = "InternalError"
    default_message = ""

    def __init__(
        self,
        message: str | None = None,
        *,
        code: str | None = None,
        status: int | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.message = message or self.default_message
        super().__init__(self.message)
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status
        self.headers = headers or {}

    def body(self, request_id: str, host_id: str, product: str) -> bytes:
        recommend = (
            f"https://api.aliyun.com/troubleshoot?q={quote(self.code)}&product={quote(product)}"
            f"&requestId={request_id}"
        )
        return json.dumps(
            {
                "RequestId": request_id,
                "HostId": host_id,
                "Code": self.code,
                "Message": self.message,
                "Recommend": recommend,
            }
        ).encode()


# --- the gateway: authentication, replay, routing --------------------------------------------------


class SignatureDoesNotMatch(OpenApiError):
    code = "SignatureDoesNotMatch"
    default_message = "Specified signature does not match our calculation."


class IncompleteSignature(OpenApiError):
    code = "IncompleteSignature"
    default_message = "The request signature does not conform to Aliyun standards."


class InvalidAccessKeyIdNotFound(OpenApiError):
    status = 404
    code = "InvalidAccessKeyId.NotFound"
    default_message = "Specified access key is not found."


class InvalidTimeStampExpired(OpenApiError):
    code = "InvalidTimeStamp.Expired"
    default_message = "Specified time stamp or date value is expired."


class InvalidTimeStampFormat(OpenApiError):
    code = "InvalidTimeStamp.Format"
    default_message = "Specified time stamp or date value is not well formatted."


class SignatureNonceUsed(OpenApiError):
    code = "SignatureNonceUsed"
    default_message = "Specified signature nonce was used already."


class InvalidSecurityToken(OpenApiError):
    """``reason``: Missing | Malformed | Expired | MismatchWithAccessKey (accounts.TokenError)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message, code=f"InvalidSecurityToken.{reason}")


class InvalidActionNotFound(OpenApiError):
    status = 404
    code = "InvalidAction.NotFound"
    default_message = "Specified api is not found, please check your url and method."


class InvalidVersion(OpenApiError):
    code = "InvalidVersion"
    default_message = "Specified parameter Version is not valid."


class ThrottlingUser(OpenApiError):
    code = "Throttling.User"
    default_message = "Request was denied due to user flow control."


class ServiceUnavailable(OpenApiError):
    status = 503
    code = "ServiceUnavailable"
    default_message = "The request has failed due to a temporary failure of the server."


class InternalError(OpenApiError):
    status = 500
    code = "InternalError"
    default_message = "The request processing has failed due to some unknown error, exception or failure."


# --- parameters ------------------------------------------------------------------------------------


class _ParameterError(OpenApiError):
    """An error about one request parameter: ``template`` names it, ``detail`` may follow."""

    template = ""

    def __init__(self, name: str, detail: str | None = None) -> None:
        message = self.template.format(name=name)
        super().__init__(f"{message} {detail}" if detail else message)
        self.parameter = name


class MissingParameter(_ParameterError):
    code = "MissingParameter"
    template = 'The input parameter "{name}" that is mandatory for processing this request is not supplied.'


class InvalidParameter(_ParameterError):
    code = "InvalidParameter"
    template = 'The specified parameter "{name}" is not valid.'


def require(params: Mapping[str, str], name: str) -> str:
    """The non-empty value of ``params[name]``; MissingParameter naming it otherwise."""
    value = params.get(name)
    if value is None or value == "":
        raise MissingParameter(name)
    return value


def one_of(name: str, value: str | None, allowed: Mapping[str, str], default: str) -> str:
    """Map the value of parameter ``name`` through ``allowed`` (absent: ``default``); InvalidParameter otherwise."""
    if value is None or value == "":
        return default
    if value not in allowed:
        raise InvalidParameter(name, f"Allowed values: {', '.join(allowed)}.")
    return allowed[value]


def page(params: Mapping[str, str], default_size: int, max_size: int) -> tuple[int, int]:
    """PageNumber (>= 1) and PageSize (1..max_size) from ``params``; InvalidParameter naming the bad one."""
    number = _positive_int(params, "PageNumber", 1)
    size = _positive_int(params, "PageSize", default_size)
    if size > max_size:
        raise InvalidParameter("PageSize", f"It must be between 1 and {max_size}.")
    return number, size


def _positive_int(params: Mapping[str, str], name: str, default: int) -> int:
    raw = params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise InvalidParameter(name) from None
    if value < 1:
        raise InvalidParameter(name)
    return value


class ForbiddenRam(OpenApiError):
    """A RAM denial (research/alibaba-apis.md §2; observed 403 with this message in
    alibaba/terraform-provider#182 and alibaba/packer-provider#34).

    The gateway adds ``AccessDeniedDetail`` naming the denied action; its fields are those of the
    official SDK model (alibabacloud_r_kvstore20150101 ``DescribeBackupsResponseBodyAccessDeniedDetail``),
    and tea-openapi surfaces it as ``ClientException.access_denied_detail``.
    """

    status = 403
    code = "Forbidden.RAM"
    default_message = (
        "User not authorized to operate on the specified resource, or this API doesn't support RAM."
    )
    # Assumptions (values no public page pins down): the policy type of an identity-based denial
    # and the principal type of an assumed role.
    POLICY_TYPE = "AccountLevelIdentityBasedPolicy"
    ASSUMED_ROLE_PRINCIPAL = "AssumedRoleUser"

    def __init__(self, action: str, account_id: str, role_name: str, no_permission_type: str) -> None:
        super().__init__()
        self.detail = {
            "AuthAction": action,
            "AuthPrincipalOwnerId": account_id,
            "AuthPrincipalType": self.ASSUMED_ROLE_PRINCIPAL,
            "AuthPrincipalDisplayName": role_name,
            "NoPermissionType": no_permission_type,
            "PolicyType": self.POLICY_TYPE,
        }

    def body(self, request_id: str, host_id: str, product: str) -> bytes:
        document = json.loads(super().body(request_id, host_id, product))
        return json.dumps({**document, "AccessDeniedDetail": self.detail}).encode()


# --- tasks, backups and O&M events (both products) -------------------------------------------------


class ParamInvalid(OpenApiError):
    """DescribeHistoryTasks: a malformed parameter (metadata, both products: 400, verbatim message)."""

    code = "Param.Invalid"
    default_message = "Param invalid"


class TimeEndBeforeStart(OpenApiError):
    """DescribeHistoryTasks: ToStartTime before FromStartTime (metadata, both products: 400, verbatim)."""

    code = "Param.Invalid.TimeEndBeforeStart"
    default_message = "Param invalid. End time before start time"


class InvalidStartTime(OpenApiError):
    """DescribeBackups: StartTime not ``yyyy-MM-ddTHH:mmZ`` (metadata, both products: 400, verbatim)."""

    code = "InvalidStartTime.Malformed"
    default_message = "The Specified parameter StartTime is not valid."


class InvalidEndTime(OpenApiError):
    """DescribeBackups: EndTime not ``yyyy-MM-ddTHH:mmZ`` (metadata, both products: 400, verbatim)."""

    code = "InvalidEndTime.Malformed"
    default_message = "The Specified parameter EndTime is not valid."


class InvalidStartTimeAndEndTime(OpenApiError):
    """DescribeBackups: EndTime not after StartTime (metadata: 400; R-kvstore's message, Dds words it
    "The Specified parameter StartTime or EndTime is not valid.")."""

    code = "InvalidStartTimeAndEndTime.Malformed"
    default_message = "The end time must be greater than the start time."


# ModifyActiveOperationTasks / CancelActiveOperationTasks: neither product's metadata documents an
# error. Assumption: they answer what the same O&M-event service documents for PolarDB's
# ModifyPendingMaintenanceAction and ModifyActiveOperationTasks (help.aliyun.com/document_detail/187805.htm;
# help.aliyun.com/zh/polardb/api-polardb-2017-08-01-modifyactiveoperationtasks): codes, statuses, messages.


class SwitchTimeAfterDeadline(OpenApiError):
    code = "SwitchTimeAfterDeadline"
    default_message = "The switch time should be earlier than deadline."


class StartTimeBeforeNow(OpenApiError):
    code = "StartTimeBeforeNow"
    default_message = "The start time should not be earlier than the current time."


class IncorrectTaskStatus(OpenApiError):
    """An O&M event that is no longer pending, or (cancel) whose start time has passed: "O&M events
    cannot be cancelled when allowCancel is 0, the current time is after the start time, or the status
    is not 3" (alibabacloud.com/help/en/redis/developer-reference/api-r-kvstore-2015-01-01-
    cancelactiveoperationtasks-redis)."""

    status = 403
    code = "IncorrectTaskStatus"
    default_message = "Certain task's status does not support this operation."
