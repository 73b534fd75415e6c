"""FC's own errors: exceptions that render FC 2.0's own JSON error body.

Body: ``{"ErrorCode", "ErrorMessage", "RequestId"}``, always JSON (aliyun-fc2 calls ``r.json()``
on every 4xx/5xx and crashes on anything else). Codes and messages follow FC's error-code table.
"""

from __future__ import annotations


class FcApiError(Exception):
    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}

    def body(self, request_id: str) -> dict[str, str]:
        return {"ErrorCode": self.code, "ErrorMessage": self.message, "RequestId": request_id}


def service_not_found(service: str) -> FcApiError:
    return FcApiError(404, "ServiceNotFound", f"service '{service}' does not exist")


def function_not_found(service: str, function: str) -> FcApiError:
    return FcApiError(404, "FunctionNotFound", f"function '{function}' does not exist in service '{service}'")


def trigger_not_found(service: str, function: str) -> FcApiError:
    return FcApiError(
        404, "TriggerNotFound", f"function '{function}' of service '{service}' has no HTTP trigger"
    )


def path_not_supported(method: str, path: str) -> FcApiError:
    return FcApiError(400, "PathNotSupported", f"'{method}' against '{path}' is not supported")


def invalid_argument(message: str) -> FcApiError:
    return FcApiError(400, "InvalidArgument", message)


def missing_header(name: str) -> FcApiError:
    return FcApiError(400, "MissingRequiredHeader", f"required HTTP header {name} was not specified")


def entity_too_large(limit: int) -> FcApiError:
    return FcApiError(400, "EntityTooLarge", f"payload size exceeds maximum allowed size ({limit} bytes)")


def throttled(retry_after_ms: int | None = None) -> FcApiError:
    headers = {"Retry-After": str(max(1, -(-retry_after_ms // 1000)))} if retry_after_ms else {}
    return FcApiError(429, "ResourceThrottled", "Reserve resource exceeded limit", headers)


def service_unavailable() -> FcApiError:
    return FcApiError(
        503, "ServiceUnavailable", "The service is temporarily unavailable, please try again later"
    )


def access_denied(action: str, resource: str) -> FcApiError:
    """A RAM denial, worded as FC 2.0 words it (403 AccessDenied; Serverless-Devs/Serverless-Devs#350:
    "the caller is not authorized to perform 'fc:CreateService' on resource 'acs:fc:...:services/*'.";
    alibaba/funcraft#243 matches on "the caller is not authorized to perform")."""
    return FcApiError(
        403, "AccessDenied", f"the caller is not authorized to perform '{action}' on resource '{resource}'."
    )
