"""The payload the scheduler sends the rollout function, one per target (FC async invocation).

It carries its own ``delivery_id`` (rollout id + instance), so an async retry or a re-fired timer
lands on the same idempotency key and never submits a second upgrade.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

FANOUT_KIND = "dbupgrade.rollout/v1"


def fanout_payload(
    upgrade: Mapping[str, Any], *, rollout_id: str | None, delivery_id: str, requeued: int = 0
) -> bytes:
    """The bytes of one async invocation of the rollout function (or one rollout topic message).

    ``requeued`` counts how often the rollout function has put this message back (a transient
    failure or an in-flight twin in a batch): it bounds that loop.

    >>> import json
    >>> body = fanout_payload({"instance_id": "r-bp1x"}, rollout_id="nightly", delivery_id="nightly:r-bp1x")
    >>> json.loads(body)["upgrade"]
    {'instance_id': 'r-bp1x', 'rollout_id': 'nightly'}
    """
    body: dict[str, Any] = {
        "kind": FANOUT_KIND,
        "rollout_id": rollout_id,
        "delivery_id": delivery_id,
        "upgrade": {**upgrade, "rollout_id": rollout_id} if rollout_id is not None else dict(upgrade),
    }
    if requeued:
        body["requeued"] = requeued
    return json.dumps(body).encode()
