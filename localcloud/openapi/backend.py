"""The contract between the OpenAPI protocol layer and a product model (R-kvstore, Dds)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True)
class CallContext:
    account_id: str
    access_key_id: str
    request_id: str
    region_id: str | None  # RegionId parameter if sent, else derived from the Host header, else None
    host: str


class OpenApiBackend(Protocol):
    product: str  # "r-kvstore" | "dds": the name used in calls, faults and Recommend links
    version: str  # "2015-01-01" | "2015-12-01": how requests are routed to it
    actions: frozenset[str]  # the actions it answers; others are InvalidAction.NotFound before any fault

    def call(self, action: str, params: dict[str, str], ctx: CallContext) -> dict[str, Any]:
        """Answer one action; return the body without RequestId; raise OpenApiError to refuse."""
        ...

    def snapshot(self) -> dict[str, Any]: ...

    def restore(self, state: dict[str, Any]) -> None: ...
