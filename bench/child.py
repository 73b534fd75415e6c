"""What the benchmarks run in a fresh interpreter: ``python bench/child.py KIND RESULT_FILE [ARG]``.

The event (or request list) comes on stdin; the function's environment comes from the parent. The
child writes one JSON object to RESULT_FILE: ``answered`` (``time.monotonic()`` when the reply was
in hand: the parent started its clock just before spawning, and CLOCK_MONOTONIC is system-wide),
the reply, and the process's peak RSS. The functions' JSON logs go to stdout, which the parent
discards, as FC would ship them.

Only the standard library is imported before the measured work, and the same modules for every
kind, so the floor and the functions start from the same point.

Kinds:

- ``webhook`` / ``rollout`` / ``scheduled``: import ``functions/<name>/index.py`` as FC does, call
  its handler once with the event.
- ``floor``: import the tea-openapi client and make one ``call_api`` of the upgrade action
  (``ModifyInstanceMajorVersion`` on instance ARG) — the least any upgrade function must do.
- ``bulk``: import the rollout function and feed it every batch (a JSON list of events) in turn.
- ``warm``: the webhook warm path, in process, alternating with the raw calls it cannot avoid
  (``warm_rounds`` below); stdin is ``{"ours": [event, ...], "raw": [instance_id, ...], "warmup": n}``.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time
from types import SimpleNamespace
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
INVOCATION_TIMEOUT_SECONDS = 600


def fc_context(name: str) -> Any:
    """The FC 3.0 context's fields the functions read (credentials come from the environment)."""
    return SimpleNamespace(
        request_id=f"bench-{time.monotonic_ns()}",
        region=os.environ["DBUPGRADE_REGION"],
        account_id="9999000011112222",
        function=SimpleNamespace(name=name, timeout=INVOCATION_TIMEOUT_SECONDS, memory=128),
        service=None,
        credentials=None,
    )


def import_function(name: str) -> Any:
    sys.path.insert(0, os.path.join(ROOT, "functions", name))
    import index  # the function's own module, as FC loads it

    return index.handler


def floor_call(instance_id: str) -> dict[str, Any]:
    result: dict[str, Any] = _raw_client("ModifyInstanceMajorVersion")(instance_id)
    return result


def warm_rounds(spec: dict[str, Any]) -> dict[str, Any]:
    """Alternate one signed webhook request (-> reply) with the raw sum of what it cannot avoid.

    Raw, per round, on another fresh instance: ``call_api`` of every read the request's verdict
    needs (``spec["reads"]``: DescribeInstanceAttribute and DescribeEngineVersion, the pre-check;
    DescribeBackups when the backup gate is on, as it is by default) and ModifyInstanceMajorVersion,
    one MNS topic publish with the MNS SDK, and the three Redis round trips of a once-only record:
    claim the key (SET NX), write the outcome (one pipelined SET + LPUSH + LTRIM), complete the key
    (SET). ``spec["member"]``: the instances are a member account's, so the raw calls use that
    account's role credentials, assumed once up front (the function caches them as well); the
    publish stays the own account's. Timings in milliseconds.

    Also returns the Redis commands one warm request sends (from the server's INFO commandstats
    around the last warm-up request), so the report can say where the difference goes.
    """
    import redis
    from mns.account import Account
    from mns.topic import TopicMessage

    handler = import_function("webhook")
    store = redis.Redis.from_url(os.environ["DBUPGRADE_REDIS_URL"])
    url = os.environ["DBUPGRADE_MNS_ENDPOINT"]
    topic = Account(
        url,
        os.environ["ALIBABA_CLOUD_ACCESS_KEY_ID"],
        os.environ["ALIBABA_CLOUD_ACCESS_KEY_SECRET"],
        os.environ.get("ALIBABA_CLOUD_SECURITY_TOKEN", ""),
    ).get_topic(os.environ["DBUPGRADE_TOPIC"])
    keys = _assumed_keys() if spec.get("member") else None
    reads = [_raw_client(action, keys) for action in spec["reads"]]
    upgrade = _raw_client("ModifyInstanceMajorVersion", keys)
    body = json.dumps({"version": 1, "event": "upgrade.submitted", "message": "x" * 400})

    def ours(event: str) -> float:
        started = time.perf_counter()
        reply = handler(event.encode(), fc_context("webhook"))
        elapsed = time.perf_counter() - started
        if reply["statusCode"] != 202:
            raise RuntimeError(f"webhook answered {reply['statusCode']}: {reply['body'][:300]}")
        return elapsed * 1000

    def raw(instance_id: str) -> float:
        started = time.perf_counter()
        for read in reads:
            read(instance_id)
        upgrade(instance_id)
        topic.publish_message(TopicMessage(body, "submitted"))
        key = f"bench:idempotency:{instance_id}"
        store.set(key, "INPROGRESS", nx=True, ex=600)
        pipe = store.pipeline(transaction=True)
        pipe.set(f"bench:latest:{instance_id}", body)
        pipe.lpush(f"bench:history:{instance_id}", body)
        pipe.ltrim(f"bench:history:{instance_id}", 0, 99)
        pipe.execute()
        store.set(key, body, ex=600)
        return (time.perf_counter() - started) * 1000

    def command_counts() -> dict[str, int]:
        stats = store.info("commandstats")
        return {name.removeprefix("cmdstat_"): int(value["calls"]) for name, value in stats.items()}

    warmup = int(spec["warmup"])
    times: dict[str, list[float]] = {"ours": [], "raw": []}
    commands: dict[str, int] = {}
    for index, (event, instance_id) in enumerate(zip(spec["ours"], spec["raw"], strict=True)):
        if index == warmup - 1:
            before = command_counts()
            ours(event)
            after = command_counts()
            # INFO itself is counted once, in "after"; every other difference is the request's.
            commands = {
                k: n - before.get(k, 0) for k, n in after.items() if n - before.get(k, 0) and k != "info"
            }
            raw(instance_id)
            continue
        ours_ms = ours(event)
        raw_ms = raw(instance_id)
        if index >= warmup:
            times["ours"].append(ours_ms)
            times["raw"].append(raw_ms)
    return {"times": times, "redis_commands_per_request": commands}


