"""Multi-hop MongoDB upgrades: a target several majors ahead, reached one verified hop at a time.

MongoDB upgrades one major version at a time. DescribeAvailableEngineVersion offers only the next
one, and the documented ladder is 4.0 -> 4.2 -> 4.4 -> 5.0 -> 6.0 -> 7.0 -> 8.0 (cloud-disk replica
sets and sharded clusters: "Supported upgrade paths", help.aliyun.com/en/mongodb/product-overview/
upgrades-of-mongodb-major-versions; "When you upgrade across major versions, the system upgrades
incrementally ... A transient disconnection occurs with each incremental upgrade",
alibabacloud.com/help/doc-detail/64600.htm). ``Engine.versions`` is that ladder. A request for 7.0
on a 4.4 instance becomes the path 4.4 -> 5.0 -> 6.0 -> 7.0, three hops:

- hop 1 is submitted by the request itself (``submit_first``, from ``Upgrader``), once the service
  offers the path's next version; more than ``DBUPGRADE_MAX_HOPS`` hops (default 3) is refused;
- the tracker verifies each hop by reading the version back (ready AT the hop's version) and only
  then submits the next (``Chains.advance``), after the same gate as any upgrade (describe, status,
  DescribeAvailableEngineVersion offering that very version);
- each hop's ``upgrade.submitted`` carries ``hop``, ``hops`` and ``path``; the last hop's
  ``upgrade.completed`` ends the chain. ``to_version`` is always the chain's target: the
  instance's claim (``dbupgrade.store.claims``) is held for it from hop 1 to the end, re-taken by
  the chain before each hop, so no other request can start an upgrade in between.

The chain is checkpointed in the store (``Store.save_chain``) BEFORE each hop's call, as ``due``
(the next hop may be submitted: look first) and then ``calling`` (the call may have landed), and
``submitted`` once its outcome is recorded. A tracker that dies anywhere resumes from the checkpoint
(``Chains.resume``): it describes the instance first, and an instance already upgrading to the hop
(or at it) means the call landed - it is recorded, never sent again. Only a maintenance-window hop
whose reply was lost is ambiguous (a booking shows nothing until the window opens): like the use
case, it ends ``failed`` / ``unknown_result`` for a person to check rather than risk a second booking.

A member account's chain (``Chain.account_id``) is the member's from end to end: the tracker makes
every hop's calls with the credentials of the member's role (``Upgrader.credentials_for``) and keeps
the claim under the member's key, as the request that started it did.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any

from dbupgrade.cloudapi import CloudError
from dbupgrade.config import MAX_HOPS_VARIABLE
from dbupgrade.context import InvocationContext
from dbupgrade.engines import Engine, version_key
from dbupgrade.logging import logger
from dbupgrade.model import Outcome, UpgradeRequest
from dbupgrade.store import Claim, ClaimChange, claim_seconds

if TYPE_CHECKING:
    from dbupgrade.usecase import Upgrader, _Job

TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
# Checkpoint states of the hop in hand.
DUE, CALLING, SUBMITTED = "due", "calling", "submitted"
# assumption: one MongoDB hop takes about an hour. No API states an upgrade's length before it runs
# (the docs say only that the instance restarts two or three times, doc-detail/64600.htm); it is
# what ``rollout plan`` multiplies by the hops, and the stuck limit per hop stays the tracker's.
EXPECTED_HOP_SECONDS = 3600.0
# A chain's checkpoint outlives its longest possible run: every hop stuck, and a window's wait each.
CHECKPOINT_MARGIN_FACTOR = 2


def _order(version: str) -> tuple[int, ...]:
    try:
        return version_key(version)
    except ValueError:
        return (0,)


def path_to(engine: Engine, current: str, target: str) -> list[str] | None:
    """The versions from ``current`` to ``target`` along the engine's ladder when that is more than
    one hop (``["4.4", "5.0", "6.0", "7.0"]``); None for a one-hop upgrade or an engine that upgrades
    to any offered version at once (Redis)."""
    if not engine.one_hop or target not in engine.versions:
        return None
    steps = [v for v in engine.versions if _order(current) < _order(v) <= _order(target)]
    if len(steps) < 2:
        return None
    return [current, *steps]


def refusal(engine: Engine, path: list[str], offered: list[str], max_hops: int) -> str | None:
    """Why the path may not be taken, or None: the service must offer its first hop, and it may not
    have more than ``max_hops`` hops."""
    current, target, hops = path[0], path[-1], len(path) - 1
    route = " -> ".join(path)
    if path[1] not in offered:
        listed = ", ".join(offered) if offered else "nothing"
        return (
            f"{target} is not offered: {engine.label} upgrades one major version at a time along "
            f"{route}, but the service offers {listed} from {current}, not {path[1]}"
        )
    if hops > max_hops:
        return (
            f"{target} is not offered: {engine.label} upgrades one major version at a time; the next hop "
            f"from {current} is {path[1]} and {target} is {hops} hops away ({route}), more than "
            f"{MAX_HOPS_VARIABLE}={max_hops}"
        )
    return None


def expected_seconds(hops: int) -> float:
    """How long a path of ``hops`` hops is expected to take (``EXPECTED_HOP_SECONDS`` each)."""
    return hops * EXPECTED_HOP_SECONDS


def as_hop(outcome: Outcome, path: list[str], hop: int) -> Outcome:
    """``outcome`` of hop ``hop``'s call as the chain's: its target, hop, hops, path, and a message
    saying which hop it is."""
    hops = len(path) - 1
    prefix = f"hop {hop}/{hops} ({path[hop - 1]} -> {path[hop]} on the way to {path[-1]})"
    message = f"{prefix}: {outcome.message}" if outcome.message else prefix
    return replace(outcome, to_version=path[-1], hop=hop, hops=hops, path=list(path), message=message)


@dataclass(eq=False)  # changed in place as the chain goes; never compared: no generated __eq__ to build
class Chain:
    """A multi-hop upgrade's checkpoint (``Store.save_chain``): where it is and who holds the claim."""

    instance_id: str
    engine: str
    region: str
    effective: str
    path: list[str]
    owner: str  # the instance's claim belongs to it for the whole chain
    hop: int  # the hop in hand, 1-based: path[hop - 1] -> path[hop]
    state: str  # DUE | CALLING | SUBMITTED
    source: str = "cli"
    ticket_id: str | None = None
    rollout_id: str | None = None
    correlation_id: str | None = None
    started_at: str | None = None
    request_ids: dict[str, str | None] = field(default_factory=dict)  # hop -> the upgrade's RequestId
    verified: list[dict[str, Any]] = field(default_factory=list)  # {"hop", "version", "at"} per hop done
    # The instance's account (None: the own account): every hop is called with that account's
    # credentials, and its claim is the account's (``dbupgrade.store.claims``).
    account_id: str | None = None
    # The backup the request's gate took or found before hop 1: what a rollback of ANY hop restores
    # (the version before the chain), so every later hop's outcome carries it too.
    backup_id: str | None = None

    @property
    def hops(self) -> int:
        return len(self.path) - 1

    @property
    def target(self) -> str:
        return self.path[-1]

    @property
    def version(self) -> str:
        """The version the hop in hand goes to."""
        return self.path[self.hop]

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Chain:
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})


