"""What the timer and rollout functions do with a parsed event: the loops around ``Upgrader``.

Kept in the layer (not in ``functions/``) so the handlers stay a few lines of decode-call-reply.

- ``run_timer``: resolve the plan's targets (explicit list and/or fleet selector), validate each,
  run them inline when few, else fan out one message per target to the rollout function.
- ``run_rollout``: one outcome per message; a bad message is rejected alone; a down store raises
  ``StoreUnavailable`` so the platform redelivers the whole delivery (already-done messages are
  idempotent by their delivery id).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import Any

from dbupgrade.cloudapi import CloudError
from dbupgrade.config import Window
from dbupgrade.context import InvocationContext
from dbupgrade.engines import ENGINES, engine_for_instance
from dbupgrade.logging import logger
from dbupgrade.model import InvalidRequest, Outcome, UpgradeRequest
from dbupgrade.request import FIELDS, parse_request
from dbupgrade.triggers import dispatch
from dbupgrade.triggers.fanout import fanout_payload
from dbupgrade.triggers.queue import QueueMessage
from dbupgrade.triggers.timer import TimerPlan
from dbupgrade.usecase import Upgrader


class FanOutIncomplete(RuntimeError):
    """Some fan-out messages were not sent: fail the timer invocation so FC retries it.

    A retry re-sends every target under the same delivery ids, so the ones already sent stay
    idempotent in the rollout function.
    """


class MessageInFlight(RuntimeError):
    """A message's lock is held by another invocation, or by one that died with the outcome
    unrecorded (the store went down mid-request): fail so MNS redelivers after the lock expires."""


def outcome_summary(outcome: Outcome) -> dict[str, Any]:
    return {
        "instance_id": outcome.instance_id,
        "engine": outcome.engine,
        "from_version": outcome.from_version,
        "to_version": outcome.to_version,
        "status": outcome.status,
        "request_id": outcome.request_id,
        "reason": outcome.reason,
        "field": outcome.field,
        "message": outcome.message,
    }


def run_timer(plan: TimerPlan, upgrader: Upgrader, context: InvocationContext) -> dict[str, Any]:
    """Run or fan out a timer's plan; returns the invocation's JSON summary."""
    runner = _with_window(upgrader, plan.window)
    correlation_id = context.aws_request_id
    try:
        selected = _selected_targets(plan, upgrader, context)
    except CloudError as error:
        if not error.configuration:
            raise  # transient or unknown: the invocation fails and FC retries it
        # A wrong key or a missing permission fails every retry alike: one line, no retry.
        line = error.explain()
        logger.error(
            "timer selection failed: fix the configuration", extra={"code": error.code, "error": line}
        )
        return {
            "trigger": plan.trigger_name,
            "rollout_id": plan.rollout_id,
            "error": line,
            "code": error.code,
        }
    targets = _explicit_targets(plan) + selected
    requests: list[UpgradeRequest] = []
    outcomes: list[Outcome] = []
    for data in targets:
        instance_id = data.get("instance_id")
        delivery_id = f"{plan.rollout_id}:{instance_id}"
        try:
            requests.append(
                parse_request(
                    data,
                    source="timer",
                    correlation_id=correlation_id,
                    delivery_id=delivery_id,
                    defaults=plan.defaults(),
                )
            )
        except InvalidRequest as error:
            outcomes.append(
                upgrader.reject(error, data, source="timer", context=context, correlation_id=correlation_id)
            )
    summary: dict[str, Any] = {
        "trigger": plan.trigger_name,
        "rollout_id": plan.rollout_id,
        "targets": len(targets),
    }
    if len(requests) <= plan.inline_limit:
        summary["mode"] = "inline"
        outcomes.extend(runner.run(request, context) for request in requests)
    else:
        summary["mode"] = plan.fanout
        sent = _fan_out(plan, upgrader, context, requests)
        summary["dispatched"] = [
            {"instance_id": d.instance_id, "delivery_id": d.delivery_id, "id": d.id} for d in sent
        ]
    summary["counts"] = dict(Counter(outcome.status for outcome in outcomes))
    summary["outcomes"] = [outcome_summary(outcome) for outcome in outcomes]
    logger.info("timer done", extra={"summary": {k: v for k, v in summary.items() if k != "outcomes"}})
    return summary


def run_rollout(
    messages: Iterable[QueueMessage], upgrader: Upgrader, context: InvocationContext
) -> dict[str, Any]:
    """One outcome per message; returns the invocation's JSON summary."""
    results = []
    for message in messages:
        outcome = _run_message(message, upgrader, context)
        results.append({"message_id": message.message_id, **outcome_summary(outcome)})
    summary = {
        "messages": len(results),
        "counts": dict(Counter(result["status"] for result in results)),
        "outcomes": results,
    }
    logger.info("rollout done", extra={"counts": summary["counts"], "messages": len(results)})
    return summary


