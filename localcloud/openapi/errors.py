"""OpenAPI errors: exception classes that render the gateway's own JSON error body.

Body: ``{"RequestId", "HostId", "Code", "Message", "Recommend"}``; product backends raise these
from ``call`` and the protocol layer renders them with the right status.
"""

from __future__ import annotations


class OpenApiError(Exception):
    status = 400
    code = "InternalError"

    def __init__(self, message: str, *, code: str | None = None, status: int | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status
        self.headers = headers or {}
