"""Where readiness, the backup gate and the rollback runbook meet the use case and the tracker.

- ``preview``: a dry run carries the full readiness report (``rollout plan``, ``dbupgrade check``,
  webhook dry runs); a ``blocked`` report turns "would submit" into a refusal;
- ``submission_readiness`` / ``blocked``: before every submission, the submission checks (one read:
  DescribeBackups); ``blocked`` refuses the request (``rejected``, reason ``blocked``), no upgrade call;
- ``start``: no backup qualifies -> CreateBackup, ``awaiting_backup`` (the claim stays held);
- ``after_backup``: the tracker's step for an ``awaiting_backup`` outcome (under its instance lock):
  the backup finished -> describe, pre-check and submit (hop 1 of a chain when the target is several
  majors ahead, ``dbupgrade.hops``); failed -> ``failed`` / ``backup_failed``. A member account's
  target is followed and submitted with the credentials of the member's role, its claim the member's;
- ``attach_rollback``: a failed, stuck or halted outcome carries what rollback means (``runbook``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import datetime
from typing import TYPE_CHECKING, Any

from dbupgrade import backup, hops, readiness, runbook
from dbupgrade.cloudapi import CloudError
from dbupgrade.context import InvocationContext
from dbupgrade.engines import ENGINES
from dbupgrade.logging import logger
from dbupgrade.model import Outcome, UpgradeRequest
from dbupgrade.store import Claim, ClaimChange, claim_seconds

if TYPE_CHECKING:
    from dbupgrade.usecase import Upgrader, _Job, _Verdict

# Reasons of a failed / stuck outcome whose upgrade call may have been accepted by the service.
SUBMITTED_REASONS = frozenset({"upgrade_failed", "rolled_back", "unknown_result", "timeout", "not_started"})
ROLLBACK_STATUSES = frozenset({"failed", "stuck", "halted"})


def _caller(upgrader: Upgrader, job: _Job) -> readiness.Call:
    return lambda action, params: upgrader._call(job, action, params)


def _assess(
    upgrader: Upgrader,
    job: _Job,
    attributes: Mapping[str, Any] | None,
    checks: tuple[str, ...],
    now: datetime | None = None,
) -> readiness.Readiness:
    config = upgrader.config
    target = job.request.target_version
    if attributes is not None:
        # A multi-hop upgrade (dbupgrade.hops) is offered hop by hop: the report checks the first.
        path = hops.path_to(job.engine, str(attributes.get(job.engine.version_key)), target)
        target = path[1] if path else target
    return readiness.assess(
        job.engine,
        job.request.instance_id,
        target,
        _caller(upgrader, job),
        region=job.region,
        now=upgrader._now() if now is None else now,
        policy=config.backup,
        effective=job.effective,
        window=config.window,
        window_policy=config.window_policy,
        attributes=attributes,
        checks=checks,
    )


def preview(upgrader: Upgrader, job: _Job, verdict: Outcome) -> Outcome:
    """A dry run's verdict with the full readiness report attached (``Outcome.readiness``).

    The instance's attributes come through the use case's own describe, so a plan that read the
    fleet through the list APIs (``rollouts.plan``) answers them from those reads."""
    if verdict.reason == "not_found":
        return verdict  # no instance: nothing to be ready
    try:
        attributes, _ = upgrader._describe(job)
    except CloudError:
        attributes = None  # the report describes it again and, failing, blocks (fail closed)
    report = _assess(upgrader, job, attributes, readiness.ALL_CHECKS)
    if verdict.status == "submitted" and report.verdict == "blocked":
        verdict = blocked(job, report)
    elif verdict.status == "submitted" and report.needs_backup:
        verdict.message = (
            f"would take a backup first (DBUPGRADE_BACKUP {upgrader.config.backup.text}), then submit"
        )
    verdict.readiness = report.to_dict()
    return verdict


def submission_readiness(
    upgrader: Upgrader, job: _Job, attributes: Mapping[str, Any], now: datetime | None = None
) -> readiness.Readiness:
    """The checks before a submission at ``now`` (default: the clock's): the backup read, when the
    gate is on, is the one the use case may have started ahead for that same ``now``
    (``readiness.backup_read``), its answer taken where the check asks."""
    return _assess(upgrader, job, attributes, readiness.SUBMISSION_CHECKS, now)


def blocked(job: _Job, report: readiness.Readiness) -> Outcome:
    return job.outcome(
        "rejected",
        reason="blocked",
        code="NotReady",
        from_version=report.from_version,
        message=f"readiness blocked: {report.summary()}",
        readiness=report.to_dict(),
    )


def start(upgrader: Upgrader, job: _Job, claim: Claim, seconds: int, from_version: str) -> _Verdict:
    """Start the backup the upgrade waits for; the claim is kept for the wait and the upgrade."""
    stopped = job.stop() if job.stop is not None else None
    if stopped is not None:
        reason, why = stopped
        halted = job.outcome(
            "halted", reason=reason, from_version=from_version, message=f"not upgraded: {why}"
        )
        return halted, ClaimChange("release", job.owner, account_id=job.claim_account)
    try:
        body = upgrader._call(
            job, job.engine.backup_create_action, {job.engine.id_param: job.request.instance_id}
        )
    except CloudError as error:
        failed = job.outcome(
            "failed",
            reason="backup_failed",
            code=error.code,
            request_id=error.request_id,
            from_version=from_version,
            message=f"the backup before the upgrade was refused ({error.code}): {error.message[:200]}",
        )
        return failed, ClaimChange("release", job.owner, account_id=job.claim_account)
    backup_id = str(body.get(job.engine.backup_created_key) or "")
    waiting = job.outcome(
        "awaiting_backup",
        reason="backup_started",
        request_id=body.get("RequestId"),
        from_version=from_version,
        backup_id=backup_id,
        message=(
            f"waiting for backup {backup_id} (DBUPGRADE_BACKUP {upgrader.config.backup.text}); the upgrade to "
            f"{job.request.target_version} is submitted once it finished"
        ),
    )
    keep = seconds + backup.BACKUP_WAIT_SECONDS
    return waiting, ClaimChange("accept", job.owner, claim.accepted(None), keep, job.claim_account)


def after_backup(
    upgrader: Upgrader, waiting: Outcome, ctx: InvocationContext, now: datetime
) -> Outcome | None:
    """The tracker's step for an ``awaiting_backup`` outcome: None while the backup runs (or could
    not be read: the next tick looks again), else the recorded outcome (submitted, refused, failed)."""
    from dbupgrade.usecase import _Job  # the use case's own job: the same steps as a request

    engine = ENGINES[str(waiting.engine)]
    region = str(waiting.region or upgrader.config.region or ctx.region)
    request = UpgradeRequest(
        waiting.instance_id,
        waiting.to_version,
        engine=engine.name,
        region=region,
        effective="maintenance_window" if waiting.effective == "maintenance_window" else "immediate",
        ticket_id=waiting.ticket_id,
        rollout_id=waiting.rollout_id,
        source=waiting.source if waiting.source in ("timer", "webhook", "queue", "cli") else "cli",
        correlation_id=waiting.correlation_id,
        account_id=waiting.account_id,
    )
    member = hops.claim_account(upgrader, waiting.account_id)
    held = upgrader.store.claim_of(waiting.instance_id, member)
    owner = held.owner if held is not None and held.to_version == waiting.to_version else ""
    job = _Job(
        request,
        engine,
        region,
        str(request.effective),
        ctx,
        None,  # the target account's, read in the try below: a refused role is recorded like a refused read
        owner,
        _rollout_stop(upgrader, waiting.rollout_id),
        claim_account=member,
    )
    release = ClaimChange("release_version", waiting.to_version, account_id=member)
    try:
        # A member account's backup and upgrade are its own: read and submitted through its role.
        job = replace(
            job,
            credentials=upgrader.credentials_for(waiting.account_id, ctx, region, waiting.rollout_id),
        )
        state = backup.follow(
            engine,
            _caller(upgrader, job),
            waiting.instance_id,
            str(waiting.backup_id or ""),
            _parse(waiting.at),
            now,
        )
    except CloudError as error:
        if error.configuration:  # a missing permission or a wrong key: an operator's to fix, said once
            refused = job.outcome(
                "failed",
                reason="configuration",
                code=error.code,
                from_version=waiting.from_version,
                backup_id=waiting.backup_id,
                message=f"not upgraded: the backup could not be followed: {error.explain(waiting.instance_id)}",
            )
            return upgrader._record(refused, ctx, claim=release, follows=waiting)
        logger.warning("backup could not be read; the next tick retries", extra={"code": error.code})
        return None
    if state.failed is not None:
        failed = job.outcome(
            "failed",
            reason="backup_failed",
            code="BackupFailed",
            from_version=waiting.from_version,
            backup_id=state.backup_id or waiting.backup_id,
            message=f"not upgraded: {state.failed}",
        )
        return upgrader._record(failed, ctx, claim=release, follows=waiting)
    if not state.done:
        return None
    outcome, claim = _submit_after(upgrader, job, waiting)
    outcome.backup_id = state.backup_id
    return upgrader._record(outcome, ctx, claim=claim, follows=waiting)


def _submit_after(upgrader: Upgrader, job: _Job, waiting: Outcome) -> tuple[Outcome, ClaimChange | None]:
    """Describe, pre-check and submit, as a request does, now that the backup finished."""
    release = ClaimChange("release_version", waiting.to_version, account_id=job.claim_account)
    try:
        attributes, describe_id = upgrader._describe(job)
        verdict = upgrader._precheck(job, attributes, describe_id) if attributes is not None else None
    except CloudError as error:
        return upgrader._cloud_failure(job, error, from_version=waiting.from_version), release
    if attributes is None:
        gone = job.outcome(
            "failed",
            reason="not_found",
            code="InvalidInstanceId.NotFound",
            message="the instance disappeared",
        )
        return gone, release
    if verdict is not None:
        return verdict, release
    from_version = str(attributes.get(job.engine.version_key))
    path = hops.path_to(job.engine, from_version, job.request.target_version)
    if path is None:
        outcome = upgrader._submit(job, from_version)
    else:  # several majors ahead: hop 1 of the chain, the tracker submits the rest (dbupgrade.hops)
        outcome = hops.submit_first(upgrader, job, from_version, path)
    if outcome.status == "submitted":
        seconds = claim_seconds(job.engine.stuck_after_seconds, job.effective)
        accepted = job.claim(waiting.at).accepted(outcome.request_id)
        return outcome, ClaimChange("accept", job.owner, accepted, seconds, job.claim_account)
    if outcome.reason == "unknown_result":
        return outcome, None  # the upgrade may have landed: the claim stays until it expires
    return outcome, release


def attach_rollback(outcome: Outcome) -> None:
    """A failed, stuck or halted outcome says what rolling back means for its engine and path."""
    if outcome.status not in ROLLBACK_STATUSES or outcome.rollback is not None or outcome.dry_run:
        return
    submitted = outcome.status == "stuck" or outcome.reason in SUBMITTED_REASONS
    from_version, reached = outcome.from_version, None
    if outcome.path and outcome.hop and 1 < outcome.hop < len(outcome.path):
        # Hop 2 or later of a chain: the hops before it were verified, so rolling back means going
        # back to the chain's start (path[0]), the version the gate's backup was taken at.
        from_version, reached = outcome.path[0], outcome.path[outcome.hop - 1]
    outcome.rollback = runbook.rollback_text(
        outcome.engine,
        from_version,
        outcome.to_version,
        backup_id=outcome.backup_id,
        submitted=submitted,
        booked=outcome.effective == "maintenance_window",
        reached=reached,
    )


def _rollout_stop(upgrader: Upgrader, rollout_id: str | None) -> Callable[[], tuple[str, str] | None] | None:
    """A rollout halted or cancelled while its target waited for the backup must not upgrade it."""
    if rollout_id is None or upgrader.store.redis is None:
        return None
    from dbupgrade.rollouts.state import RolloutRepository

    repository = RolloutRepository(upgrader.store)
    return lambda: repository.stopped(rollout_id)


def _parse(text: str) -> datetime:
    from dbupgrade.tracker import parse_time

    return parse_time(text)
