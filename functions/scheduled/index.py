"""Timer function: off-peak upgrades of a configured list or a selected slice of the fleet.

Event (FC Timer trigger): ``{"triggerTime", "triggerName", "payload"}``; the payload format is in
``dbupgrade.triggers.timer``. Few targets run inline; more fan out, one async invocation (or topic
message) per target, to the rollout function. Replies with a JSON summary.
"""

from __future__ import annotations

import json
from typing import Any

from dbupgrade import startup

startup.pause_collector()  # for the imports and the first request: dbupgrade.startup says why

from dbupgrade.context import adapt_context  # noqa: E402
from dbupgrade.logging import logger  # noqa: E402
from dbupgrade.model import InvalidRequest  # noqa: E402
from dbupgrade.triggers import parse_timer_event  # noqa: E402
from dbupgrade.triggers.runs import outcome_summary, run_timer  # noqa: E402
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
    ctx = adapt_context(context)
    runner = upgrader()
    try:
        summary = run_timer(parse_timer_event(event), runner, ctx)
    except InvalidRequest as error:
        # A bad payload will be just as bad on a retry: report it (log + notification), don't raise.
        logger.error("timer payload rejected", extra={"field": error.field, "error": str(error)})
        outcome = runner.reject(error, None, source="timer", context=ctx, correlation_id=ctx.aws_request_id)
        summary = {"error": str(error), "field": error.field, "outcomes": [outcome_summary(outcome)]}
    return json.dumps(summary)
