"""Campaigns (issue #16): a rollout with a deadline (``--apply-by``) and waves from a tag (``--waves-by-tag``).

- ``parse_apply_by``: an ISO date or datetime, UTC; a date in the past is refused.
- ``parse_wave_tag`` / ``read_tags`` / ``waves_by_tag``: ``env=dev,staging,prod`` - wave n holds the
  targets whose tag ``env`` is the nth value, in that order (the Atlas pattern: maintenance waves
  from environment tags). The tags are the list APIs' ``Tags`` (R-kvstore ``DescribeInstances``,
  Dds ``DescribeDBInstances``), read for the whole manifest through ``dbupgrade.fleet``. A target
  whose tag has another value or none is refused, counted per value, unless the operator excludes
  them explicitly (``exclude_unmatched``): a DBA who names the waves means every target to be in
  one, and an untagged prod instance silently riding along (or silently left behind) is what a
  deadline campaign must not do.
- ``projection``: whether the date is reachable at the rollout's pace (its waves, in-flight limits
  and release window), for ``rollout plan``.
- ``burndown``: per location (account x region) and in total, done / remaining / failed-or-halted
  (they add up to the targets), the pace the date needs against the pace so far, days left.
- ``send_digests``: the tracker's one ``campaign.digest`` notification per campaign per (UTC) day.

Buckets of the burn-down: ``done`` = completed or noop (at the target); ``remaining`` = pending,
released or submitted (this rollout still works on them); ``failed_or_halted`` = failed, stuck,
rejected, halted, and deferred (not upgraded, and this rollout will not try again: an operator
re-runs them). The pace needed counts every target not done, since the deadline is the fleet's.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from dbupgrade import clock
from dbupgrade.config import Window
from dbupgrade.context import adapt_context
from dbupgrade.engines import ENGINES
from dbupgrade.hops import EXPECTED_HOP_SECONDS
from dbupgrade.logging import logger
from dbupgrade.model import InvalidRequest
from dbupgrade.rollouts.model import IN_FLIGHT_STATES, RolloutMeta, RolloutSpec, TargetState, location_of

if TYPE_CHECKING:
    from dbupgrade.usecase import Upgrader

DAY_SECONDS = 86400.0
DIGEST_EVENT = "campaign.digest"  # its MessageTag too (15 characters: within MNS's 16)
# A digest's day claim outlives its day: a tick that runs late on day D still finds D claimed.
DIGEST_CLAIM_SECONDS = 3 * 86400
DIGEST_DRAIN_SECONDS = 10  # how long the tick's hook may spend delivering the digests it queued
# Assumption: one upgrade (one hop) takes about an hour. No API states an upgrade's length before it
# runs (hops.EXPECTED_HOP_SECONDS says why); the plan's projection uses it until the rollout has
# measured its own (the status's pace so far replaces it).
EXPECTED_UPGRADE_SECONDS = EXPECTED_HOP_SECONDS
# The tracker looks once a minute: a released wave's next round starts at the tick after its end.
TICK_SECONDS = 60.0
NO_VALUE = "(none)"  # how the refusal and the plan name targets without the tag
DONE_STATES = frozenset({"completed", "noop"})


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_apply_by(text: str, now: float | None = None) -> str:
    """``--apply-by``: ``2026-09-25`` (that day's 00:00 UTC: "by" the date) or an ISO datetime (UTC
    unless it names its offset); refused when not after ``now``. Returns it as RFC 3339 UTC.

    >>> parse_apply_by("2030-09-25", now=0)
    '2030-09-25T00:00:00Z'
    >>> parse_apply_by("2030-09-25T08:00:00+08:00", now=0)
    '2030-09-25T00:00:00Z'
    """
    raw = text.strip()
    try:
        moment = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidRequest(
            "--apply-by", f"expected an ISO date or datetime (2026-09-25, 2026-09-25T12:00Z), got {raw!r}"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    epoch = moment.timestamp()
    current = clock.now() if now is None else now
    if epoch <= current:
        raise InvalidRequest(
            "--apply-by", f"{_iso(epoch)} is in the past (now {_iso(current)}): give a later date"
        )
    return _iso(epoch)


def parse_wave_tag(text: str) -> tuple[str, tuple[str, ...]]:
    """``--waves-by-tag KEY=v1,v2,...`` -> ``(key, values)``, each value once.

    >>> parse_wave_tag("env=dev, staging,prod")
    ('env', ('dev', 'staging', 'prod'))
    """
    key, sep, rest = text.partition("=")
    values = tuple(v.strip() for v in rest.split(","))
    if not sep or not key.strip() or not all(values):
        raise InvalidRequest(
            "--waves-by-tag", f"expected KEY=v1,v2,... (e.g. env=dev,staging,prod), got {text!r}"
        )
    repeated = sorted({v for v in values if values.count(v) > 1})
    if repeated:
        raise InvalidRequest("--waves-by-tag", f"{', '.join(repeated)} named twice: each value is one wave")
    return key.strip(), values


def read_tags(
    upgrader: Upgrader, targets: Sequence[Mapping[str, Any]], context: Any = None, label: str | None = None
) -> dict[str, dict[str, str]]:
    """instance id -> its tags, as the list APIs return them (``dbupgrade.fleet``: 30 Redis IDs a call,
    a region's MongoDB listing 100 a page), per (engine, region, account); a member account's through
    its role. An instance not found has no tags; a failed read raises its ``CloudError`` (a wave plan
    is not made from a partial reading)."""
    from dbupgrade.fleet import read_instances
    from dbupgrade.usecase import tag_dict

    ctx = adapt_context(context)
    groups: dict[tuple[str, str, str], list[str]] = {}
    for target in targets:
        region = str(target.get("region") or upgrader.config.region or ctx.region)
        key = (str(target["engine"]), region, str(target.get("account_id") or ""))
        groups.setdefault(key, []).append(str(target["instance_id"]))
    tags: dict[str, dict[str, str]] = {}
    for (engine, region, account), instance_ids in groups.items():
        credentials = upgrader.credentials_for(account or None, ctx, region, label)
        reads = read_instances(
            upgrader.cloud, ENGINES[engine], region, instance_ids, credentials, deadline=ctx.deadline
        )
        for instance_id, read in reads.items():
            if read.error is not None:
                raise read.error
            tags[instance_id] = tag_dict((read.attributes or {}).get("Tags"))
    return tags


def waves_by_tag(
    targets: Sequence[dict[str, Any]],
    tags: Mapping[str, Mapping[str, str]],
    key: str,
    values: Sequence[str],
    *,
    exclude_unmatched: bool = False,
) -> tuple[list[dict[str, Any]], tuple[int, ...], dict[str, Any]]:
    """The targets in release order, the cumulative wave sizes, and the wave tag plan the rollout keeps.

    Wave n holds the targets whose tag ``key`` is ``values[n-1]`` (their manifest order kept within
    it); a value no target has makes no wave (the plan lists it with 0). Targets with another value or
    none: refused (``InvalidRequest``, one line: how many, which values), or left out when
    ``exclude_unmatched`` (the plan's ``excluded`` counts them per value and names them).
    """
    by_value: dict[str, list[dict[str, Any]]] = {value: [] for value in values}
    unmatched: dict[str, list[str]] = {}
    for target in targets:
        value = (tags.get(target["instance_id"]) or {}).get(key)
        if value in by_value:
            by_value[value].append(target)
        else:
            unmatched.setdefault(NO_VALUE if value is None else value, []).append(target["instance_id"])
    if unmatched and not exclude_unmatched:
        count = sum(len(ids) for ids in unmatched.values())
        which = ", ".join(f"{value}: {len(ids)}" for value, ids in sorted(unmatched.items()))
        raise InvalidRequest(
            "--waves-by-tag",
            f"{count} target(s) have {key} outside {','.join(values)} ({which}); tag them, name the value "
            "as a wave, or leave them out with --exclude-unmatched",
        )
    ordered = [target for value in values for target in by_value[value]]
    if not ordered:
        raise InvalidRequest("--waves-by-tag", f"no target has {key} in {','.join(values)}")
    sizes: list[int] = []
    waves: list[dict[str, Any]] = []
    for value in values:
        count = len(by_value[value])
        if count:
            sizes.append((sizes[-1] if sizes else 0) + count)
        waves.append({"value": value, "targets": count, "wave": len(sizes) if count else None})
    plan = {
        "key": key,
        "values": list(values),
        "waves": waves,
        "excluded": {value: len(ids) for value, ids in sorted(unmatched.items())},
        "excluded_ids": sorted(i for ids in unmatched.values() for i in ids),
    }
    return ordered, tuple(sizes), plan


def kept_waves(spec: RolloutSpec, kept: set[str]) -> tuple[tuple[int, ...], dict[str, Any]]:
    """The waves by tag of ``spec`` once only the ``kept`` targets remain (``--exclude-owned``): each
    wave keeps its value; one left empty makes no wave."""
    plan = dict(spec.wave_tags or {})
    counts = []
    for start, end in zip((0, *spec.waves), spec.waves, strict=False):
        counts.append(sum(t["instance_id"] in kept for t in spec.targets[start:end]))
    sizes: list[int] = []
    waves = []
    for entry in plan.get("waves", []):
        count = counts[entry["wave"] - 1] if entry["wave"] else 0
        if count:
            sizes.append((sizes[-1] if sizes else 0) + count)
        waves.append({**entry, "targets": count, "wave": len(sizes) if count else None})
    plan["waves"] = waves
    return tuple(sizes), plan


def wave_text(plan: Mapping[str, Any]) -> str:
    """What ``wave_text`` records for waves by tag: ``env=dev,staging,prod``."""
    return f"{plan['key']}={','.join(plan['values'])}"


def _open_seconds(window: Window | None) -> float:
    if window is None:
        return DAY_SECONDS
    start = window.start.hour * 3600 + window.start.minute * 60
    end = window.end.hour * 3600 + window.end.minute * 60
    return float((end - start) % DAY_SECONDS) or DAY_SECONDS


def projection(
    waves: Sequence[int],
    locations: Mapping[str, int],
    *,
    apply_by: str | None,
    max_in_flight: int | None = None,
    max_in_flight_per_location: int | None = None,
    window: Window | None = None,
    upgrade_seconds: float = EXPECTED_UPGRADE_SECONDS,
    now: float | None = None,
) -> dict[str, Any]:
    """How long the rollout would take at its pace, and whether ``apply_by`` is reachable.

    Each wave runs in rounds of as many upgrades as the in-flight limits allow at once (the whole
    wave without a limit; per location, its limit times its locations), each round one upgrade's time
    plus a tracker tick; the next wave starts once the one before ended. Inside a release window only
    its open hours of each day count. ``locations``: location -> targets.
    """
    at_once = sum(
        min(count, max_in_flight_per_location) if max_in_flight_per_location else count
        for count in locations.values()
    )
    if max_in_flight is not None:
        at_once = min(at_once, max_in_flight)
    at_once = max(1, at_once)
    sizes = [b - a for a, b in zip((0, *waves), waves, strict=False)]
    rounds = sum(math.ceil(size / at_once) for size in sizes)
    work = rounds * (upgrade_seconds + TICK_SECONDS)
    open_seconds = _open_seconds(window)
    days = work / open_seconds  # open days it takes: each calendar day gives ``open_seconds``
    seconds = math.floor(days) * DAY_SECONDS + (days % 1) * open_seconds if window else work
    current = clock.now() if now is None else now
    result: dict[str, Any] = {
        "upgrades_at_once": at_once,
        "rounds": rounds,
        "upgrade_seconds": upgrade_seconds,
        "projected_days": round(seconds / DAY_SECONDS, 2),
        "projected_end": _iso(current + seconds),
        "pace_per_day": round(sum(sizes) / max(seconds / DAY_SECONDS, 1 / 24), 1),
        "apply_by": apply_by,
        "reachable": None,
    }
    if apply_by is not None:
        deadline = datetime.fromisoformat(apply_by.replace("Z", "+00:00")).timestamp()
        result["days_left"] = round((deadline - current) / DAY_SECONDS, 2)
        result["reachable"] = current + seconds <= deadline
    return result


def _bucket(state: str) -> str:
    if state in DONE_STATES:
        return "done"
    if state == "pending" or state in IN_FLIGHT_STATES:
        return "remaining"
    return "failed_or_halted"


def _pace(counts: dict[str, Any], elapsed_days: float | None, days_left: float | None) -> dict[str, Any]:
    not_done = counts["targets"] - counts["done"]
    needed = None
    if not_done == 0:
        needed = 0.0
    elif days_left is not None and days_left > 0:
        needed = round(not_done / days_left, 1)
    so_far = round(counts["done"] / elapsed_days, 1) if elapsed_days else None
    on_track = None
    if not_done == 0:
        on_track = True
    elif days_left is not None and days_left <= 0:
        on_track = False
    elif needed is not None and so_far is not None:
        on_track = so_far >= needed
    return {**counts, "pace_needed_per_day": needed, "pace_so_far_per_day": so_far, "on_track": on_track}


# The pace so far is measured once the rollout ran this long: a few minutes' rate is no pace.
PACE_MIN_SECONDS = 3600.0


def location_group(
    groups: dict[str, dict[str, Any]], target: dict[str, Any], counters: Sequence[str]
) -> dict[str, Any]:
    """The row of ``target``'s location in ``groups`` (``location_of``): its account and region, and
    each of ``counters`` at 0 when it is the location's first target."""
    location = location_of(target)
    if location not in groups:
        where = {"location": location, "account_id": target.get("account_id"), "region": target.get("region")}
        groups[location] = {**where, **dict.fromkeys(counters, 0)}
    return groups[location]


def burndown(
    spec: RolloutSpec, meta: RolloutMeta, states: Mapping[str, TargetState], now: float | None = None
) -> dict[str, Any]:
    """The campaign's burn-down: per location and in total (see the module docstring)."""
    now = clock.now() if now is None else now
    groups: dict[str, dict[str, Any]] = {}
    total = {"targets": 0, "done": 0, "remaining": 0, "failed_or_halted": 0}
    for target in spec.targets:
        group = location_group(groups, target, ("targets", "done", "remaining", "failed_or_halted"))
        bucket = _bucket(states[target["instance_id"]].state)
        for counts in (group, total):
            counts["targets"] += 1
            counts[bucket] += 1
    end = meta.finished_at or now
    elapsed = end - meta.started_at
    elapsed_days = elapsed / DAY_SECONDS if elapsed >= PACE_MIN_SECONDS else None
    days_left = None
    if spec.apply_by:
        deadline = datetime.fromisoformat(spec.apply_by.replace("Z", "+00:00")).timestamp()
        days_left = round((deadline - now) / DAY_SECONDS, 2)
    return {
        "apply_by": spec.apply_by,
        "days_left": days_left,
        "waves_by_tag": {k: v for k, v in (spec.wave_tags or {}).items() if k != "excluded_ids"} or None,
        "total": _pace(total, elapsed_days, days_left),
        "locations": [_pace(g, elapsed_days, days_left) for _, g in sorted(groups.items())],
    }


def digest_message(status: Mapping[str, Any], day: str) -> dict[str, Any]:
    """The ``campaign.digest`` notification (message v1, additive): one campaign's burn-down on ``day``."""
    return {
        "version": 1,
        "event": DIGEST_EVENT,
        "rollout_id": status["rollout_id"],
        "status": status["status"],
        "headline": status["headline"],
        "day": day,
        "wave": status["wave"],
        "waves": len(status["waves"]),
        "wave_text": status["wave_text"],
        "errors": status["errors"],
        "burndown": status["burndown"],
        "at": _iso(clock.now()),
    }


def send_digests(
    upgrader: Upgrader,
    statuses: Sequence[Mapping[str, Any]],
    context: Any = None,
    now: datetime | None = None,
) -> list[str]:
    """The tracker's hook: one ``campaign.digest`` per campaign (a rollout with ``apply_by``) per UTC
    day, from the statuses its tick's round gave. The day is claimed in the store together with the
    digest's outbox entry (``Store.claim_digest``, one script): another tick that day - at the same
    time or later - finds it claimed, and a tick that dies right after the claim leaves the digest
    in the outbox for the next drain. Returns the rollouts whose digest went into the outbox."""
    ctx = adapt_context(context)
    day = (now or clock.utcnow()).astimezone(timezone.utc).strftime("%Y-%m-%d")
    queued = []
    for status in statuses:
        burn = status.get("burndown")
        if not burn or not burn.get("apply_by"):
            continue
        message = digest_message(status, day)
        if upgrader.notifier.enabled and upgrader.store.claim_digest(
            str(status["rollout_id"]), day, message, DIGEST_CLAIM_SECONDS
        ):
            queued.append(str(status["rollout_id"]))
            logger.info("campaign digest queued", extra={"rollout_id": status["rollout_id"], "day": day})
    if queued:
        upgrader.drain_outbox(ctx, deadline=min(ctx.deadline, time.monotonic() + DIGEST_DRAIN_SECONDS))
    return queued