def _ttl(engine: Engine, chain: Chain) -> int:
    return claim_seconds(engine.stuck_after_seconds, chain.effective) * chain.hops * CHECKPOINT_MARGIN_FACTOR


def _save(upgrader: Upgrader, engine: Engine, chain: Chain) -> None:
    upgrader.store.save_chain(chain.instance_id, chain.to_dict(), _ttl(engine, chain))


def submit_first(upgrader: Upgrader, job: _Job, from_version: str, path: list[str]) -> Outcome:
    """Hop 1 of a request's chain (the request holds the instance's claim for the chain's target):
    checkpoint, call, and the outcome as the chain's. A refusal or a failure ends the chain here."""
    request = job.request
    chain = Chain(
        instance_id=request.instance_id,
        engine=job.engine.name,
        region=job.region,
        effective=job.effective,
        path=list(path),
        owner=job.owner,
        hop=1,
        state=CALLING,
        source=request.source,
        ticket_id=request.ticket_id,
        rollout_id=request.rollout_id,
        correlation_id=request.correlation_id,
        account_id=request.account_id,
    )
    _save(upgrader, job.engine, chain)
    hop_job = replace(job, request=request.with_(target_version=path[1]))
    outcome = as_hop(upgrader._submit(hop_job, from_version), path, 1)
    if outcome.status == "submitted":
        chain.state, chain.started_at = SUBMITTED, outcome.at
        chain.request_ids["1"] = outcome.request_id
        _save(upgrader, job.engine, chain)
    elif outcome.reason != "unknown_result":
        upgrader.store.drop_chain(request.instance_id)
    return outcome


