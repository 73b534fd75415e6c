"""The call log behind ``GET /_localcloud/calls``: every API call the server answered.

``GET /_localcloud/calls?in_flight=1`` lists instead the OpenAPI RPC calls (R-kvstore, Dds, STS,
Resource Manager) received and not yet answered, with the same filters, so a test can act while a
call it slowed with a ``latency_ms`` fault is being served. An in-flight entry has the fields of a
``Call`` known on arrival (``product``, ``action``, ``params``, ``at``, ``request_id``,
``access_key_id``); the answered calls' format is unchanged.

``GET /_localcloud/calls?count=1`` answers, with the same filters, how many calls each
(product, action) made instead of the calls themselves: a benchmark that meters a step of tens of
thousands of calls reads a few lines, not megabytes built on the server's event loop while the
functions it measures are still calling it.

All of this is test instrumentation of the emulator, not a cloud rule: no cloud behaviour to source.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator, Mapping
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


@dataclass
class InFlight:
    """A call received and not yet answered (see the module docstring)."""

    product: str
    action: str
    params: dict[str, Any]
    at: float  # emulated clock when received, epoch seconds
    request_id: str
    access_key_id: str | None = None


class CallLog:
    """Append-only, thread-safe, filterable by any Call field given as a query parameter."""

    def __init__(self) -> None:
        self._calls: list[Call] = []
        self._in_flight: dict[str, InFlight] = {}  # by request_id
        self._lock = threading.Lock()

    def record(self, call: Call) -> None:
        with self._lock:
            self._calls.append(call)

    def received(self, call: InFlight) -> None:
        with self._lock:
            self._in_flight[call.request_id] = call

    def served(self, request_id: str) -> None:
        """The call is over (answered, refused or hung up): no longer in flight."""
        with self._lock:
            self._in_flight.pop(request_id, None)

    def query(self, filters: Mapping[str, str] | None = None) -> list[dict[str, Any]]:
        return [asdict(c) for c in self._matching(filters)]

    def counts(self, filters: Mapping[str, str] | None = None) -> list[dict[str, Any]]:
        """How many of the calls ``query(filters)`` lists each (product, action) made."""
        made = Counter((c.product, c.action) for c in self._matching(filters))
        return [{"product": p, "action": a, "calls": n} for (p, a), n in sorted(made.items())]

    def _matching(self, filters: Mapping[str, str] | None) -> Iterator[Call | InFlight]:
        filters = dict(filters or {})
        filters.pop("count", None)  # the answer's form, not a filter
        since = float(filters.pop("since", "-inf"))
        instance = filters.pop("instance_id", None)
        in_flight = filters.pop("in_flight", "0") not in ("0", "false", "")
        with self._lock:
            calls: list[Call] | list[InFlight] = (
                list(self._in_flight.values()) if in_flight else list(self._calls)
            )
        for c in calls:
            if c.at < since:
                continue
            if any(str(getattr(c, k, None)) != v for k, v in filters.items()):
                continue
            if instance and instance not in (c.params.get("InstanceId"), c.params.get("DBInstanceId")):
                continue
            yield c

    def clear(self) -> None:
        with self._lock:
            self._calls.clear()