# What the raw calls send besides RegionId and InstanceId: the same questions the function asks
# (the backup gate's default fresh:24 reads the sets of the last day, dbupgrade.backup).
_DAY_AGO = time.gmtime(time.time() - 24 * 3600 - 60)
_RAW_PARAMS: dict[str, dict[str, str]] = {
    "ModifyInstanceMajorVersion": {"MajorVersion": "7.0", "EffectiveTime": "Immediately"},
    "DescribeBackups": {
        "StartTime": time.strftime("%Y-%m-%dT%H:%MZ", _DAY_AGO),
        "EndTime": time.strftime("%Y-%m-%dT%H:%MZ", time.gmtime(time.time() + 60)),
        "PageSize": "30",
    },
}


def _assumed_keys() -> tuple[str, str, str]:
    """The member role's STS credentials (key id, secret, token), from one AssumeRole call."""
    body = _raw_client(
        "AssumeRole",
        version="2015-04-01",
        endpoint=os.environ["DBUPGRADE_STS_ENDPOINT"],
        extra={
            "RoleArn": f"acs:ram::{os.environ['BENCH_MEMBER_ACCOUNT_ID']}:role/dbupgrade-member",
            "RoleSessionName": "bench-raw",
        },
    )(None)
    found = body["Credentials"]
    return found["AccessKeyId"], found["AccessKeySecret"], found["SecurityToken"]


def _raw_client(
    action: str,
    keys: tuple[str, str, str] | None = None,
    *,
    version: str = "2015-01-01",
    endpoint: str | None = None,
    extra: dict[str, str] | None = None,
) -> Any:
    from alibabacloud_tea_openapi import utils_models as api
    from alibabacloud_tea_openapi.client import Client
    from alibabacloud_tea_openapi.models import Config
    from darabonba.runtime import RuntimeOptions

    key_id, secret, token = keys or (
        os.environ["ALIBABA_CLOUD_ACCESS_KEY_ID"],
        os.environ["ALIBABA_CLOUD_ACCESS_KEY_SECRET"],
        os.environ.get("ALIBABA_CLOUD_SECURITY_TOKEN"),
    )
    client = Client(
        Config(
            endpoint=(endpoint or os.environ["DBUPGRADE_KVSTORE_ENDPOINT"]).removeprefix("http://"),
            protocol="http",
            access_key_id=key_id,
            access_key_secret=secret,
            security_token=token,
            region_id=os.environ["DBUPGRADE_REGION"],
        )
    )
    params = api.Params(
        action=action,
        version=version,
        protocol="HTTPS",
        pathname="/",
        method="POST",
        auth_type="AK",
        style="RPC",
        req_body_type="formData",
        body_type="json",
    )
    fields = extra if extra is not None else _RAW_PARAMS.get(action, {})
    runtime = RuntimeOptions()

    def call(instance_id: str | None) -> dict[str, Any]:
        query = {"RegionId": os.environ["DBUPGRADE_REGION"], **fields}
        if instance_id is not None:
            query["InstanceId"] = instance_id
        return dict(client.call_api(params, api.OpenApiRequest(query=query), runtime)["body"])

    return call


def main() -> int:
    kind, result_file = sys.argv[1], sys.argv[2]
    stdin = sys.stdin.buffer.read()
    result: dict[str, Any] = {"kind": kind}
    if kind == "floor":
        result["reply"] = floor_call(sys.argv[3])
    elif kind == "warm":
        result.update(warm_rounds(json.loads(stdin)))
    elif kind == "bulk":
        handler = import_function("rollout")
        batches = json.loads(stdin)
        started = time.monotonic()
        statuses: dict[str, int] = {}
        for batch in batches:
            reply = json.loads(handler(batch.encode(), fc_context("rollout")))
            for outcome in reply["outcomes"]:
                statuses[outcome["status"]] = statuses.get(outcome["status"], 0) + 1
        result["seconds"] = time.monotonic() - started
        result["statuses"] = statuses
    else:
        handler = import_function(kind)
        if kind == "webhook":
            reply = handler(stdin, fc_context(kind))
            result["reply"] = {"status": reply["statusCode"], "body": json.loads(reply["body"])}
        else:
            result["reply"] = json.loads(handler(stdin, fc_context(kind)))
    result["answered"] = time.monotonic()
    result["peak_rss_kib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with open(result_file, "w") as out:
        json.dump(result, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
