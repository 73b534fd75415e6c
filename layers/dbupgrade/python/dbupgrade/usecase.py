"""The one use case every trigger shares: request in, exactly one recorded and notified outcome out.

A straight pipeline: each step returns a verdict (or passes), and one exit (``_conclude``) records
and notifies it - in one store write with the outbox entry and the instance's claim::

    request --validate--> region, window --> scope --idempotency key--> claim read
            --> pre-check (describe) --> claim (atomic) --> submit (upgrade API, retried)
            --> _conclude: record + outbox + claim (one transaction), publish --> Outcome

One upgrade per instance, whatever asked for it: an instance with an accepted upgrade not finished
yet (submitted and running, or booked for the maintenance window) answers ``in_progress`` pointing
at that upgrade (or refuses another target) with no upgrade call (``dbupgrade.store.claims``).

Idempotency replays only final verdicts (``Outcome.final``: submitted, noop, in_progress) for
``IDEMPOTENCY_SECONDS``; refusals and failures are re-evaluated on the next delivery. The key is
the source, the delivery identity and the instance; the target, region and effective are the
validated payload, so a delivery id reused for a different request is refused.

``run`` never raises for bad input or cloud errors (they become ``rejected`` / ``failed``
outcomes); it raises ``StoreUnavailable`` only when the store is down, before any cloud call.

Example::

    upgrader = Upgrader.from_env()                       # once per instance, reused while warm
    outcome = upgrader.run(parse_request(body, source="webhook", delivery_id=webhook_id), context)
"""

from __future__ import annotations

import contextvars
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Executor, Future, wait
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from dbupgrade import clock, gate, hops, readiness
from dbupgrade.accounts import MemberCredentials
from dbupgrade.cloudapi import CloudApi, CloudError, RetryPolicy
from dbupgrade.config import Config
from dbupgrade.context import Credentials, InvocationContext, adapt_context
from dbupgrade.engines import ENGINES, Engine, api_bool, dig, engine_for_instance, version_key
from dbupgrade.errors import StoreUnavailable
from dbupgrade.logging import bind_invocation, bind_request, logger, register_secret
from dbupgrade.model import IN_FLIGHT_STATUSES, InvalidRequest, Outcome, UpgradeRequest, utc_now
from dbupgrade.notify import Delivery, Notifier
from dbupgrade.ratelimit import RateLimiter
from dbupgrade.request import (
    BODY_DEDUPE_SECONDS,
    BODY_DIGEST_PREFIX,
    TICKET_MAX,
    parse_request,
    shown,
)
from dbupgrade.store import Claim, ClaimChange, Finishing, Store, claim_seconds, open_store
from dbupgrade.store.base import OUTBOX_GRACE_SECONDS

# How long a final verdict is remembered. MNS keeps an unconsumed message up to 7 days
# (MessageRetentionPeriod max 604800 s), the longest a redelivery of the same request can arrive.
IDEMPOTENCY_SECONDS = 7 * 24 * 3600
RECONCILE_ROUNDS = 3  # resubmissions after an ambiguous failure proved the first did not land
OUTBOX_BATCH = 100  # outbox entries one claim-and-publish pass takes before looking at the clock again
# Outcomes ``finish_many`` writes in one round trip and publishes before settling their outbox
# entries: small enough that a batch's publishes end well within the entries' grace, so a drain
# never takes an entry its writer is still publishing.
FINISH_BATCH = 200
# Threads that make a request's read early, beside the read before it (the backup gate's
# DescribeBackups beside the offered-versions reads): one a request at a time, a few requests at
# once in an instance that serves several (FC instance concurrency, the local server).
EARLY_READ_WORKERS = 4
_early_pool: Executor | None = None
_early_pool_lock = threading.Lock()

ReadKey = tuple[str, tuple[tuple[str, str], ...]]  # a read's action and parameters, as ``_call`` asks it


class _Unremembered(Exception):
    """Carries a non-final outcome (``Outcome.final``) out of the idempotent section, so its
    record is dropped, not cached: the next delivery of the request is evaluated afresh (the sender
    may have fixed the region, the instance may be free now, the throttling over)."""

    def __init__(self, outcome: Outcome) -> None:
        super().__init__(outcome.status)
        self.outcome = outcome


# Never compared (its dict fields made the generated __hash__ raise anyway) nor shown: only the
# generated __init__ and frozen __setattr__/__delattr__ are built at import (bench/NOTES.md).
@dataclass(frozen=True, eq=False, repr=False)
class _Job:
    """One request, resolved: what every step reads and none changes."""

    request: UpgradeRequest
    engine: Engine
    region: str
    effective: str
    context: InvocationContext
    credentials: Credentials | None
    owner: str  # who holds the instance's claim for this request: its idempotency key, or a token
    stop: Callable[[], tuple[str, str] | None] | None = None
    claim_account: str | None = None  # the claim's account: a member's, None for the own account
    # The request's answers of the offered-versions reads, by (action, params): the pre-check and the
    # readiness report ask the same ones (DescribeEngineVersion, DescribeAvailableEngineVersion)
    # within milliseconds. Describes are never kept: a reconciliation must see the instance anew.
    reads: dict[ReadKey, dict[str, Any]] = field(default_factory=dict)
    # Reads started before their step on a worker thread (``Upgrader._read_early``): the step's call
    # takes the answer, or the error, where it would have called. A request that ends without
    # one waits for it and drops it (``_drop_early``).
    early: dict[ReadKey, Future[dict[str, Any]]] = field(default_factory=dict)
    # Inside the idempotent section: the published outbox entries whose removal rides on the
    # idempotency completion write (one round trip for both); None: removed at once.
    settle: list[str] | None = None
    # Inside the idempotent section: (idempotency key, seconds). A final verdict's finishing write
    # keeps it as the request's answer until the idempotency completion holds it: a redelivery
    # after a death between the two writes answers it instead of recording a second outcome.
    answers: tuple[str, int] | None = None
    # Actions whose next call's rate-limit token is already taken, and when it is due
    # (``time.monotonic()``): the pre-check's reads (``Upgrader._reserve_reads``), the upgrade's (with
    # the claim). Shared with the hop job ``hops.submit_first`` derives (``replace`` keeps the same dict).
    tokens_due: dict[str, float] = field(default_factory=dict)

    def outcome(self, status: str, **fields: Any) -> Outcome:
        request = self.request
        values: dict[str, Any] = {
            "status": status,
            "instance_id": request.instance_id,
            "to_version": request.target_version,
            "engine": self.engine.name,
            "region": self.region,
            "effective": self.effective,
            "ticket_id": request.ticket_id,
            "rollout_id": request.rollout_id,
            "source": request.source,
            "correlation_id": request.correlation_id,
            "dry_run": request.dry_run,
            "account_id": request.account_id,
        }
        values.update(fields)
        return Outcome(**values)

    def claim(self, at: str) -> Claim:
        request = self.request
        return Claim(
            instance_id=request.instance_id,
            to_version=request.target_version,
            owner=self.owner,
            source=request.source,
            ticket_id=request.ticket_id,
            rollout_id=request.rollout_id,
            effective=self.effective,
            at=at,
            account_id=self.claim_account,
        )


