"""What a failed cloud call means: the error classes of ``CloudError`` (one place, cloudapi.py)."""

from __future__ import annotations

import pytest
from dbupgrade.cloudapi import CloudError


@pytest.mark.parametrize(
    ("code", "status"),
    [
        ("Throttling", 400),
        ("Throttling.User", 400),
        ("Throttling.Api", 400),
        ("Rejected.Throttling", 400),  # terraform NeedRetry retries it; a fixed set used to miss it
        ("ServiceUnavailable", 503),
        ("AnythingElse", 429),
    ],
)
def test_the_throttling_family_is_throttled_and_transient(code: str, status: int) -> None:
    error = CloudError(code, "slow down", status=status)
    assert error.throttled and error.transient and not error.configuration


@pytest.mark.parametrize(
    "code",
    [
        "Task.Conflict",
        "OperationDenied.DBInstanceStatus",
        "IncorrectDBInstanceState",
        "ConcurrentTaskExceeded",
        "LockTimeout",
    ],
)
def test_busy_codes_are_transient_whatever_their_status(code: str) -> None:
    error = CloudError(code, "busy", status=403)
    assert error.busy and error.transient and not error.throttled and not error.instance_not_found


def test_only_instance_codes_mean_the_instance_is_not_found() -> None:
    assert CloudError("InvalidInstanceId.NotFound", "", status=404).instance_not_found
    assert CloudError("InvalidDBInstanceId.NotFound", "", status=404).instance_not_found
    for code in ("InvalidAccessKeyId.NotFound", "InvalidAction.NotFound", "Whatever.NotFound"):
        assert not CloudError(code, "", status=404).instance_not_found


@pytest.mark.parametrize(
    ("code", "status", "says"),
    [
        ("InvalidAccessKeyId.NotFound", 404, "the AccessKey ID is not known to Alibaba Cloud"),
        ("InvalidAccessKeyId.Inactive", 400, "the AccessKey is disabled"),
        ("SignatureDoesNotMatch", 400, "ALIBABA_CLOUD_ACCESS_KEY_SECRET"),
        ("IncompleteSignature", 400, "signature"),
        ("InvalidSecurityToken.Expired", 400, "STS security token"),
        ("InvalidSecurityToken.Malformed", 400, "STS security token"),
        ("InvalidTimeStamp.Expired", 400, "clock"),
        ("InvalidAction.NotFound", 404, "endpoint"),
        ("InvalidVersion", 400, "API version"),
        ("Forbidden.RAM", 403, "the RAM policy does not allow kvstore:ModifyInstanceMajorVersion on r-bp1x"),
        ("Forbidden", 403, "the RAM policy"),
        ("NoPermission", 403, "the RAM policy"),
    ],
)
def test_configuration_errors_say_what_to_fix_on_one_line(code: str, status: int, says: str) -> None:
    error = CloudError(code, "the gateway's own words", status=status)
    error.action = "kvstore:ModifyInstanceMajorVersion"
    line = error.explain("r-bp1x")
    assert error.configuration and not error.transient and not error.instance_not_found
    assert says in line and line.endswith(f"({code})") and "\n" not in line


def test_an_ordinary_refusal_is_neither_transient_nor_configuration() -> None:
    error = CloudError("EngineVersion.ERROR", "Target  engineVersion must be greater", status=400)
    assert not (error.transient or error.configuration or error.busy or error.instance_not_found)
    assert error.explain() == "Target  engineVersion must be greater (EngineVersion.ERROR)"
