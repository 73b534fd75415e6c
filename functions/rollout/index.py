"""Rollout function: one upgrade per message, from the rollout topic, an EventBridge MNS-queue
trigger or the scheduler's async fan-out (shapes in ``dbupgrade.triggers.queue``).

Every message of a batch runs; a bad one gets its own rejected outcome and never fails its
neighbours. The reply lists per-message failures as ``batchItemFailures`` (in flight elsewhere,
failed transiently, or left when the invocation's time ran short); those come back: put back on the
rollout topic, or the invocation fails (``RedeliveryNeeded``) so FC / MNS / EventBridge redeliver.
When the store is down the invocation fails (``StoreUnavailable``) before any upgrade call; message
ids key idempotency, so a redelivered message is never submitted twice.
"""

from __future__ import annotations

import json
from typing import Any

from dbupgrade import startup

startup.pause_collector()  # for the imports and the first request: dbupgrade.startup says why

from dbupgrade.context import adapt_context  # noqa: E402
from dbupgrade.triggers import parse_rollout_event  # noqa: E402
from dbupgrade.triggers.runs import run_rollout  # noqa: E402
from dbupgrade.usecase import Upgrader  # noqa: E402

_upgrader: Upgrader | None = None


def upgrader() -> Upgrader:
    """One Upgrader per function instance: config validated and clients reused while warm."""
    global _upgrader
    if _upgrader is None:
        _upgrader = Upgrader.from_env()
    return _upgrader


@startup.collector_back_after_first_call
def handler(event: bytes, context: Any) -> str:
    return json.dumps(run_rollout(parse_rollout_event(event), upgrader(), adapt_context(context)))