class Chains:
    """What the tracker does with chains: read the checkpoint, advance after a verified hop, resume."""

    def __init__(self, upgrader: Upgrader) -> None:
        self.upgrader = upgrader

    def of(self, followed: Outcome) -> Chain | None:
        """The chain the followed upgrade belongs to, if any (its checkpoint names the same target)."""
        raw = self.upgrader.store.chain_of(followed.instance_id)
        if raw is None:
            return None
        chain = Chain.from_dict(raw)
        return chain if chain.target == followed.to_version and chain.hops > 1 else None

    def advance(
        self, followed: Outcome, chain: Chain, verified: Outcome, ctx: InvocationContext, now: datetime
    ) -> Outcome | None:
        """Hop ``chain.hop`` is verified (``verified``: the tracker's completed verdict for it): the last
        one completes the chain; any other is checkpointed and the next hop submitted."""
        engine = self._engine(chain)
        store = self.upgrader.store
        at = now.strftime(TIME_FORMAT)
        if chain.hop >= chain.hops:
            started = chain.started_at or followed.at
            total = max(0.0, (now - _parse(started)).total_seconds())
            done = replace(
                verified,
                from_version=chain.path[0],
                hop=chain.hop,
                hops=chain.hops,
                path=list(chain.path),
                duration_seconds=round(total, 1),
                message=(
                    f"upgraded from {chain.path[0]} to {chain.target} in {chain.hops} hops "
                    f"({' -> '.join(chain.path)}; EngineVersion verified after each)"
                ),
            )
            recorded = self.upgrader.finish(done, ctx, follows=followed)
            if recorded is not None:
                store.drop_chain(chain.instance_id)
                store.forget_upgrading(chain.instance_id, chain.version)
            return recorded
        chain.verified.append({"hop": chain.hop, "version": chain.version, "at": at})
        store.forget_upgrading(chain.instance_id, chain.version)
        chain.hop, chain.state = chain.hop + 1, DUE
        _save(self.upgrader, engine, chain)
        logger.info("hop verified", extra={"hop": chain.hop - 1, "hops": chain.hops})
        return self.resume(followed, chain, ctx, now)

    def resume(
        self, followed: Outcome, chain: Chain, ctx: InvocationContext, now: datetime
    ) -> Outcome | None:
        """Submit the hop in hand, looking first: an instance already upgrading to it (or at it) means
        an earlier call landed, and it is recorded without another call. None: try again next tick."""
        from dbupgrade.usecase import _Job

        engine = self._engine(chain)
        upgrader = self.upgrader
        store = upgrader.store
        # Hop 1's submission carries the gate's backup (the request set it after the checkpoint).
        chain.backup_id = chain.backup_id or followed.backup_id
        request = UpgradeRequest(
            chain.instance_id,
            chain.version,
            engine=chain.engine,
            region=chain.region,
            effective=chain.effective,
            ticket_id=chain.ticket_id,
            rollout_id=chain.rollout_id,
            source=chain.source,
            correlation_id=chain.correlation_id,
            account_id=chain.account_id,
        )
        try:
            credentials = upgrader.credentials_for(chain.account_id, ctx, chain.region, chain.rollout_id)
        except CloudError as error:  # the member's role: missing or untrusting, or STS unreachable
            if error.transient:
                logger.warning(
                    "next hop: no credentials yet; the next tick retries", extra={"code": error.code}
                )
                return None
            why = error.explain(chain.instance_id)
            return self._end(followed, chain, "failed", "configuration", error.code, why, now, ctx)
        member = claim_account(upgrader, chain.account_id)
        job = _Job(
            request,
            engine,
            chain.region,
            chain.effective,
            ctx,
            credentials,
            chain.owner,
            claim_account=member,
        )
        seconds = claim_seconds(engine.stuck_after_seconds, chain.effective)
        # The job's claim, as the first hop's request took it: the whole chain holds the instance
        # for the chain's target, not for the hop in hand (which is what the job's request names).
        claim = job.claim(now.strftime(TIME_FORMAT))._replace(to_version=chain.target)
        held = store.claim(claim, seconds)
        if held is not None:
            why = f"another request holds the instance ({held.to_version}, {held.source})"
            return self._end(followed, chain, "failed", "upgrade_in_flight", None, why, now, ctx)
        try:
            attributes, describe_id = upgrader._describe(job)
            refused = upgrader._precheck(job, attributes, describe_id) if attributes is not None else None
        except CloudError as error:
            if error.instance_not_found:
                return self._end(
                    followed, chain, "failed", "not_found", error.code, "the instance disappeared", now, ctx
                )
            logger.warning("next hop: describe failed; the next tick retries", extra={"code": error.code})
            return None
        if attributes is None:
            return self._end(
                followed,
                chain,
                "failed",
                "not_found",
                "InvalidInstanceId.NotFound",
                "the instance disappeared",
                now,
                ctx,
            )
        from_version = str(attributes.get(engine.version_key))
        if refused is not None and refused.reason in ("already_upgrading", "already_at_target"):
            # The hop's call landed before (a tick died after it): recorded now, never sent again.
            landed = job.outcome(
                "submitted",
                from_version=chain.path[chain.hop - 1],
                request_id=chain.request_ids.get(str(chain.hop)) or refused.request_id,
                reason="reconciled",
                message=f"already under way ({refused.message}); not submitted again",
            )
            return self._submitted(
                followed, chain, as_hop(landed, chain.path, chain.hop), claim, seconds, ctx
            )
        if refused is not None:
            return self._end(
                followed,
                chain,
                "failed",
                refused.reason or "hop_refused",
                refused.code,
                str(refused.message),
                now,
                ctx,
            )
        if chain.state == CALLING and chain.effective == "maintenance_window":
            # A booking shows nothing until its window opens: "unchanged" proves nothing here.
            why = "a hop's reply was lost and its maintenance-window booking is not visible yet"
            return self._end(followed, chain, "failed", "unknown_result", None, why, now, ctx)
        chain.state = CALLING
        _save(upgrader, engine, chain)
        outcome = upgrader._submit(job, from_version)
        if outcome.status == "submitted":
            return self._submitted(
                followed, chain, as_hop(outcome, chain.path, chain.hop), claim, seconds, ctx
            )
        if outcome.reason in ("instance_busy", "retries_exhausted"):
            chain.state = DUE
            _save(upgrader, engine, chain)
            return None
        if outcome.reason == "unknown_result":
            return self._end(
                followed, chain, "failed", "unknown_result", outcome.code, str(outcome.message), now, ctx
            )
        return self._end(
            followed,
            chain,
            "failed",
            outcome.reason or "api_error",
            outcome.code,
            str(outcome.message),
            now,
            ctx,
        )

    # -- helpers ----------------------------------------------------------------------------------

    def _engine(self, chain: Chain) -> Engine:
        from dbupgrade.engines import ENGINES

        return ENGINES[chain.engine]

    def _submitted(
        self,
        followed: Outcome,
        chain: Chain,
        outcome: Outcome,
        claim: Claim,
        seconds: int,
        ctx: InvocationContext,
    ) -> Outcome | None:
        """Record hop ``chain.hop``'s submission (replacing the followed outcome) and keep the claim."""
        outcome.backup_id = chain.backup_id
        accepted = ClaimChange(
            "accept", chain.owner, claim.accepted(outcome.request_id), seconds, claim.account_id
        )
        recorded = self.upgrader.finish(outcome, ctx, follows=followed, claim=accepted)
        if recorded is not None:
            chain.state = SUBMITTED
            chain.request_ids[str(chain.hop)] = outcome.request_id
            _save(self.upgrader, self._engine(chain), chain)
        return recorded

    def _end(
        self,
        followed: Outcome,
        chain: Chain,
        status: str,
        reason: str,
        code: str | None,
        why: str,
        now: datetime,
        ctx: InvocationContext,
    ) -> Outcome | None:
        """The chain stops at the hop in hand: recorded and notified, the claim released."""
        outcome = Outcome(
            status=status,
            instance_id=chain.instance_id,
            to_version=chain.target,
            engine=chain.engine,
            region=chain.region,
            from_version=chain.path[chain.hop - 1],
            effective=chain.effective,
            request_id=followed.request_id,
            ticket_id=chain.ticket_id,
            rollout_id=chain.rollout_id,
            source=chain.source,
            correlation_id=chain.correlation_id,
            reason=reason,
            code=code,
            hop=chain.hop,
            hops=chain.hops,
            path=list(chain.path),
            account_id=chain.account_id,  # the claim released is the account's
            backup_id=chain.backup_id,
            message=(
                f"hop {chain.hop}/{chain.hops} to {chain.version} not submitted: {why}; the instance stays "
                f"at {chain.path[chain.hop - 1]} (hops verified: {len(chain.verified)})"
            ),
            at=now.strftime(TIME_FORMAT),
        )
        recorded = self.upgrader.finish(outcome, ctx, follows=followed)
        if recorded is not None:
            self.upgrader.store.drop_chain(chain.instance_id)
        return recorded


def claim_account(upgrader: Upgrader, account_id: str | None) -> str | None:
    """The account an instance's claim is kept under: a member's, None for the own account (as the
    use case takes it, whether or not the request named the own account)."""
    return None if upgrader.accounts.is_own(account_id) else account_id


def _parse(text: str) -> datetime:
    from dbupgrade.tracker import parse_time

    return parse_time(text)
