"""Booked upgrades under control: list, reschedule or cancel an upgrade booked for the maintenance window.

An upgrade submitted with ``effective: maintenance_window`` is an O&M event of the product until its
window opens. Both products name the same three actions (API metadata, R-kvstore and Dds):

- ``DescribeActiveOperationTasks`` lists the events (``Id``, ``InsName``, ``Status`` - 3 pending,
  4 running, 5 succeeded, 6 failed, 7 cancelled (SDK models ``_describe_active_operation_tasks_
  response_body.py``) - ``SwitchTime``, ``Deadline``, ``AllowChange``, ``AllowCancel``);
- ``ModifyActiveOperationTasks`` moves one to ``SwitchTime``, which "cannot be later than the
  Deadline" (SDK ``_modify_active_operation_tasks_request.py``): a refusal is shown with the
  service's own code and message, and nothing is recorded;
- ``CancelActiveOperationTasks`` cancels it: the upgrade never runs.

Only upgrades dbupgrade follows (its in-flight outcome for the instance is a maintenance-window
booking) are changed here; other events are listed (``ours`` false) and left to the console. A change
is recorded and notified: ``upgrade.rescheduled`` (the followed upgrade now starts at ``switch_at``,
and the instance's claim lives until then) or ``upgrade.cancelled`` (the upgrade is over: the
tracker stops following it and the instance's claim is released; a multi-hop chain ends at that hop).

Example::

    booked = Booked(Upgrader.from_env())
    booked.bookings()                                            # [{"instance_id": ..., "switch_time": ...}]
    booked.reschedule("r-bp1abc", "2026-12-01T18:00:00Z")      # the recorded ``rescheduled`` outcome
    booked.cancel("r-bp1abc")                                  # the recorded ``cancelled`` outcome
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timezone
from typing import Any

from dbupgrade import clock
from dbupgrade.cloudapi import CloudError
from dbupgrade.config import REGION_PATTERN
from dbupgrade.context import InvocationContext, adapt_context
from dbupgrade.engines import (
    BOOKED_CANCEL_ACTION,
    BOOKED_LIST_ACTION,
    BOOKED_MODIFY_ACTION,
    ENGINES,
    Engine,
    engine_for_instance,
)
from dbupgrade.model import IN_FLIGHT_STATUSES, InvalidRequest, Outcome
from dbupgrade.store import ClaimChange, claim_seconds, keys
from dbupgrade.usecase import Upgrader

TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
PAGE_SIZE = 100  # DescribeActiveOperationTasks PageSize: 30, 50 or 100 (API metadata)
PENDING = 3
EVENT_STATES = {3: "pending", 4: "running", 5: "succeeded", 6: "failed", 7: "cancelled"}
LOCK_SECONDS = 60
LOCK_WAIT_SECONDS = 10


class BookingNotFound(LookupError):
    """No pending booked upgrade of the instance (or one dbupgrade does not follow)."""


class BookingRefused(Exception):
    """The service refused the change: its own code and message."""

    def __init__(self, code: str, message: str, request_id: str | None = None) -> None:
        self.code, self.message, self.request_id = code, message, request_id
        super().__init__(f"{code}: {message}")


def parse_switch_time(text: str) -> str:
    """``yyyy-MM-ddTHH:mm:ssZ`` (UTC), the format ModifyActiveOperationTasks takes (API metadata)."""
    try:
        moment = datetime.strptime(text.strip(), TIME_FORMAT)
    except ValueError:
        raise InvalidRequest("switch_time", "must look like 2026-12-01T18:00:00Z (UTC)") from None
    return moment.strftime(TIME_FORMAT)


class Booked:
    """The booked upgrades of the Upgrader's account, through its cloud clients and store."""

    def __init__(self, upgrader: Upgrader, context: Any = None) -> None:
        self.upgrader = upgrader
        self.context: InvocationContext = adapt_context(context)

    # -- list -----------------------------------------------------------------------------------

    def bookings(
        self, *, engine: str | None = None, region: str | None = None, instance_id: str | None = None
    ) -> list[dict[str, Any]]:
        """Every O&M event of the engine(s) in the region, joined with what dbupgrade follows."""
        if instance_id is not None:
            found = engine_for_instance(instance_id)
            if found is None or not found.id_pattern.match(instance_id):
                raise InvalidRequest("instance_id", "not a Redis (r-) or MongoDB (dds-) instance ID")
            engines = [found]
        elif engine is not None:
            if engine not in ENGINES:
                raise InvalidRequest("engine", "unknown engine; allowed", allowed=sorted(ENGINES))
            engines = [ENGINES[engine]]
        else:
            engines = list(ENGINES.values())
        where = self._region(region)
        rows = []
        for each in engines:
            for item in self._events(each, where, instance_id):
                rows.append(self._row(each, where, item))
        return rows

    # -- changes --------------------------------------------------------------------------------

    def reschedule(self, instance_id: str, switch_time: str, *, region: str | None = None) -> Outcome:
        """Move the instance's pending booked upgrade to ``switch_time``; the recorded outcome."""
        when = parse_switch_time(switch_time)
        with self._locked(instance_id):
            engine, followed, event, where = self._booking(instance_id, region)
            body = self._call(
                engine, where, BOOKED_MODIFY_ACTION, {"Ids": str(event["Id"]), "SwitchTime": when}
            )
            outcome = replace(
                followed,
                status="rescheduled",
                reason="rescheduled",
                code=None,
                switch_at=when,
                message=(
                    f"booked upgrade to {followed.hop_version} moved from {event.get('SwitchTime')} to {when} "
                    f"(deadline {event.get('Deadline')}; ModifyActiveOperationTasks {body.get('RequestId')})"
                ),
                at=clock.utcnow().strftime(TIME_FORMAT),
                upgrade=None,
                replay_of=None,
                duration_seconds=None,
            )
            claim = self._claim_until(engine, instance_id, when, followed.effective)
            recorded = self.upgrader.finish(outcome, self.context, follows=followed, claim=claim)
        return recorded or outcome

    def cancel(self, instance_id: str, *, region: str | None = None) -> Outcome:
        """Cancel the instance's pending booked upgrade: no switchover happens; the recorded outcome."""
        with self._locked(instance_id):
            engine, followed, event, where = self._booking(instance_id, region)
            body = self._call(engine, where, BOOKED_CANCEL_ACTION, {"Ids": str(event["Id"])})
            outcome = replace(
                followed,
                status="cancelled",
                reason="cancelled",
                code=None,
                message=(
                    f"booked upgrade to {followed.hop_version} (switch at {event.get('SwitchTime')}) cancelled: "
                    f"no switchover; the instance stays at {event.get('DbVersion') or followed.from_version} "
                    f"(CancelActiveOperationTasks {body.get('RequestId')})"
                ),
                at=clock.utcnow().strftime(TIME_FORMAT),
                upgrade=None,
                replay_of=None,
                duration_seconds=None,
                progress=None,
                remaining_seconds=None,
                current_step=None,
                task_status=None,
                progress_at=None,
            )
            # A final verdict on the followed upgrade: the tracker stops, the claim is released.
            recorded = self.upgrader.finish(outcome, self.context, follows=followed)
            if recorded is not None:
                self.upgrader.store.drop_chain(instance_id)
        return recorded or outcome

    # -- steps ----------------------------------------------------------------------------------

    def _region(self, region: str | None) -> str:
        where = region or self.upgrader.config.region or self.context.region
        if not where:
            raise InvalidRequest("region", "no region: give one, set DBUPGRADE_REGION or run in FC")
        if not REGION_PATTERN.match(where):
            raise InvalidRequest("region", f"expected a region ID like cn-hangzhou, got {where[:64]!r}")
        return where

    def _booking(self, instance_id: str, region: str | None) -> tuple[Engine, Outcome, dict[str, Any], str]:
        engine = engine_for_instance(instance_id)
        if engine is None or not engine.id_pattern.match(instance_id):
            raise InvalidRequest("instance_id", "not a Redis (r-) or MongoDB (dds-) instance ID")
        followed = self.upgrader.store.following(instance_id)
        if (
            followed is None
            or followed.status not in IN_FLIGHT_STATUSES
            or followed.effective != "maintenance_window"
        ):
            raise BookingNotFound(
                f"dbupgrade follows no upgrade of {instance_id} booked for the maintenance window"
            )
        where = self._region(region or followed.region)
        pending = [e for e in self._events(engine, where, instance_id) if _status(e) == PENDING]
        if not pending:
            raise BookingNotFound(
                f"{instance_id} has no pending booked upgrade ({BOOKED_LIST_ACTION} lists none): "
                "it has started, ended or was cancelled"
            )
        return engine, followed, pending[0], where

    def _events(self, engine: Engine, region: str, instance_id: str | None) -> list[dict[str, Any]]:
        params = {"Region": region, "PageSize": str(PAGE_SIZE)}
        if instance_id is not None:
            params["InsName"] = instance_id
        items: list[dict[str, Any]] = []
        page = 1
        while True:
            body = self._call(engine, region, BOOKED_LIST_ACTION, {**params, "PageNumber": str(page)})
            batch = [i for i in body.get("Items") or [] if isinstance(i, dict)]
            items.extend(batch)
            total = int(body.get("TotalRecordCount") or 0)
            if not batch or len(items) >= total or len(batch) < PAGE_SIZE:
                break
            page += 1
        if instance_id is not None:
            items = [i for i in items if i.get("InsName") == instance_id]
        return items

    def _row(self, engine: Engine, region: str, item: dict[str, Any]) -> dict[str, Any]:
        instance = str(item.get("InsName"))
        followed = self.upgrader.store.following(instance) if engine.id_pattern.match(instance) else None
        ours = followed is not None and followed.effective == "maintenance_window"
        status = _status(item)
        return {
            "instance_id": instance,
            "engine": engine.name,
            "region": item.get("Region") or region,
            "event_id": item.get("Id"),
            "state": EVENT_STATES.get(status or 0, str(status)),
            "switch_time": item.get("SwitchTime"),
            "deadline": item.get("Deadline"),
            "allow_change": str(item.get("AllowChange")) == "1",
            "allow_cancel": str(item.get("AllowCancel")) == "1",
            "from_version": item.get("DbVersion"),
            "to_version": followed.hop_version if ours and followed else None,
            "task_type": item.get("TaskType"),
            "ours": ours,
            "ticket_id": followed.ticket_id if ours and followed else None,
            "rollout_id": followed.rollout_id if ours and followed else None,
            "hop": followed.hop if ours and followed else None,
            "hops": followed.hops if ours and followed else None,
        }

    def _call(self, engine: Engine, region: str, action: str, params: dict[str, str]) -> dict[str, Any]:
        try:
            return self.upgrader.cloud.call_with_retries(
                engine,
                region,
                action,
                params,
                self.upgrader.cloud.credentials(self.context.credentials),
                deadline=self.context.deadline,
            )
        except CloudError as error:
            if action == BOOKED_LIST_ACTION:
                raise
            raise BookingRefused(error.code, error.message, error.request_id) from None

    def _claim_until(
        self, engine: Engine, instance_id: str, switch_time: str, effective: str | None
    ) -> ClaimChange | None:
        """The instance's claim, kept until the moved booking has run (plus the usual margin)."""
        held = self.upgrader.store.claim_of(instance_id)
        if held is None:
            return None
        starts = datetime.strptime(switch_time, TIME_FORMAT).replace(tzinfo=timezone.utc).timestamp()
        wait = max(0.0, starts - clock.now())
        seconds = int(wait) + claim_seconds(engine.stuck_after_seconds, effective)
        return ClaimChange("accept", held.owner, held, seconds)

    def _locked(self, instance_id: str) -> Any:
        """One change of the instance's booking at a time. A tracker tick needs no lock here: its
        write is compare-and-set against the followed outcome, so it never overwrites the change."""
        return self.upgrader.store.lock(
            keys.booked_lock(instance_id), LOCK_SECONDS, wait_seconds=LOCK_WAIT_SECONDS
        )


def _status(item: dict[str, Any]) -> int | None:
    try:
        return int(item.get("Status"))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