# A verdict and what it does to the instance's claim when it is recorded.
_Verdict = tuple[Outcome, ClaimChange | None]


def idempotency_key(request: UpgradeRequest) -> str | None:
    """The request's identity within its source, or None when it carries none.

    Namespaced by source: a webhook delivery id can never take the key of a timer's (or a queue
    message's) delivery, whatever its text. The instance is part of it (one webhook delivery may
    carry a batch of instances); target, region and effective are validated instead.

    >>> idempotency_key(UpgradeRequest("r-bp1x", "7.0", source="webhook", delivery_id="msg_1"))
    'webhook|delivery:msg_1|r-bp1x'
    """
    for kind, value in (
        ("delivery", request.delivery_id),
        ("ticket", request.ticket_id),
        ("rollout", request.rollout_id),
        ("correlation", request.correlation_id),
    ):
        if value:
            return f"{request.source}|{kind}:{value}|{request.instance_id}"
    return None


class Upgrader:
    """Runs upgrade requests; build once per function instance (``from_env``) and reuse it."""

    def __init__(
        self,
        config: Config,
        store: Store,
        *,
        cloud: CloudApi | None = None,
        notifier: Notifier | None = None,
        retry: RetryPolicy | None = None,
        now: Callable[[], datetime] | None = None,
        limiter: RateLimiter | None = None,
    ) -> None:
        self.config = config
        self.store = store
        self.cloud = cloud or CloudApi(config, retry, limiter=limiter)
        self.accounts = MemberCredentials(config, self.cloud)
        self.notifier = notifier or Notifier(config)
        self._now = now or clock.utcnow
        # One Powertools persistence layer per expiry: a layer takes the expiry of the config it is
        # first used with and keeps it (BasePersistenceLayer.configure returns at once when already
        # configured), so one shared layer would remember every later request for the first one's time.
        self._persistence: dict[int, Any] = {}
        for secret in config.secrets():
            register_secret(secret)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **kwargs: Any) -> Upgrader:
        """Read and validate the configuration (ConfigError names the variable) and open the store."""
        config = Config.from_env(env)
        store = open_store(config)
        kwargs.setdefault("limiter", RateLimiter.from_env(store.redis, env))
        return cls(config, store, **kwargs)

    # -- public API -----------------------------------------------------------------------------

    def run(
        self,
        request: UpgradeRequest,
        context: Any = None,
        *,
        stop: Callable[[], tuple[str, str] | None] | None = None,
    ) -> Outcome:
        """One request to one recorded, notified outcome (a replay: the first one's, marked).

        ``stop`` is asked right before each upgrade call, as late as it can be (after the pre-check,
        inside the idempotent section): a ``(reason, why)`` answer (its rollout was halted) ends the
        request ``halted`` without that call.
        """
        ctx = adapt_context(context)
        bind_invocation(ctx)
        bind_request(request.instance_id, request.ticket_id)
        try:
            request = self._revalidate(request)
        except InvalidRequest as error:
            return self._conclude(self._rejected_input(error, request))
        region = request.region or self.config.region or ctx.region
        if not region:
            missing = InvalidRequest(
                "region", "no region: set it in the request, DBUPGRADE_REGION or run in FC"
            )
            return self._conclude(self._rejected_input(missing, request))
        key = idempotency_key(request) if self.config.idempotency and self.store.redis is not None else None
        effective, outside_window = self._effective(request)
        job = _Job(
            request,
            ENGINES[str(request.engine)],
            region,
            effective,
            ctx,
            self.cloud.credentials(ctx.credentials),
            key or uuid.uuid4().hex,
            stop,
        )
        refused = self._scope(job) or (self._deferred(job) if outside_window else None)
        if refused is not None:
            return self._conclude(refused, job)  # its write fails closed on a down store
        if key is None or request.account_id is not None or request.dry_run:
            # Before any cloud call (fail closed). A keyed request's first store command, the
            # idempotency in-progress write, comes before its first cloud call and fails the same way.
            self._probe_store()
        if request.account_id is not None:
            try:
                credentials = self.credentials_for(
                    request.account_id, ctx, region, request.rollout_id or request.ticket_id
                )
            except CloudError as error:  # the member's role: missing, untrusting, or STS unreachable
                return self._conclude(self._cloud_failure(job, error), job)
            claim_account = None if self.accounts.is_own(request.account_id) else request.account_id
            job = replace(job, credentials=credentials, claim_account=claim_account)
        if request.dry_run:
            verdict, _ = self._verdict(job, submit=False)
            return gate.preview(self, job, verdict)  # a preview: neither recorded nor notified
        if key is None:
            verdict, claim = self._verdict(job)
            return self._conclude(verdict, job, claim=claim)
        return self._run_once(job, key)

    def reject(
        self,
        error: InvalidRequest,
        raw: Mapping[str, Any] | None,
        *,
        source: str,
        context: Any = None,
        correlation_id: str | None = None,
    ) -> Outcome:
        """Record and notify one ``rejected`` outcome for input that could not even be parsed."""
        ctx = adapt_context(context)
        bind_invocation(ctx)
        raw = raw if isinstance(raw, Mapping) else {}
        given = raw.get("instance_id")
        engine = engine_for_instance(given) if isinstance(given, str) else None
        # The store keys an outcome by its instance: only a well-formed instance ID may name
        # one, so hostile input (60 KB, a million random strings) creates no key of its own.
        instance_id = given if engine is not None and engine.id_pattern.match(given) else None
        message = str(error)
        if given is not None and instance_id is None and error.field != "instance_id":
            message += f" (instance_id {shown(given)} is not a valid instance ID either)"
        bind_request(instance_id, _short_text(raw.get("ticket_id")))
        self._probe_store()
        outcome = Outcome(
            status="rejected",
            instance_id=instance_id or "unknown",
            to_version=_short_text(raw.get("target_version")) or "unknown",
            engine=engine.name if engine else None,
            region=_short_text(raw.get("region")),
            ticket_id=_short_text(raw.get("ticket_id")),
            source=source,
            correlation_id=correlation_id,
            reason="invalid_request",
            code="InvalidRequest",
            message=message,
            field=error.field,
        )
        return self._conclude(outcome, context=ctx)

    def credentials_for(
        self, account_id: str | None, context: Any, region: str, label: str | None
    ) -> Credentials | None:
        """The credentials that act in ``account_id`` (None: the own account): a member's through its
        role, the session named after ``label`` (the rollout or request). Raises ``CloudError``
        (``accounts.MemberAccessError`` when the role cannot be assumed)."""
        ctx = adapt_context(context)
        own = self.cloud.credentials(ctx.credentials)
        return self.accounts.credentials(account_id, own, region, label, ctx.deadline)

    def status(self, instance_id: str) -> Outcome | None:
        """The latest recorded outcome for ``instance_id``."""
        return self.store.latest(instance_id)

    def history(self, instance_id: str, limit: int = 20) -> list[Outcome]:
        return self.store.history(instance_id, limit)

    def finish(
        self,
        outcome: Outcome,
        context: Any = None,
        *,
        follows: Outcome | None = None,
        claim: ClaimChange | None = None,
    ) -> Outcome | None:
        """Record and notify an outcome decided outside ``run`` (the tracker, rollouts).

        ``follows``: the in-flight outcome this one concludes (the tracker). When another outcome
        replaced it meanwhile (a new submission) nothing is written and None is returned: the
        newer one is kept and followed. A final verdict on the upgrade (not in flight) releases
        the instance's claim on that target in the same write; ``claim``: another change instead
        (a chain's next hop keeps it, ``dbupgrade.hops``).
        """
        if claim is None and follows is not None:
            claim = self._final_claim(outcome)
        return self._record(outcome, adapt_context(context), claim=claim, follows=follows)

    def _final_claim(self, outcome: Outcome) -> ClaimChange | None:
        """A final verdict on a followed upgrade releases the instance's claim on that target."""
        if outcome.status in IN_FLIGHT_STATUSES:
            return None
        account = None if self.accounts.is_own(outcome.account_id) else outcome.account_id
        return ClaimChange("release_version", outcome.to_version, account_id=account)

    def finish_many(
        self, verdicts: Sequence[tuple[Outcome, Outcome]], context: Any = None, *, pool: Executor
    ) -> list[Outcome | None]:
        """``finish(outcome, follows=followed)`` of each (the tracker's transitions of a chunk), in
        batches of ``FINISH_BATCH``: per batch one store round trip writes them (each its own
        compare-and-set, as ``finish``'s), their notifications go out on ``pool``'s threads, and one
        more round trip takes the published entries off the outbox and makes the others due for
        the next drain (a publish that must wait stops the batch's publishes: the rest wait alike).
        One log line sums a batch up; an outcome other than ``completed`` keeps its own line.
        Each recorded outcome, or None where a newer one replaced the followed outcome."""
        ctx = adapt_context(context)
        recorded: list[Outcome | None] = []
        for start in range(0, len(verdicts), FINISH_BATCH):
            recorded += self._finish_batch(verdicts[start : start + FINISH_BATCH], ctx, pool)
        return recorded

    def _finish_batch(
        self, verdicts: Sequence[tuple[Outcome, Outcome]], ctx: InvocationContext, pool: Executor
    ) -> list[Outcome | None]:
        messages: list[dict[str, Any]] = []
        finishing: list[Finishing] = []
        for outcome, followed in verdicts:
            gate.attach_rollback(outcome)
            message = outcome.notification()
            messages.append(message)
            notified = message if self.notifier.enabled else None
            finishing.append(Finishing(outcome, notified, self._final_claim(outcome), followed))
        written_at = time.monotonic()
        finished = self.store.finish_many(finishing)
        written = [i for i, one in enumerate(finished) if one.written]
        for (outcome, _), one, message in zip(verdicts, finished, messages, strict=True):
            if not one.written:
                logger.info("outcome superseded by a newer one; not recorded", extra={"event": outcome.event})
            elif outcome.status != "completed":
                logger.info("outcome", extra={"outcome": message})
        sent = [i for i in written if finished[i].entry is not None]
        deliveries: list[Delivery | None] = []
        if sent:
            deliveries = self.notifier.publish_many(
                [messages[i] for i in sent],
                credentials=self._notify_credentials(ctx),
                context=ctx,
                pool=pool,
                # Half the grace: the other half is one publish's longest (store.base).
                until=min(written_at + OUTBOX_GRACE_SECONDS / 2, ctx.deadline),
            )
        entries = [str(finished[i].entry) for i in sent]
        waiting = {e for e, d in zip(entries, deliveries, strict=True) if d in (None, Delivery.RETRY)}
        self.store.outbox_settle(
            [e for e in entries if e not in waiting], [e for e in entries if e in waiting]
        )
        for i, delivery in zip(sent, deliveries, strict=True):
            if delivery is Delivery.REFUSED:
                kept = self.store.set_aside({"message": messages[i]}, "refused by MNS")
                logger.error(
                    "notification set aside: MNS refused it for good",
                    extra={"event": verdicts[i][0].event, "set_aside": kept},
                )
        logger.info(
            "outcomes recorded",
            extra={
                "recorded": len(written),
                "statuses": dict(Counter(str(verdicts[i][0].status) for i in written)),
                "superseded": len(verdicts) - len(written),
                "published": sum(d is Delivery.DELIVERED for d in deliveries),
                "kept_in_outbox": len(waiting),
            },
        )
        return [
            outcome if one.written else None for (outcome, _), one in zip(verdicts, finished, strict=True)
        ]

    def publish(self, message: dict[str, Any], context: Any = None) -> None:
        """Publish a message no outcome carries (a rollout summary), or park it in the outbox."""
        ctx = adapt_context(context)
        if not self.notifier.enabled:
            return
        if not self.notifier.publish(message, credentials=self._notify_credentials(ctx), context=ctx):
            self.store.outbox_add({"message": message})

    def drain_outbox(self, context: Any = None, *, deadline: float | None = None) -> int:
        """Publish notifications an earlier run could not, in batches of ``OUTBOX_BATCH``, until the
        outbox is empty, a publish fails (MNS is still down: the next drain tries again) or
        ``deadline`` (time.monotonic(); default: the invocation's) passes. Returns how many were
        delivered; what is left stays in the outbox, in order. The tracker calls it once a tick.
        """
        ctx = adapt_context(context)
        credentials = self._notify_credentials(ctx)
        until = ctx.deadline if deadline is None else deadline

        def deliver(entry: dict[str, Any]) -> bool:
            result = self.notifier.publish(entry["message"], credentials=credentials, context=ctx)
            if result is Delivery.REFUSED:
                # Resending cannot help: keep it apart, and let the entries behind it go out.
                kept = self.store.set_aside(entry, "refused by MNS")
                logger.error(
                    "notification set aside: MNS refused it for good",
                    extra={"event": str(entry["message"].get("event"))[:64], "set_aside": kept},
                )
                return True
            return bool(result)

        delivered = 0
        while time.monotonic() < until:
            batch = self.store.drain(deliver, deadline=until, limit=OUTBOX_BATCH)
            delivered += batch
            if batch < OUTBOX_BATCH:
                break  # empty, a failed publish, another drainer or the deadline
        if delivered:
            logger.info("outbox drained", extra={"delivered": delivered})
        return delivered

    def select(self, selector: Mapping[str, Any], context: Any = None) -> list[dict[str, Any]]:
        """Instances matching ``{"engine", "tags", "regions", "from_versions", "account_id"}`` via the
        list APIs (``account_id``: a member account, listed through its role; None: the own account).

        Raises ``InvalidRequest`` for a bad selector and ``CloudError`` when a list call fails
        (the caller, a rollout, must not act on a partial fleet).
        """
        ctx = adapt_context(context)
        name = selector.get("engine")
        if name not in ENGINES:
            raise InvalidRequest("engine", "unknown engine; allowed", allowed=sorted(ENGINES))
        engine = ENGINES[str(name)]
        tags = selector.get("tags") or {}
        if not isinstance(tags, Mapping):
            raise InvalidRequest("tags", "must be an object of tag key -> value")
        regions = list(selector.get("regions") or [r for r in (self.config.region, ctx.region) if r][:1])
        if not regions:
            raise InvalidRequest("regions", "no region: list them, set DBUPGRADE_REGION or run in FC")
        from_versions = {str(v) for v in selector.get("from_versions") or []}
        account_id = selector.get("account_id")
        found: list[dict[str, Any]] = []
        for region in regions:
            credentials = self.credentials_for(account_id, ctx, str(region), selector.get("label"))
            for item in self._list_instances(engine, str(region), dict(tags), credentials, ctx.deadline):
                if not engine.listable(item):
                    continue  # Memcache or Tair in the Redis list: nothing this tool upgrades
                if tags and not _tags_match(item.get("Tags"), tags):
                    continue
                version = str(item.get(engine.version_key, ""))
                if from_versions and version not in from_versions:
                    continue
                found.append(
                    {
                        "instance_id": item.get(engine.id_key),
                        "engine": engine.name,
                        "region": item.get("RegionId") or region,
                        "version": version,
                        "status": item.get(engine.status_key),
                        "tags": tag_dict(item.get("Tags")),
                        "account_id": account_id,
                    }
                )
        return found

    # -- steps: each returns a verdict (or None to pass), none records or changes the job ---------

    def _revalidate(self, request: UpgradeRequest) -> UpgradeRequest:
        """Requests built by hand (not via parse_request) get the same checks and engine inference."""
        fields = {
            "instance_id": request.instance_id,
            "target_version": request.target_version,
            "engine": request.engine,
            "region": request.region,
            "effective": request.effective,
            "ticket_id": request.ticket_id,
            "rollout_id": request.rollout_id,
            "dry_run": request.dry_run,
            "account_id": request.account_id,
        }
        return parse_request(
            fields,
            source=request.source,
            correlation_id=request.correlation_id,
            delivery_id=request.delivery_id,
        )

    def _effective(self, request: UpgradeRequest) -> tuple[str, bool]:
        """When the upgrade takes effect, and whether the request is outside the upgrade window and
        the policy refuses it. An upgrade asked for the maintenance window is scheduled by the
        cloud: no window applies; outside the window, policy ``maintenance_window`` books it."""
        asked = request.effective or "immediate"
        window = self.config.window
        if window is None or asked == "maintenance_window" or window.contains(self._now()):
            return asked, False
        policy = self.config.window_policy
        if policy == "maintenance_window":
            return "maintenance_window", False
        return asked, policy == "reject"

    def _deferred(self, job: _Job) -> Outcome:
        window = self.config.window
        text = window.text if window is not None else ""
        return job.outcome("deferred", reason="outside_window", message=f"outside the upgrade window {text}")

    def _scope(self, job: _Job) -> Outcome | None:
        """Scope: refusals here make no cloud call at all."""
        allowed = self.config.allowed_instances
        if allowed is not None and job.request.instance_id not in allowed:
            return job.outcome(
                "rejected",
                reason="out_of_scope",
                code="OutOfScope",
                field="instance_id",
                message="instance is not in DBUPGRADE_ALLOWED_INSTANCES",
            )
        regions = self.config.allowed_regions
        if regions is not None and job.region not in regions:
            return job.outcome(
                "rejected",
                reason="out_of_scope",
                code="OutOfScope",
                field="region",
                message=f"region {job.region} is not in DBUPGRADE_ALLOWED_REGIONS",
            )
        return None

    def _run_once(self, job: _Job, key: str) -> Outcome:
        from dbupgrade import idempotency

        errors = idempotency.errors()
        ran: list[Outcome] = []
        # A body digest stands in for a delivery id only briefly (request.BODY_DEDUPE_SECONDS says why).
        by_body = (job.request.delivery_id or "").startswith(BODY_DIGEST_PREFIX)
        remembered = BODY_DEDUPE_SECONDS if by_body else IDEMPOTENCY_SECONDS
        persistence = self._persistence.get(remembered)
        if persistence is None:
            persistence = self._persistence.setdefault(
                remembered, idempotency.redis_persistence(self.store.redis)
            )
        inner = replace(job, settle=[], answers=(key, remembered))
        # The claim read, the answer read and the pre-check reads' token reservation ride on the idempotency
        # in-progress write (two round trips less): that write is the request's first store
        # command, and both come after it as before. The tokens are taken whatever the write finds:
        # a request that turns out to be a replay, a duplicate in flight, or an instance claimed by
        # another leaves them spent. That errs on the slow side, never over the limit.
        held_read: list[Claim | None] = []
        earlier: list[Outcome | None] = []  # the answer an earlier attempt recorded, when read
        reserved: list[bool] = []

        def read_claim(pipeline: Any) -> Callable[[list[Any]], None]:
            read = self.store.queue_claim_of(pipeline, job.request.instance_id, job.claim_account)
            read_answer = self.store.queue_answer_of(pipeline, key)
            reserve = self.cloud.queue_reserve(
                pipeline,
                job.engine,
                self._reads_to_reserve(job),
                job.credentials,
                job.context.deadline,
                region=job.region,
            )

            def receive(replies: list[Any]) -> None:
                if not isinstance(replies[0], Exception):  # else _verdict reads it again
                    held_read.append(read(replies[0]))
                if not isinstance(replies[1], Exception):  # else upgrade_once reads it again
                    earlier.append(read_answer(replies[1]))
                if reserve is not None:  # a failed take: each read takes its own token
                    job.tokens_due.update(reserve(replies[2]))
                reserved.append(True)

            return receive

        def upgrade_once(payload: dict[str, Any]) -> dict[str, Any]:
            # An earlier attempt of this request recorded its final outcome, then died before its
            # idempotency completion (killed at its timeout while publishing): that outcome is the
            # answer, returned for Powertools to store; nothing recorded, called or notified again
            # (its outbox entry is still queued: the drain publishes it). The in-progress write
            # that took a fresh key carried the read; one that took over an expired record did not.
            answer = earlier[0] if earlier else self.store.answer_of(key)
            if answer is not None:
                logger.info("the request's earlier attempt recorded its outcome; answering it")
                return answer.to_dict()
            verdict, claim = self._verdict(inner, held_read=held_read, reads_reserved=bool(reserved))
            outcome = self._conclude(verdict, inner, claim=claim)
            ran.append(outcome)
            if not outcome.final:
                raise _Unremembered(outcome)
            return outcome.to_dict()

        run = idempotency.make_idempotent(
            upgrade_once, persistence, job.context, expires_after_seconds=remembered
        )
        meaning = {
            "target_version": job.request.target_version,
            "region": job.region,
            "effective": job.request.effective or "immediate",
            "engine": job.engine.name,
        }
        if job.request.account_id is not None:  # only then: records written before accounts stay valid
            meaning["account_id"] = job.request.account_id

        def settle(pipeline: Any) -> None:
            while inner.settle:
                self.store.outbox_done(inner.settle.pop(), pipeline)
            self.store.forget_answer(key, pipeline)  # the idempotency record holds it from now on

        try:
            with (
                persistence.in_progress_riders(read_claim),
                persistence.completion_riders(settle),
            ):
                result = run(payload={"key": key, "request": meaning})
        except _Unremembered as transient:
            return transient.outcome
        except errors.IdempotencyAlreadyInProgressError:
            # The same request is being processed right now (a concurrent redelivery): that run
            # records and notifies; this one reports it without a second call or notification.
            return job.outcome(
                "in_progress", reason="duplicate_in_flight", message="the same request is being processed"
            )
        except errors.IdempotencyValidationError:
            refused = job.outcome(
                "rejected",
                reason="delivery_reused",
                field="delivery_id",
                message=(
                    "this delivery id (or ticket) already carried a different request for this instance "
                    "(target, region or effective); send a new request under a new id"
                ),
            )
            return self._conclude(refused, job)
        except errors.IdempotencyPersistenceLayerError:
            raise StoreUnavailable("state store unavailable (idempotency)") from None
        finally:
            # No completion write carried them (a non-final outcome is not remembered; a failure).
            while inner.settle:
                self.store.outbox_done(inner.settle.pop())
        if ran:
            return ran[0]
        original = Outcome.from_dict(result)
        original.replay_of, original.at = original.at, utc_now()
        return original  # a replay: neither recorded nor notified again

    def _verdict(
        self,
        job: _Job,
        *,
        submit: bool = True,
        held_read: Sequence[Claim | None] = (),
        reads_reserved: bool = False,
    ) -> _Verdict:
        """Claim read, pre-check, claim, submit: the request's verdict and its claim change.

        ``held_read``: the claim, already read in this request's first round trip;
        ``reads_reserved``: the pre-check reads' tokens, already reserved in it."""
        try:
            return self._decide(job, submit=submit, held_read=held_read, reads_reserved=reads_reserved)
        finally:
            _drop_early(job)

    def _decide(
        self, job: _Job, *, submit: bool, held_read: Sequence[Claim | None], reads_reserved: bool
    ) -> _Verdict:
        if submit:
            if held_read:
                held = held_read[0]
            else:
                held = self.store.claim_of(job.request.instance_id, job.claim_account)
            if held is not None and held.owner != job.owner:
                return self._claimed(job, held), None
            if not reads_reserved:
                self._reserve_reads(job)
        now: datetime | None = None  # the backup gate's, when its read was started early
        try:
            attributes, describe_id = self._describe(job)
            verdict = None if attributes is None else self._ruled_out(job, attributes, describe_id)
            if attributes is not None and verdict is None:
                if submit:
                    # The describe leaves the upgrade possible: the backup gate's read (when the
                    # gate is on) no longer waits for the offered-versions reads' answers.
                    now = self._now()
                    policy = self.config.backup
                    self._read_early(
                        job, readiness.backup_read(job.engine, job.request.instance_id, policy, now)
                    )
                verdict = self._offered_verdict(job, attributes, describe_id)
        except CloudError as error:
            return self._cloud_failure(job, error), None
        if attributes is None:
            outcome = job.outcome(
                "rejected",
                reason="not_found",
                code="InvalidInstanceId.NotFound",
                request_id=describe_id,
                field="instance_id",
                message=f"{job.engine.name} instance {job.request.instance_id} not found in {job.region}",
            )
            return outcome, None
        if verdict is not None:
            return verdict, None
        from_version = str(attributes.get(job.engine.version_key))
        path = hops.path_to(job.engine, from_version, job.request.target_version)
        if not submit:
            preview = job.outcome(
                "submitted", from_version=from_version, reason="dry_run", message="would submit"
            )
            return (hops.as_hop(preview, path, 1) if path else preview), None
        report = gate.submission_readiness(self, job, attributes, now)  # the backup read: fails closed
        if report.verdict == "blocked":
            unread = report.only_unread()  # throttled, down or denied: come back, not a verdict
            if unread is None:
                return gate.blocked(job, report), None
            failure = self._cloud_failure(job, unread)
            failure.readiness = report.to_dict()  # which check could not be read
            return failure, None
        seconds = claim_seconds(job.engine.stuck_after_seconds, job.effective)
        claim = job.claim(utc_now())
        # A backup comes first when one is needed (CreateBackup): no upgrade token then.
        held = (
            self._claim(job, claim, seconds) if not report.needs_backup else self.store.claim(claim, seconds)
        )
        if held is not None:
            return self._claimed(job, held), None
        if report.needs_backup:
            return gate.start(self, job, claim, seconds, from_version)
        if path is None:
            outcome = self._submit(job, from_version)
        else:
            outcome = hops.submit_first(self, job, from_version, path)
        outcome.backup_id = report.fresh_backup_id
        if outcome.status == "submitted":
            accepted = claim.accepted(outcome.request_id)
            return outcome, ClaimChange("accept", job.owner, accepted, seconds, job.claim_account)
        if outcome.reason == "unknown_result":
            return outcome, None  # the upgrade may have landed: the claim stays until it expires
        return outcome, ClaimChange("release", job.owner, account_id=job.claim_account)

    def _reserve_reads(self, job: _Job) -> None:
        """The rate-limit tokens of the reads a submission makes next (describe, offered versions, the
        backup gate's), in one round trip rather than one each (issue #15); a keyed request's ride on
        its first round trip instead (``_run_once``). A read the request ends up not making (the
        describe already rules the instance out) leaves its token spent: that errs on the slow side,
        never over the limit."""
        job.tokens_due.update(
            self.cloud.reserve(
                job.engine,
                self._reads_to_reserve(job),
                job.credentials,
                job.context.deadline,
                region=job.region,
            )
        )

    def _reads_to_reserve(self, job: _Job) -> list[str]:
        """The reads whose tokens a submission reserves up front: those it makes next, not held yet."""
        engine = job.engine
        reads = [engine.describe_action, engine.gate_action, engine.available_action]
        if self.config.backup.mode != "off":
            reads.append(engine.backups_action)
        return [action for action in reads if action is not None and action not in job.tokens_due]

    def _claim(self, job: _Job, claim: Claim, seconds: int) -> Claim | None:
        """The instance's claim and, in the same round trip, the upgrade call's rate-limit token
        (that call comes next; a ``stop`` answered before it leaves the token unused). Returns the
        other holder's claim, if taken (then no token is taken)."""
        action = job.engine.upgrade_action
        take = self.cloud.take_args(
            job.engine, action, job.credentials, job.context.deadline, region=job.region
        )
        if take is None:
            return self.store.claim(claim, seconds)
        bucket, args = take
        held, reply = self.store.claim_with_token(claim, seconds, bucket, args)
        due = self.cloud.token_taken(bucket, reply) if reply is not None else None
        if due is not None:
            job.tokens_due[action] = due
        return held

    def _claimed(self, job: _Job, held: Claim) -> Outcome:
        """The instance has an accepted upgrade not finished yet: point at it, make no call."""
        by = ", ".join(
            f"{name} {value}"
            for name, value in (
                ("ticket", held.ticket_id),
                ("rollout", held.rollout_id),
                ("source", held.source),
                ("RequestId", held.request_id),
            )
            if value
        )
        what = "being submitted since" if held.state == "submitting" else "accepted at"
        upgrade = f"an upgrade to {held.to_version} ({held.effective}) {what} {held.at} ({by})"
        if held.to_version == job.request.target_version:
            return job.outcome(
                "in_progress",
                reason="upgrade_in_flight",
                request_id=held.request_id,
                upgrade=held.pointer(),
                message=f"{upgrade} is not finished; not submitted again",
            )
        return job.outcome(
            "rejected",
            reason="upgrade_in_flight",
            field="target_version",
            upgrade=held.pointer(),
            message=(
                f"{upgrade} is not finished; an upgrade to {job.request.target_version} is refused "
                "until it is"
            ),
        )

    def _call(self, job: _Job, action: str, params: Mapping[str, str]) -> dict[str, Any]:
        """One of the job's cloud calls: its engine, region and credentials, retried until its deadline.
        An offered-versions read is asked once per request (``_Job.reads``); a read started early
        (``_read_early``) answers with its body or raises its error; anything else goes out."""
        key = _read_key(action, params)
        if key in job.reads:
            return job.reads[key]
        started = job.early.pop(key, None)
        if started is not None:
            return started.result()  # bounded: the call keeps to the invocation's deadline
        # Only the first call's token is held: a resubmission takes its own.
        body = self._send(job, action, params, job.tokens_due.pop(action, None))
        if action in (job.engine.gate_action, job.engine.available_action):
            job.reads[key] = body
        return body

    def _send(
        self, job: _Job, action: str, params: Mapping[str, str], token_due: float | None
    ) -> dict[str, Any]:
        return self.cloud.call_with_retries(
            job.engine,
            job.region,
            action,
            params,
            job.credentials,
            deadline=job.context.deadline,
            token_due=token_due,
        )

    def _read_early(self, job: _Job, read: tuple[str, dict[str, str]] | None) -> None:
        """Start ``read`` (action, parameters: what a later step's ``_call`` will ask) on a worker
        thread now, through the same call as the step's own: its reserved token, retries and
        deadline, the invocation's log keys. Nothing for None (the step makes no call).

        Thread-safe as used: the worker touches no job state (the token is taken from
        ``tokens_due`` here, and a backup read is not kept in ``reads``); the tea-openapi client
        is read-only per call and its ``requests`` session sends through urllib3's thread-safe
        pool; the client cache, the retry jitter and the rate limiter take their own locks."""
        if read is None:
            return
        action, params = read
        due = job.tokens_due.pop(action, None)
        run = contextvars.copy_context().run  # the invocation's and request's log keys
        job.early[_read_key(action, params)] = _early_executor().submit(
            run, self._send, job, action, params, due
        )

    def _describe(self, job: _Job) -> tuple[dict[str, Any] | None, str | None]:
        engine = job.engine
        body = self._call(
            job, engine.describe_action, {engine.id_param: job.request.instance_id, **engine.describe_extra}
        )
        items = dig(body, engine.describe_path)
        return (items[0] if items else None), body.get("RequestId")

    def _precheck(self, job: _Job, attributes: Mapping[str, Any], describe_id: str | None) -> Outcome | None:
        """The pre-check's verdict: the describe's state rules, then the offered-versions reads."""
        return self._ruled_out(job, attributes, describe_id) or self._offered_verdict(
            job, attributes, describe_id
        )

    def _ruled_out(self, job: _Job, attributes: Mapping[str, Any], describe_id: str | None) -> Outcome | None:
        """The describe's state rules (no call): upgrading, at the target, not ready, a downgrade, the mode."""
        engine, target = job.engine, job.request.target_version
        status = str(attributes.get(engine.status_key))
        current = str(attributes.get(engine.version_key))
        common = {"from_version": current, "request_id": describe_id}
        if status in engine.upgrading_statuses:
            return job.outcome(
                "in_progress", reason="already_upgrading", message=f"instance is {status}", **common
            )
        if current == target:
            return job.outcome("noop", reason="already_at_target", message=f"already at {target}", **common)
        if status not in engine.ready_statuses:
            return job.outcome(
                "rejected",
                reason="not_ready",
                message=f"instance status is {status}; needs {'/'.join(sorted(engine.ready_statuses))}",
                **common,
            )
        try:
            downgrade = version_key(current) > version_key(target)
        except ValueError:
            downgrade = False
        if downgrade:
            return job.outcome(
                "rejected",
                reason="downgrade",
                field="target_version",
                message=f"{target} is older than the current {current}; major versions only go up",
                **common,
            )
        if engine.modes is not None:
            verdict = engine.modes.of(attributes, current)
            if verdict.mode is None:
                return job.outcome(
                    "rejected",
                    reason="unknown_mode",
                    field="target_version",
                    message=(
                        f"cannot tell the deployment mode, and upgrades never cross it: {verdict.why}; "
                        "check the instance in the console"
                    ),
                    **common,
                )
            if target not in verdict.targets:
                return job.outcome(
                    "rejected",
                    reason="not_offered",
                    field="target_version",
                    message=(
                        f"{target} is not offered: this {engine.label} instance is {verdict.why}, which "
                        f"upgrades only to {' / '.join(verdict.targets)}"
                    ),
                    **common,
                )
        return None

    def _offered_verdict(
        self, job: _Job, attributes: Mapping[str, Any], describe_id: str | None
    ) -> Outcome | None:
        """The offered-versions reads' verdict (DescribeEngineVersion, DescribeAvailableEngineVersion)."""
        engine, target = job.engine, job.request.target_version
        current = str(attributes.get(engine.version_key))
        if engine.gate_action:
            body = self._call(job, engine.gate_action, {engine.id_param: job.request.instance_id})
            if api_bool(body.get(engine.gate_key)) is False:
                return job.outcome(
                    "rejected",
                    reason="not_offered",
                    field="target_version",
                    message=(
                        f"the service offers no major version upgrade for this {engine.label} instance "
                        f"({engine.gate_action}: {engine.gate_key} is false; usually already the latest)"
                    ),
                    from_version=current,
                    request_id=body.get("RequestId"),
                )
        if engine.available_action:
            body = self._call(job, engine.available_action, {engine.id_param: job.request.instance_id})
            offered = sorted({str(v) for v in dig(body, engine.available_path)}, key=_version_order)
            path = hops.path_to(engine, current, target)
            if path is not None:  # several majors ahead: a chain of hops (dbupgrade.hops)
                refused = hops.refusal(engine, path, offered, self.config.max_hops)
            else:
                refused = _not_offered(engine, current, target, offered) if target not in offered else None
            if refused is not None:
                return job.outcome(
                    "rejected",
                    reason="not_offered",
                    field="target_version",
                    message=refused,
                    from_version=current,
                    request_id=body.get("RequestId"),
                )
        return None

    def _submit(self, job: _Job, from_version: str) -> Outcome:
        engine = job.engine
        params = {
            engine.id_param: job.request.instance_id,
            engine.version_param: job.request.target_version,
            engine.effective_param: engine.effective_values[job.effective],
        }
        for _ in range(RECONCILE_ROUNDS):
            stopped = job.stop() if job.stop is not None else None
            if stopped is not None:
                reason, why = stopped
                return job.outcome(
                    "halted", reason=reason, from_version=from_version, message=f"not upgraded: {why}"
                )
            try:
                body = self._call(job, engine.upgrade_action, params)
            except CloudError as error:
                if not error.ambiguous:
                    return self._cloud_failure(job, error, from_version=from_version)
                reconciled = self._reconcile(job, from_version, error)
                if reconciled is not None:
                    return reconciled
                continue  # the describe proves the call did not land: resubmitting is safe
            return job.outcome(
                "submitted",
                from_version=from_version,
                request_id=body.get("RequestId"),
                message=f"upgrade to {job.request.target_version} submitted ({job.effective})",
            )
        unsent = CloudError("ConnectionError", "the upgrade call kept failing before it was processed")
        return self._cloud_failure(job, unsent, from_version=from_version)

    def _reconcile(self, job: _Job, from_version: str, error: CloudError) -> Outcome | None:
        """After a lost reply: look before resubmitting. None means "it did not land"."""
        logger.warning("upgrade reply lost; describing before any resubmission", extra={"code": error.code})
        try:
            attributes, describe_id = self._describe(job)
        except CloudError as describe_error:
            return job.outcome(
                "failed",
                reason="unknown_result",
                code=describe_error.code,
                from_version=from_version,
                message="the upgrade reply was lost and the instance could not be described",
            )
        if attributes is None:
            return None
        status = str(attributes.get(job.engine.status_key))
        current = str(attributes.get(job.engine.version_key))
        if status in job.engine.upgrading_statuses or current == job.request.target_version:
            return job.outcome(
                "submitted",
                from_version=from_version,
                request_id=describe_id,
                reason="reconciled",
                message=f"the upgrade reply was lost; the instance is {status} at {current}",
            )
        if status in job.engine.ready_statuses and current == from_version:
            if job.effective == "maintenance_window":
                # An upgrade booked for the window shows nothing until the window opens, so
                # "unchanged" proves nothing: a human checks rather than risk a second booking.
                return job.outcome(
                    "failed",
                    reason="unknown_result",
                    code=error.code,
                    from_version=from_version,
                    message="the upgrade reply was lost; a maintenance-window booking is not visible yet",
                )
            return None
        return job.outcome(
            "failed",
            reason="unknown_result",
            code=error.code,
            from_version=from_version,
            message=f"the upgrade reply was lost and the instance is {status} at {current}",
        )

    def _cloud_failure(self, job: _Job, error: CloudError, *, from_version: str | None = None) -> Outcome:
        """The outcome of a call that failed for good (``CloudError`` names the classes).

        None of them is final (``Outcome.final``): the next delivery of the request tries again.
        """
        common: dict[str, Any] = {
            "code": error.code,
            "request_id": error.request_id,
            "from_version": from_version,
        }
        if error.instance_not_found:
            return job.outcome(
                "rejected",
                reason="not_found",
                field="instance_id",
                message=f"{job.engine.name} instance {job.request.instance_id} not found in {job.region}",
                **common,
            )
        if error.configuration:
            return job.outcome(
                "failed", reason="configuration", message=error.explain(job.request.instance_id), **common
            )
        if error.busy:
            return job.outcome(
                "failed",
                reason="instance_busy",
                message=f"instance busy with another task; try again later ({error.code})",
                **common,
            )
        if error.transient:
            return job.outcome("failed", reason="retries_exhausted", message=error.message, **common)
        return job.outcome("failed", reason="api_error", message=error.message, **common)

    # -- the one exit: record and notify --------------------------------------------------------

    def _conclude(
        self,
        outcome: Outcome,
        job: _Job | None = None,
        context: InvocationContext | None = None,
        *,
        claim: ClaimChange | None = None,
    ) -> Outcome:
        """Record and notify a real request's verdict; a dry run is a preview, neither recorded nor
        notified (nothing happened), whatever its verdict."""
        if outcome.dry_run:
            return outcome
        ctx = job.context if job is not None else context
        answers = job.answers if job is not None and outcome.final else None
        self._record(
            outcome, ctx, claim=claim, settle=job.settle if job is not None else None, answers=answers
        )
        return outcome

    def _record(
        self,
        outcome: Outcome,
        ctx: InvocationContext | None,
        *,
        claim: ClaimChange | None = None,
        follows: Outcome | None = None,
        settle: list[str] | None = None,
        answers: tuple[str, int] | None = None,
    ) -> Outcome | None:
        """One store write (record, followed upgrade, in-flight index, outbox entry, claim), then
        the publish: the entry leaves the outbox once MNS accepted it, else it is due for a drain.
        Exactly one notification per outcome, even if this instance dies right after the write."""
        gate.attach_rollback(outcome)
        message = outcome.notification()
        finished = self.store.finish(
            outcome,
            message=message if self.notifier.enabled else None,
            claim=claim,
            follows=follows,
            answers=answers,
        )
        if not finished.written:
            logger.info("outcome superseded by a newer one; not recorded", extra={"event": outcome.event})
            return None
        logger.info("outcome", extra={"outcome": message})
        if finished.entry is not None:
            credentials = self._notify_credentials(ctx)
            delivery = self.notifier.publish(message, credentials=credentials, context=ctx)
            if delivery is Delivery.RETRY:
                self.store.outbox_due(finished.entry)
                logger.warning("notification kept in the outbox", extra={"event": outcome.event})
            elif settle is not None:
                settle.append(finished.entry)  # removed with the idempotency completion write
            else:
                self.store.outbox_done(finished.entry)
            if delivery is Delivery.REFUSED:
                # Resending cannot help: keep it apart for an operator (the tracker's drain does the same).
                kept = self.store.set_aside({"message": message}, "refused by MNS")
                logger.error(
                    "notification set aside: MNS refused it for good",
                    extra={"event": outcome.event, "set_aside": kept},
                )
        return outcome

    def _rejected_input(self, error: InvalidRequest, request: UpgradeRequest) -> Outcome:
        instance_id, target = request.instance_id, request.target_version
        engine = engine_for_instance(instance_id)
        return Outcome(
            status="rejected",
            instance_id=instance_id or "unknown",
            to_version=target or "unknown",
            engine=engine.name if engine else None,
            region=request.region,
            ticket_id=request.ticket_id,
            rollout_id=request.rollout_id,
            source=request.source,
            correlation_id=request.correlation_id,
            reason="invalid_request",
            code="InvalidRequest",
            field=error.field,
            dry_run=request.dry_run,
            message=str(error),
        )

    def _notify_credentials(self, ctx: InvocationContext | None) -> Credentials | None:
        credentials = self.cloud.credentials(ctx.credentials if ctx else None)
        if credentials is not None or not self.notifier.enabled:
            return credentials
        try:  # the default chain (ECS RAM role, profile...) - MNS's SDK needs explicit keys
            from alibabacloud_credentials.client import Client as CredentialClient

            found = CredentialClient().get_credential()
        except Exception as exc:
            logger.warning("no credentials for MNS", extra={"error": type(exc).__name__})
            return None
        register_secret(found.access_key_secret)
        register_secret(found.security_token)
        return Credentials(found.access_key_id, found.access_key_secret, found.security_token)

    def _probe_store(self) -> None:
        """One round trip that proves the store up (StoreUnavailable if not) before any cloud call.

        Delivering the outbox is the tracker's job, off the request's path: a request never waits
        for old notifications to be published.
        """
        self.store.outbox_size()

    def _list_instances(
        self,
        engine: Engine,
        region: str,
        tags: dict[str, Any],
        credentials: Credentials | None,
        deadline: float,
    ) -> list[dict[str, Any]]:
        """Every page of the list call, once per list variant (Dds: replica sets, then sharded clusters)."""
        items: dict[str, dict[str, Any]] = {}
        for variant in engine.list_variants:
            params: dict[str, str] = {"PageSize": str(engine.list_page_size), **variant}
            for index, (key, value) in enumerate(sorted(tags.items()), start=1):
                params[f"Tag.{index}.Key"] = str(key)
                params[f"Tag.{index}.Value"] = str(value)
            for item in self._pages(engine, region, params, credentials, deadline):
                items.setdefault(str(item.get(engine.id_key)), item)
        return list(items.values())

    def _pages(
        self,
        engine: Engine,
        region: str,
        params: dict[str, str],
        credentials: Credentials | None,
        deadline: float,
    ) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        page = 1
        while True:
            params["PageNumber"] = str(page)
            body = self.cloud.call_with_retries(
                engine, region, engine.list_action, params, credentials, deadline=deadline
            )
            batch = dig(body, engine.list_path)
            items.extend(batch)
            total = int(body.get("TotalCount") or 0)
            if not batch or len(items) >= total or len(batch) < engine.list_page_size:
                return items
            page += 1


