"""Timer function (every minute): what became of every submitted upgrade, told once.

Event (FC Timer trigger): ``{"triggerTime", "triggerName", "payload"}``; the payload is unused.
Each tick delivers the notification outbox, records and notifies ``completed`` / ``failed`` /
``stuck`` / ``scheduled`` transitions (``dbupgrade.tracker``) and advances every active rollout.
Replies with a JSON summary.
"""

from __future__ import annotations

import json
from typing import Any

from dbupgrade import startup

startup.pause_collector()  # for the imports and the first request: dbupgrade.startup says why

from dbupgrade.context import adapt_context  # noqa: E402
from dbupgrade.tracker import Tracker, tick_time  # noqa: E402
from dbupgrade.usecase import Upgrader  # noqa: E402

_tracker: Tracker | None = None


def tracker() -> Tracker:
    """One Tracker per function instance: config validated and clients reused while warm."""
    global _tracker
    if _tracker is None:
        _tracker = Tracker(Upgrader.from_env())
    return _tracker


@startup.collector_back_after_first_call
def handler(event: bytes, context: Any) -> str:
    return json.dumps(tracker().tick(adapt_context(context), now=tick_time(event)))
