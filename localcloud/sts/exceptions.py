"""STS's own errors: each renders the gateway's JSON error body (openapi/errors.py ``OpenApiError``).

Codes, statuses and messages: the AssumeRole metadata's error codes (``apimeta/sts-2015-04-01.json``,
from dew-serverless/acs-sdk-php data/sts/2015-04-01/api-docs.json) unless a class says otherwise.
"""

from __future__ import annotations

from localcloud.openapi.errors import OpenApiError


class NoPermission(OpenApiError):
    """The caller may not assume the role: its own RAM policies do not allow ``sts:AssumeRole`` on
    it, or the role's trust policy does not name the caller's account (the AssumeRole page gives both
    causes for this one error: metadata ``description``)."""

    status = 403
    code = "NoPermission"
    default_message = "You are not authorized to do this action. You should be authorized by RAM."


class RootMayNotAssume(NoPermission):
    """An account's own AccessKey called AssumeRole: "ErrorCode: NoPermission ErrorMessage: Roles may
    not be assumed by root accounts." (help.aliyun.com/document_detail/42775.html, STS FAQ); the
    AssumeRole page says only RAM users and RAM roles may call it (metadata ``description``)."""

    default_message = "Roles may not be assumed by root accounts."


class RoleNotFound(OpenApiError):
    status = 404
    code = "EntityNotExist.Role"
    default_message = "The specified Role not exists ."


class InvalidDurationSeconds(OpenApiError):
    code = "InvalidParameter.DurationSeconds"
    default_message = "The Min/Max value of DurationSeconds is 15min/1hr."


class InvalidRoleArn(OpenApiError):
    code = "InvalidParameter.RoleArn"
    default_message = "The parameter RoleArn is wrongly formed."


class InvalidRoleSessionName(OpenApiError):
    code = "InvalidParameter.RoleSessionName"
    default_message = "The parameter RoleSessionName is wrongly formed."


class InvalidPolicyGrammar(OpenApiError):
    code = "InvalidParameter.PolicyGrammar"
    default_message = "The parameter Policy has not passed grammar check."


class InvalidPolicySize(OpenApiError):
    code = "InvalidParameter.PolicySize"
    default_message = "The size of Policy must be smaller than 2048 bytes."