def _read_key(action: str, params: Mapping[str, str]) -> ReadKey:
    return action, tuple(sorted((k, str(v)) for k, v in params.items()))


def _early_executor() -> Executor:
    """The early reads' threads, started on the first early read: a cold start does not pay for them."""
    global _early_pool
    with _early_pool_lock:
        if _early_pool is None:
            from concurrent.futures import ThreadPoolExecutor

            _early_pool = ThreadPoolExecutor(EARLY_READ_WORKERS, thread_name_prefix="dbupgrade-early-read")
        return _early_pool


def _drop_early(job: _Job) -> None:
    """The reads started early that the request ended without (refused before the backup gate, a
    failed offered-versions read): waited for, within the invocation's deadline, so none outlives
    the invocation or logs into the next; their answers and errors dropped."""
    while job.early:
        _, started = job.early.popitem()
        wait([started], timeout=max(0.0, job.context.deadline - time.monotonic()))


def _version_order(version: str) -> tuple[int, ...]:
    try:
        return version_key(version)
    except ValueError:
        return (0,)


def _not_offered(engine: Engine, current: str, target: str, offered: list[str]) -> str:
    """Why ``target`` is not in the offered list, naming the next hop when the API offers one."""
    if not offered:
        return f"{target} is not offered: the service offers no major version upgrade for this instance"
    nearest = offered[0]
    if engine.one_hop and _version_order(target) > _version_order(nearest):
        return (
            f"{target} is not offered: {engine.label} upgrades one major version at a time; "
            f"the next hop from {current} is {nearest}"
        )
    return f"{target} is not offered; offered: {', '.join(offered)}"


def tag_dict(raw: Any) -> dict[str, str]:
    """Tags as the APIs render them ({"Tag": [{"Key", "Value"}]}, a list, or a plain object)."""
    if isinstance(raw, Mapping) and "Tag" in raw:
        raw = raw["Tag"]
    if isinstance(raw, list):
        return {str(t.get("Key")): str(t.get("Value")) for t in raw if isinstance(t, Mapping)}
    if isinstance(raw, Mapping):
        return {str(k): str(v) for k, v in raw.items()}
    return {}


def _tags_match(raw: Any, wanted: Mapping[str, Any]) -> bool:
    have = tag_dict(raw)
    return all(have.get(str(k)) == str(v) for k, v in wanted.items())


def _short_text(value: Any) -> str | None:
    """A raw string field as a rejected outcome keeps it: at most ``TICKET_MAX`` characters."""
    return value[:TICKET_MAX] if isinstance(value, str) else None