def _run_message(message: QueueMessage, upgrader: Upgrader, context: InvocationContext) -> Outcome:
    if message.error is not None or message.data is None:
        error = message.error or InvalidRequest("message", "has no body")
        logger.warning("rejected message", extra={"message_id": message.message_id, "error": str(error)})
        return upgrader.reject(
            error, message.data, source="queue", context=context, correlation_id=message.message_id
        )
    try:
        request = parse_request(
            message.data, source="queue", correlation_id=message.message_id, delivery_id=message.message_id
        )
    except InvalidRequest as error:
        return upgrader.reject(
            error, message.data, source="queue", context=context, correlation_id=message.message_id
        )
    outcome = upgrader.run(request, context, stop=_rollout_stop(upgrader, request.rollout_id))
    if outcome.reason == "duplicate_in_flight":
        raise MessageInFlight(f"message {message.message_id} is in flight; redeliver later")
    return outcome


def _rollout_stop(upgrader: Upgrader, rollout_id: str | None) -> Callable[[], tuple[str, str] | None] | None:
    """A message of a rollout that was halted or cancelled after releasing it must not upgrade."""
    if rollout_id is None or upgrader.store.redis is None:
        return None
    from dbupgrade.rollouts.state import RolloutRepository  # only rollout messages pay for it

    repository = RolloutRepository(upgrader.store)
    return lambda: repository.stopped(rollout_id)


def _explicit_targets(plan: TimerPlan) -> list[dict[str, Any]]:
    targets = []
    for entry in plan.upgrades:
        data = dict(entry)
        if data.get("target_version") is None:
            instance_id = data.get("instance_id")
            engine = data.get("engine")
            if engine is None and isinstance(instance_id, str):
                found = engine_for_instance(instance_id)
                engine = found.name if found else None
            target = plan.target_for(engine if isinstance(engine, str) else None)
            if target is not None:
                data["target_version"] = target
        targets.append(data)
    return targets


def _selected_targets(
    plan: TimerPlan, upgrader: Upgrader, context: InvocationContext
) -> list[dict[str, Any]]:
    """The fleet slice the selector names; a list-API failure propagates (never act on half a fleet)."""
    if plan.select is None:
        return []
    if plan.select.engine is not None:
        engines = [plan.select.engine]
    elif plan.targets_by_engine:
        engines = sorted(plan.targets_by_engine)
    else:
        engines = sorted(ENGINES)
    targets: list[dict[str, Any]] = []
    for engine in engines:
        target = plan.target_for(engine)
        if target is None:
            continue
        selector = {**plan.select.to_dict(), "engine": engine}
        try:
            found = upgrader.select(selector, context)
        except InvalidRequest as error:
            raise InvalidRequest(f"payload.select.{error.field}", error.reason, error.allowed) from None
        targets.extend(
            {
                "instance_id": item["instance_id"],
                "engine": engine,
                "region": item["region"],
                "target_version": target,
            }
            for item in found
        )
    return targets


def _with_window(upgrader: Upgrader, window: str | None) -> Upgrader:
    """The payload's window overrides DBUPGRADE_WINDOW for this timer; the core's guard applies it."""
    if window is None:
        return upgrader
    config = replace(upgrader.config, window=Window.parse(window, "payload.window"))
    return Upgrader(config, upgrader.store, cloud=upgrader.cloud, notifier=upgrader.notifier)


def _fan_out(
    plan: TimerPlan, upgrader: Upgrader, context: InvocationContext, requests: list[UpgradeRequest]
) -> list[dispatch.Dispatch]:
    credentials = upgrader.cloud.credentials(context.credentials)
    if credentials is None:
        raise FanOutIncomplete(
            "no credentials to fan out: neither the FC context nor ALIBABA_CLOUD_ACCESS_KEY_*"
        )
    payloads = []
    for request in requests:
        fields = {
            name: getattr(request, name) for name in FIELDS if getattr(request, name) not in (None, False)
        }
        delivery_id = str(request.delivery_id)
        payloads.append(
            (
                delivery_id,
                request.instance_id,
                fanout_payload(fields, rollout_id=plan.rollout_id, delivery_id=delivery_id),
            )
        )
    if plan.fanout == "topic":
        results = dispatch.send_to_topic(
            payloads,
            config=upgrader.config,
            context=context,
            credentials=credentials,
            mns_endpoint=upgrader.notifier.endpoint(context),
        )
    else:
        results = dispatch.send_to_function(
            payloads, config=upgrader.config, context=context, credentials=credentials
        )
    failed = [result for result in results if not result.sent]
    if failed:
        raise FanOutIncomplete(
            f"{len(failed)} of {len(results)} fan-out messages not sent (first: {failed[0].instance_id}: "
            f"{failed[0].error}); the retry re-sends them all under the same delivery ids"
        )
    logger.info(
        "fanned out", extra={"mode": plan.fanout, "sent": len(results), "rollout_id": plan.rollout_id}
    )
    return results
