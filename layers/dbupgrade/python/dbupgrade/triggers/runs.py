"""What the timer and rollout functions do with a parsed event: the loops around ``Upgrader``.

Kept in the layer (not in ``functions/``) so the handlers stay a few lines of decode-call-reply.

- ``run_timer``: resolve the plan's targets (explicit list and/or fleet selector), validate each,
  run them inline when few, else fan out one message per target to the rollout function.
- ``run_rollout``: every message of a delivery, one outcome each; a bad message is rejected alone; a
  down store raises ``StoreUnavailable`` so the platform redelivers the whole delivery (already-done
  messages are idempotent by their delivery id). Per-message failures are reported the way
  Powertools' batch processor does (``batchItemFailures``) and made to come back (see
  ``run_rollout``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
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


class RedeliveryNeeded(RuntimeError):
    """Messages of this delivery must come back and could not be put back on the rollout topic: the
    invocation fails so the platform redelivers (MNS push retry, EventBridge retry, FC async retry).
    The messages that are done answer again from idempotency, under the same message ids."""


# A message after the first is started only with this much of the invocation left: one upgrade's
# calls and retries fit in it, so FC never kills a message half-way (its lock would hold until the
# deadline). The messages left are put back for later (#12.9). The first always runs: the platform
# invoked the function for it, and its cloud calls and retries stop before the deadline themselves.
MESSAGE_RESERVE_SECONDS = 30
# How often a batch message is put back on the rollout topic before its delivery is failed instead
# (the platform's redelivery backs off; a re-publish comes back at once).
MAX_REQUEUES = 3
# Outcomes that say "not now" rather than anything about the request: the message comes back.
TRANSIENT_REASONS = frozenset({"retries_exhausted", "instance_busy"})


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
        selected, locations = _selected_targets(plan, upgrader, context)
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
    if locations:
        # Per location (account x region) what the selector found, or why it could not look.
        summary["locations"] = locations
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
    messages: Sequence[QueueMessage], upgrader: Upgrader, context: InvocationContext
) -> dict[str, Any]:
    """Every message of the delivery, one outcome each; returns the invocation's JSON summary.

    One message never stops its neighbours. A message found in flight (another invocation holds it),
    one that failed transiently (throttling, 5xx, network, a busy instance) and those left when the
    invocation's time ran short are the delivery's failures, listed as Powertools' batch processor
    lists them (``batchItemFailures``). No Function Compute trigger understands a partial reply, so
    they are made to come back here: a delivery of one message fails (``RedeliveryNeeded``) and the
    platform redelivers it; in a batch, each is put back on the rollout topic under its own delivery
    id (idempotency stays keyed on it) so its done neighbours are not run again. A transient failure
    of a message released by a rollout comes back through the rollout instead (it releases the target
    again on the tracker's next round), so the two never run side by side.
    """
    results: list[dict[str, Any]] = []
    failures: list[tuple[QueueMessage, str]] = []
    for index, message in enumerate(messages):
        if index and context.remaining_seconds() < MESSAGE_RESERVE_SECONDS:
            failures.extend((left, "deadline") for left in messages[index:])
            logger.warning("batch out of time", extra={"left": len(messages) - index})
            break
        outcome = _run_message(message, upgrader, context)
        results.append({"message_id": message.message_id, **outcome_summary(outcome)})
        reason = _comes_back(message, outcome, upgrader)
        if reason is not None:
            failures.append((message, reason))
    summary: dict[str, Any] = {
        "messages": len(messages),
        "counts": dict(Counter(result["status"] for result in results)),
        "outcomes": results,
        "batchItemFailures": [
            {"itemIdentifier": message.message_id, "reason": reason} for message, reason in failures
        ],
    }
    logger.info(
        "rollout done",
        extra={"counts": summary["counts"], "messages": len(messages), "failures": len(failures)},
    )
    if failures:
        summary["requeued"] = _put_back(messages, failures, upgrader, context)
    return summary


def _comes_back(message: QueueMessage, outcome: Outcome, upgrader: Upgrader) -> str | None:
    """Why the message must be run again later, or None when its outcome is its last word."""
    if outcome.reason == "duplicate_in_flight":
        return "in_flight"
    if outcome.status != "failed" or outcome.reason not in TRANSIENT_REASONS:
        return None
    if message.rollout_id is not None and upgrader.store.redis is not None:
        from dbupgrade.rollouts.state import RolloutRepository  # only rollout messages pay for it

        if RolloutRepository(upgrader.store).spec(message.rollout_id) is not None:
            return None  # the rollout releases it again on its next round
    return "transient"


def _put_back(
    messages: Sequence[QueueMessage],
    failures: list[tuple[QueueMessage, str]],
    upgrader: Upgrader,
    context: InvocationContext,
) -> list[str]:
    """Put the failed messages of a batch back on the rollout topic; the delivery fails (and the
    platform redelivers it) when they cannot all be put back. Returns the ids put back."""
    ids = ", ".join(str(message.message_id) for message, _ in failures)
    if len(messages) == 1:
        raise RedeliveryNeeded(f"message {ids} must come back ({failures[0][1]}); redeliver it")
    credentials = upgrader.cloud.credentials(context.credentials)
    unsendable = [
        message
        for message, _ in failures
        if message.data is None or message.message_id is None or message.requeued >= MAX_REQUEUES
    ]
    if unsendable or credentials is None or not upgrader.config.rollout_queue:
        raise RedeliveryNeeded(
            f"{len(failures)} of {len(messages)} messages must come back ({ids}) and cannot be put back "
            "on DBUPGRADE_ROLLOUT_QUEUE; redeliver the delivery"
        )
    payloads = [
        (
            str(message.message_id),
            str(message.data.get("instance_id")) if message.data else "",
            fanout_payload(
                message.data or {},
                rollout_id=message.rollout_id,
                delivery_id=str(message.message_id),
                requeued=message.requeued + 1,
            ),
        )
        for message, _ in failures
    ]
    sent = dispatch.send_to_topic(
        payloads,
        config=upgrader.config,
        context=context,
        credentials=credentials,
        mns_endpoint=upgrader.notifier.endpoint(context),
    )
    unsent = [result for result in sent if not result.sent]
    if unsent:
        raise RedeliveryNeeded(
            f"{len(unsent)} of {len(failures)} messages that must come back were not put back "
            f"(first: {unsent[0].error}); redeliver the delivery"
        )
    logger.info("messages put back on the rollout topic", extra={"requeued": len(sent)})
    return [result.delivery_id for result in sent]


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
    return upgrader.run(request, context, stop=_rollout_stop(upgrader, request.rollout_id))


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
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The fleet slice the selector names in each of its locations (account x region), and what each
    location gave. A member location that cannot be reached (its role) is reported and the rest go
    on; any other list failure propagates (never act on half a fleet)."""
    if plan.select is None:
        return [], []
    from dbupgrade.accounts import organisation_accounts
    from dbupgrade.rollouts.targets import scan_locations

    if plan.select.engine is not None:
        engines = [plan.select.engine]
    elif plan.targets_by_engine:
        engines = sorted(plan.targets_by_engine)
    else:
        engines = sorted(ENGINES)
    targets_by_engine = {e: t for e in engines if (t := plan.target_for(e)) is not None}
    if not targets_by_engine:
        return [], []
    accounts: list[str | None] = list(plan.select.accounts) or [None]
    if plan.select.all_accounts:
        accounts = list(organisation_accounts(upgrader, context))
    try:
        rows, locations = scan_locations(
            upgrader,
            plan.select.to_dict(),
            targets_by_engine,
            accounts,
            context=context,
            label=plan.rollout_id,
        )
    except InvalidRequest as error:
        raise InvalidRequest(f"payload.select.{error.field}", error.reason, error.allowed) from None
    for location in locations:
        if location["code"] is not None:
            logger.error(
                "timer location unreachable",
                extra={
                    "account_id": location["account_id"],
                    "region": location["region"],
                    "code": location["code"],
                    "error": location["message"],
                },
            )
    return rows, locations


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
