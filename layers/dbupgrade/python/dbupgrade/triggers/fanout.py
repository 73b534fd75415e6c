"""The payload the scheduler sends the rollout function, one per target (FC async invocation).

It carries its own ``delivery_id`` (rollout id + instance), so an async retry or a re-fired timer
lands on the same idempotency key and never submits a second upgrade.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

FANOUT_KIND = "dbupgrade.rollout/v1"


def fanout_payload(upgrade: Mapping[str, Any], *, rollout_id: str, delivery_id: str) -> bytes:
    """The bytes of one async invocation of the rollout function.

    >>> import json
    >>> body = fanout_payload({"instance_id": "r-bp1x"}, rollout_id="nightly", delivery_id="nightly:r-bp1x")
    >>> json.loads(body)["upgrade"]
    {'instance_id': 'r-bp1x', 'rollout_id': 'nightly'}
    """
    body = {
        "kind": FANOUT_KIND,
        "rollout_id": rollout_id,
        "delivery_id": delivery_id,
        "upgrade": {**upgrade, "rollout_id": rollout_id},
    }
    return json.dumps(body).encode()
