"""Task progress of the upgrades the tracker follows, read from DescribeHistoryTasks.

Both products answer DescribeHistoryTasks with each task's ``Status``, ``Progress`` (percent),
``RemainTime`` (seconds) and ``CurrentStepName`` (API metadata; SDK models
``_describe_history_tasks_response_body.py``). One call covers up to ``IDS_PER_CALL`` instances of an
engine in a region ("InstanceId: several IDs separated by commas, at most 30", API metadata, both
products) and a start-time range (``FromStartTime`` / ``ToStartTime``, required; "at most 30 days
back", same metadata), paged at ``PAGE_SIZE`` (the metadata's maximum).

What is read is shown, never decided on: completion is the version read back (``dbupgrade.tracker``).
A failed read is logged and the tick goes on without progress. A member account's upgrades are read
per account, with the credentials of the member's role (``Upgrader.credentials_for``): its tasks are
only visible in its own account.

Example::

    tasks = read(upgrader, followed, ctx, now)   # {"dds-bp1x": {"progress": 42.0, "remaining_seconds": 300, ...}}
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from dbupgrade.clock import API_TIME_FORMAT, parse_api_time
from dbupgrade.cloudapi import CloudError
from dbupgrade.context import InvocationContext
from dbupgrade.engines import ENGINES, HISTORY_ACTION
from dbupgrade.logging import logger
from dbupgrade.model import Outcome

if TYPE_CHECKING:
    from dbupgrade.usecase import Upgrader

IDS_PER_CALL = 30
PAGE_SIZE = 100
MAX_LOOKBACK = timedelta(days=30)
# A followed outcome is written a little after its task started (the call's round trip, a
# reconciled or in_progress outcome written later): tasks started this much earlier still count.
START_SLACK = timedelta(minutes=10)
# assumption: how far ahead a booked upgrade's task may start: a rescheduled booking up to its
# Deadline. No source states the Deadline's distance; localcloud's BOOKING_DEADLINE_SECONDS is a week.
BOOKING_HORIZON = timedelta(days=8)
TIME_FORMAT = API_TIME_FORMAT


def _parse(text: Any) -> datetime | None:
    """A task's ``StartTime`` (``TIME_FORMAT``), or None."""
    return parse_api_time(str(text))


def _since(outcome: Outcome) -> datetime:
    return datetime.fromisoformat(outcome.at.replace("Z", "+00:00")) - START_SLACK


def fields_of(item: dict[str, Any], now: datetime | str) -> dict[str, Any]:
    """What the followed outcome keeps of one DescribeHistoryTasks item (``now``: the read's time,
    or its text in ``TIME_FORMAT``, formatted once for a read's items)."""
    try:
        percent: float | None = round(float(item.get("Progress")), 1)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        percent = None
    try:
        remaining: int | None = int(item.get("RemainTime"))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        remaining = None
    return {
        "progress": percent,
        "remaining_seconds": remaining,
        "current_step": str(item.get("CurrentStepName") or "") or None,
        "task_status": str(item.get("Status") or "") or None,
        "progress_at": now if isinstance(now, str) else now.strftime(TIME_FORMAT),
    }


def read(
    upgrader: Upgrader, followed: Sequence[Outcome], ctx: InvocationContext, now: datetime
) -> dict[str, dict[str, Any]]:
    """Instance id -> the progress fields of its newest task started since its followed outcome."""
    groups: dict[tuple[str, str, str], list[Outcome]] = defaultdict(list)
    for outcome in followed:
        region = outcome.region or upgrader.config.region or ctx.region
        if outcome.engine in ENGINES and region:
            groups[(str(outcome.engine), str(region), outcome.account_id or "")].append(outcome)
    found: dict[str, dict[str, Any]] = {}
    read_at = now.strftime(TIME_FORMAT)
    for (name, region, account), outcomes in groups.items():
        engine = ENGINES[name]
        try:
            # A member account's tasks are its own: read through its role (dbupgrade.accounts).
            credentials = upgrader.credentials_for(account or None, ctx, region, outcomes[0].rollout_id)
        except CloudError as error:
            logger.warning(
                "task progress not read: no credentials for the account; the next tick tries again",
                extra={"account_id": account, "code": error.code},
            )
            continue
        for start in range(0, len(outcomes), IDS_PER_CALL):
            batch = outcomes[start : start + IDS_PER_CALL]
            since = {o.instance_id: _since(o) for o in batch}
            lowest = max(min(since.values()), now - MAX_LOOKBACK)
            params = {
                "InstanceId": ",".join(sorted(since)),
                "FromStartTime": lowest.strftime(TIME_FORMAT),
                "ToStartTime": (now + BOOKING_HORIZON).strftime(TIME_FORMAT),
                "PageSize": str(PAGE_SIZE),
            }
            try:
                items = _pages(upgrader, engine, region, params, credentials, ctx)
            except CloudError as error:
                logger.warning(
                    "task progress not read; the next tick tries again",
                    extra={"code": error.code, "error": error.explain()},
                )
                continue
            newest: dict[str, tuple[datetime, dict[str, Any]]] = {}
            for item in items:
                instance, started = str(item.get("InstanceId")), _parse(item.get("StartTime"))
                if instance not in since or started is None or started < since[instance]:
                    continue
                if instance not in newest or started > newest[instance][0]:
                    newest[instance] = (started, item)
            found.update({i: fields_of(item, read_at) for i, (_, item) in newest.items()})
    return found


def _pages(
    upgrader: Upgrader,
    engine: Any,
    region: str,
    params: dict[str, str],
    credentials: Any,
    ctx: InvocationContext,
) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    page = 1
    while True:
        body = upgrader.cloud.call_with_retries(
            engine,
            region,
            HISTORY_ACTION,
            {**params, "PageNumber": str(page)},
            credentials,
            deadline=ctx.deadline,
        )
        batch = [i for i in body.get("Items") or [] if isinstance(i, dict)]
        items.extend(batch)
        if not batch or len(items) >= int(body.get("TotalCount") or 0) or len(batch) < PAGE_SIZE:
            return items
        page += 1
