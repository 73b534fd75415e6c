"""The call log behind ``GET /_localcloud/calls``: every API call the server answered."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class Call:
    product: str  # r-kvstore | dds | mns | fc
    action: str
    params: dict[str, Any]
    status: int
    code: str | None  # the error code, None on success
    at: float  # emulated clock, epoch seconds
    request_id: str
    access_key_id: str | None = None
    fault: str | None = None  # the injected fault, if any
    extra: dict[str, Any] = field(default_factory=dict)


class CallLog:
    """Append-only, thread-safe, filterable by any Call field given as a query parameter."""

    def __init__(self) -> None:
        self._calls: list[Call] = []
        self._lock = threading.Lock()

    def record(self, call: Call) -> None:
        with self._lock:
            self._calls.append(call)

    def query(self, filters: Mapping[str, str] | None = None) -> list[dict[str, Any]]:
        filters = dict(filters or {})
        since = float(filters.pop("since", "-inf"))
        instance = filters.pop("instance_id", None)
        with self._lock:
            calls = list(self._calls)
        out = []
        for c in calls:
            if c.at < since:
                continue
            d = asdict(c)
            if any(str(d.get(k)) != v for k, v in filters.items()):
                continue
            if instance and instance not in (c.params.get("InstanceId"), c.params.get("DBInstanceId")):
                continue
            out.append(d)
        return out

    def clear(self) -> None:
        with self._lock:
            self._calls.clear()
