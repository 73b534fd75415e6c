"""Contract: HTTP triggers on ``/2016-08-15/proxy/...``, called with a plain HTTP client.

FC 2.0 functions get a WSGI call; ``runtime: python3.12`` functions get FC 3.0's HTTP event JSON
and answer with ``{statusCode, headers, body, isBase64Encoded}``.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
import requests

from tests.conftest import DEFAULT_SEED

PROBE = "tests/contract/fixtures/fc_probe"


def probe(name: str, handler: str, **options: Any) -> dict[str, Any]:
    return {"service": "probe", "name": name, "code_uri": PROBE, "handler": handler, "http": True, **options}


SEED = {
    "accounts": [DEFAULT_SEED["accounts"][0]],
    "functions": [
        probe("web", "index.wsgi"),
        probe("web3", "index.http_event", runtime="python3.12"),
        probe("broken", "index.handler"),  # an event handler behind an HTTP trigger fails under WSGI
        {"service": "probe", "name": "event", "code_uri": PROBE, "handler": "index.handler"},
    ],
}


@pytest.fixture
def lc(make_localcloud):
    return make_localcloud(SEED)


def test_wsgi_handler_sees_the_request_and_shapes_the_reply(lc):
    reply = requests.post(
        f"{lc.url}/2016-08-15/proxy/probe/web/upgrades/r-1?dry_run=true",
        data=b'{"instance_id": "r-1"}',
        headers={"X-Probe": "hello", "Content-Type": "application/json"},
        timeout=30,
    )

    assert reply.status_code == 201
    assert reply.headers["X-Probe-Reply"] == "yes"
    assert reply.headers["Content-Type"] == "application/json"
    seen = reply.json()
    assert seen == {
        "method": "POST",
        "path": "/upgrades/r-1",
        "query": "dry_run=true",
        "body": '{"instance_id": "r-1"}',
        "probe_header": "hello",
        "content_type": "application/json",
        "request_id": reply.headers["x-fc-request-id"],
        "service": "probe",
    }


def test_trigger_root_path_is_slash(lc):
    reply = requests.get(f"{lc.url}/2016-08-15/proxy/probe/web", timeout=30)

    assert reply.json()["path"] == "/"


def test_fc3_http_event_and_response_struct(lc):
    reply = requests.put(
        f"{lc.url}/2016-08-15/proxy/probe/web3/a%20b?p=1&p=2",
        data=b"plain text",
        headers={"X-Probe": "three", "Content-Type": "text/plain"},
        timeout=30,
    )

    assert reply.status_code == 202
    seen = reply.json()
    assert seen == {
        "rawPath": "/a%20b",
        "method": "PUT",
        "query": {"p": "1,2"},
        "body": "plain text",
        "isBase64Encoded": False,
        "probe_header": "three",
        "request_id": reply.headers["x-fc-request-id"],
        "has_credentials": False,
    }


def test_fc3_binary_body_arrives_base64_encoded(lc):
    payload = bytes(range(256))

    reply = requests.post(
        f"{lc.url}/2016-08-15/proxy/probe/web3/blob",
        data=payload,
        headers={"Content-Type": "application/octet-stream"},
        timeout=30,
    )

    seen = reply.json()
    assert seen["isBase64Encoded"] is True
    assert base64.b64decode(seen["body"]) == payload


def test_a_failing_http_function_is_502_with_the_error(lc):
    reply = requests.get(f"{lc.url}/2016-08-15/proxy/probe/broken/", timeout=30)

    assert reply.status_code == 502
    assert reply.headers["x-fc-error-type"] == "UnhandledInvocationError"
    assert reply.json()["errorType"] == "TypeError"


def test_function_without_http_trigger_is_404_json(lc):
    reply = requests.get(f"{lc.url}/2016-08-15/proxy/probe/event/", timeout=30)

    assert reply.status_code == 404
    assert reply.json()["ErrorCode"] == "TriggerNotFound"


def test_http_calls_are_recorded_and_draw_their_own_faults(lc):
    lc.cloud.faults.configure({"rules": [{"product": "fc", "action": "HttpTrigger", "throttle_rate": 1.0}]})

    throttled = requests.get(f"{lc.url}/2016-08-15/proxy/probe/web/x", timeout=30)

    assert throttled.status_code == 429
    assert throttled.json()["ErrorCode"] == "ResourceThrottled"
    [call] = requests.get(f"{lc.url}/_localcloud/calls", params={"product": "fc"}, timeout=10).json()["calls"]
    assert (call["action"], call["params"]["path"], call["fault"]) == ("HttpTrigger", "/x", "throttle")


def test_unknown_fc_path_is_a_json_error(lc):
    reply = requests.get(f"{lc.url}/2016-08-15/services", timeout=30)

    assert reply.status_code == 400
    assert reply.json()["ErrorCode"] == "PathNotSupported"
    assert json.loads(reply.text)["RequestId"]
