"""The contract between the OpenAPI gateway (openapi/responses.py) and a product's responses.

A product's ``urls.py`` names its API version, its hosts and its ``response_class``; the gateway
makes one handler per localcloud from it (``response_class(cloud)``) and hands it each call.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True)
class CallContext:
    account_id: str  # the account of the credential that signed the call: it sees only its own resources
    access_key_id: str
    request_id: str
    region_id: str | None  # RegionId parameter if sent, else derived from the Host header, else None
    host: str


class ActionHandler(Protocol):
    product: str  # "r-kvstore" | "dds": the name used in calls, faults and Recommend links
    actions: frozenset[str]  # the actions it answers; others are InvalidAction.NotFound before any fault

    def call(self, action: str, params: dict[str, str], ctx: CallContext) -> dict[str, Any]:
        """Answer one action; return the body without RequestId; raise OpenApiError to refuse."""
        ...
