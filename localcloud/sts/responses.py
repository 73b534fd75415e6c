"""STS's protocol side: AssumeRole's parameters into a ``StsBackend`` call, its result into a body.

The body keys are the official SDK model's (alibabacloud_sts20150401 ``AssumeRoleResponseBody``);
the gateway (openapi/responses.py) cuts them to the API metadata's response fields. The gateway has
already authenticated the caller and checked the parameters' presence and types against the
metadata; the RAM decision on ``sts:AssumeRole`` is the backend's, so it answers STS's own
NoPermission rather than the gateway's Forbidden.RAM.
"""

from __future__ import annotations

from typing import Any

from localcloud.openapi.errors import InvalidActionNotFound, require
from localcloud.openapi.handler import CallContext
from localcloud.sts.models import StsBackend


class StsResponse:
    product = "sts"
    actions = frozenset({"AssumeRole"})

    def __init__(self, cloud: Any) -> None:
        self.backend = StsBackend(cloud.accounts)

    def call(self, action: str, params: dict[str, str], ctx: CallContext) -> dict[str, Any]:
        if action != "AssumeRole":
            raise InvalidActionNotFound()
        caller = self.backend.accounts.lookup(ctx.access_key_id)
        assert caller is not None  # the gateway authenticated this key
        return self.backend.assume_role(
            caller,
            require(params, "RoleArn"),
            require(params, "RoleSessionName"),
            params.get("DurationSeconds"),
            params.get("Policy"),
        )
