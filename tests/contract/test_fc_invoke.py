"""Contract: the official aliyun-fc2 client against localcloud's InvokeFunction.

Each test runs the probe function (tests/contract/fixtures/fc_probe) in real worker processes.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import fc2
import pytest
import requests
from fc2.fc_exceptions import FcError

from localcloud.cloud import Cloud
from localcloud.server import start_in_thread
from tests.conftest import AK_ID, AK_SECRET, DEFAULT_SEED, ROOT, TEST_ACCOUNT

PROBE = "tests/contract/fixtures/fc_probe"
DEMO_ACCOUNT = DEFAULT_SEED["accounts"][0]  # has an STS credential: the functions' service role
STS = DEMO_ACCOUNT["sts"][0]


def probe(name: str, **options: Any) -> dict[str, Any]:
    return {"service": "probe", "name": name, "code_uri": PROBE, "handler": "index.handler"} | options


SEED = {
    "accounts": [DEMO_ACCOUNT],
    "queues": ["probe-failures"],
    "functions": [
        probe("echo", timeout=5, env={"PROBE_OWN": "own-${LOCALCLOUD_HOST}"}),
        probe("echo3", runtime="python3.12"),
        probe("slow", timeout=0.5),
        probe("flaky", max_async_retry_attempts=2, on_failure={"queue": "probe-failures"}),
        probe("pool", max_instances=3),
        probe("unloadable", handler="no_such_module.handler"),
    ],
    "function_env": {"PROBE_URL": "${LOCALCLOUD_URL}", "PROBE_REGION_HINT": "seed"},
}


@pytest.fixture
def lc(make_localcloud):
    return make_localcloud(SEED)


@pytest.fixture
def client(lc) -> fc2.Client:
    return fc2.Client(endpoint=lc.url, accessKeyID=AK_ID, accessKeySecret=AK_SECRET, Timeout=30)


def call(client: fc2.Client, function: str, event: dict[str, Any], **kwargs: Any) -> Any:
    return client.invoke_function("probe", function, payload=json.dumps(event).encode(), **kwargs)


def test_sync_invoke_gives_the_function_bytes_and_an_fc2_context(lc, client):
    reply = call(client, "echo", {"action": "echo"})
    seen = json.loads(reply.data)

    assert seen["event_type"] == "bytes"
    assert seen["context"]["request_id"] == reply.headers["x-fc-request-id"]
    assert seen["context"]["service"] == {"name": "probe", "qualifier": "LATEST"}
    assert seen["context"]["function"] == {"name": "echo", "handler": "index.handler"}
    assert seen["context"]["account_id"] == DEMO_ACCOUNT["account_id"]
    assert seen["context"]["region"] == "cn-hangzhou"
    assert seen["context"]["credentials"] == {
        "access_key_id": STS["access_key_id"],
        "security_token": STS["security_token"],
        "has_secret": True,
    }


def test_instance_environment_substitutes_localcloud_and_mounts_the_layer(lc, client):
    seen = json.loads(call(client, "echo", {"action": "echo"}).data)

    assert seen["env"]["PROBE_URL"] == lc.url
    assert seen["env"]["PROBE_OWN"] == f"own-127.0.0.1:{lc.port}"
    assert seen["env"]["FC_FUNCTION_NAME"] == "echo"
    assert "ALIBABA_CLOUD_ACCESS_KEY_ID" not in seen["env"]  # FC 2.0: credentials live in the context
    assert Path(seen["cwd"]) == ROOT / PROBE
    assert seen["pythonpath"] == [str(ROOT / PROBE), str(ROOT / "layers/dbupgrade/python")]


def test_operator_variables_of_the_localcloud_process_override_the_seed(make_localcloud, monkeypatch):
    monkeypatch.setenv("DBUPGRADE_TOPIC", "operator-topic")
    monkeypatch.setenv("UNRELATED_SECRET", "not for functions")
    seed = {**SEED, "function_env": {"DBUPGRADE_TOPIC": "seed-topic", "DBUPGRADE_WINDOW": "02:00-05:00"}}
    lc = make_localcloud(seed)
    client = fc2.Client(endpoint=lc.url, accessKeyID=AK_ID, accessKeySecret=AK_SECRET)

    env = json.loads(call(client, "echo", {"action": "echo"}).data)["env"]

    assert env["DBUPGRADE_TOPIC"] == "operator-topic"
    assert env["DBUPGRADE_WINDOW"] == "02:00-05:00"
    assert "UNRELATED_SECRET" not in env


def test_instance_stays_warm_between_invocations(client):
    first = json.loads(call(client, "echo", {"action": "echo"}).data)
    second = json.loads(call(client, "echo", {"action": "echo"}).data)

    assert second["pid"] == first["pid"]
    assert second["warm_invocations"] == first["warm_invocations"] + 1


def test_qualifier_reaches_the_context(client):
    seen = json.loads(call(client, "echo", {"action": "echo"}, qualifier="prod").data)

    assert seen["context"]["service"]["qualifier"] == "prod"


def test_fc3_runtime_moves_credentials_to_the_environment(client):
    seen = json.loads(call(client, "echo3", {"action": "echo"}).data)

    assert seen["context"]["has_credentials"] is False
    assert seen["context"]["has_service"] is False
    assert seen["env"]["ALIBABA_CLOUD_ACCESS_KEY_ID"] == STS["access_key_id"]


def test_function_error_is_200_with_the_error_type_header(lc, client):
    with pytest.raises(FcError) as caught:
        call(client, "echo", {"action": "raise"})

    assert caught.value.status_code == 200
    error = json.loads(caught.value.message)
    assert error["errorType"] == "ValueError"
    assert error["errorMessage"] == "probe asked to fail"
    assert any("index.py" in line for line in error["stackTrace"])
    raw = requests.post(
        f"{lc.url}/2016-08-15/services/probe/functions/echo/invocations",
        data=b'{"action": "raise"}',
        headers=client._build_common_headers(
            "POST", "/2016-08-15/services/probe/functions/echo/invocations", {}
        ),
        timeout=30,
    )
    assert raw.headers["x-fc-error-type"] == "UnhandledInvocationError"


@pytest.mark.parametrize(
    ("service", "function", "code"),
    [("probe", "nope", "FunctionNotFound"), ("nope", "echo", "ServiceNotFound")],
)
def test_unknown_names_are_404(client, service, function, code):
    with pytest.raises(FcError) as caught:
        client.invoke_function(service, function, payload=b"{}")

    assert (caught.value.status_code, caught.value.err_code) == (404, code)


def test_wrong_secret_is_403_signature_not_match(lc):
    bad = fc2.Client(endpoint=lc.url, accessKeyID=AK_ID, accessKeySecret="not-the-secret")

    with pytest.raises(FcError) as caught:
        call(bad, "echo", {"action": "echo"})

    assert (caught.value.status_code, caught.value.err_code) == (403, "SignatureNotMatch")
    assert "not-the-secret" not in caught.value.message


def test_unknown_access_key_is_403(lc):
    stranger = fc2.Client(endpoint=lc.url, accessKeyID="LTAI5tNobodyAtAll", accessKeySecret="x")

    with pytest.raises(FcError) as caught:
        call(stranger, "echo", {"action": "echo"})

    assert (caught.value.status_code, caught.value.err_code) == (403, "InvalidAccessKeyID")


def test_sts_credential_with_its_token_is_accepted_and_a_wrong_token_refused(lc):
    good = fc2.Client(
        endpoint=lc.url,
        accessKeyID=STS["access_key_id"],
        accessKeySecret=STS["access_key_secret"],
        securityToken=STS["security_token"],
    )
    forged = fc2.Client(
        endpoint=lc.url,
        accessKeyID=STS["access_key_id"],
        accessKeySecret=STS["access_key_secret"],
        securityToken="CAIS" + "x" * 60,
    )

    assert json.loads(call(good, "echo", {"action": "echo"}).data)["event_type"] == "bytes"
    with pytest.raises(FcError) as caught:
        call(forged, "echo", {"action": "echo"})
    assert (caught.value.status_code, caught.value.err_code) == (403, "InvalidSecurityToken")


def test_async_invoke_is_202_and_retries_a_failing_function_until_it_succeeds(lc, client, tmp_path):
    counter = tmp_path / "attempts"

    reply = call(
        client,
        "flaky",
        {"action": "flaky", "counter": str(counter), "failures": 2},
        headers={"x-fc-invocation-type": "Async"},
    )

    assert reply.headers["x-fc-request-id"]
    assert lc.cloud.fc.wait_idle(timeout=30)
    assert counter.read_text() == "3"  # two failures, then the success
    assert lc.cloud.fc.destinations == []


def test_async_invoke_gives_up_after_the_retries_and_records_the_failure(lc, client, tmp_path):
    counter = tmp_path / "attempts"
    event = {"action": "flaky", "counter": str(counter), "failures": 100}

    reply = call(client, "flaky", event, headers={"x-fc-invocation-type": "Async"})

    assert lc.cloud.fc.wait_idle(timeout=30)
    assert counter.read_text() == "3"  # the first attempt and max_async_retry_attempts=2
    [message] = lc.cloud.mns.peek("probe-failures", 10)
    record = json.loads(message.body)
    assert record["requestContext"]["requestId"] == reply.headers["x-fc-request-id"]
    assert record["requestContext"]["condition"] == "UnhandledInvocationError"
    assert record["requestContext"]["approximateInvokeCount"] == 3
    assert json.loads(record["requestPayload"]) == event
    assert json.loads(record["responsePayload"])["errorType"] == "RuntimeError"


def test_timeout_kills_the_instance_and_the_next_call_gets_a_fresh_one(client):
    with pytest.raises(FcError) as caught:
        call(client, "slow", {"action": "sleep", "seconds": 30})

    assert json.loads(caught.value.message)["errorMessage"] == "Function timed out after 0.5 seconds"
    assert call(client, "slow", {"action": "sleep", "seconds": 0}).data == b"slept"


def test_a_crashed_instance_is_an_error_and_replaced(client):
    before = json.loads(call(client, "echo", {"action": "echo"}).data)["pid"]

    with pytest.raises(FcError) as caught:
        call(client, "echo", {"action": "crash"})

    assert "exited unexpectedly" in json.loads(caught.value.message)["errorMessage"]
    assert json.loads(call(client, "echo", {"action": "echo"}).data)["pid"] != before


def test_a_failed_cold_start_is_a_function_error_each_time(lc, client):
    for _ in range(2):  # the broken instance is retired, so the next call cold-starts again
        with pytest.raises(FcError) as caught:
            call(client, "unloadable", {"action": "echo"})
        assert json.loads(caught.value.message)["errorType"] == "ModuleNotFoundError"

    assert lc.cloud.fc.pool_sizes()["probe/unloadable"] == 0


def test_function_output_goes_to_the_log_not_the_reply(lc, client):
    reply = call(client, "echo", {"action": "print"}, headers={"x-fc-log-type": "Tail"})

    assert reply.data == b"printed"
    tail = base64.b64decode(reply.headers["x-fc-log-result"]).decode()
    assert "to stdout from the probe" in tail
    assert "to stderr from the probe" in tail
    assert "to stdout from the probe" in lc.cloud.fc.logs("probe", "echo")


def test_concurrent_invocations_scale_out_to_separate_instances(lc, client, tmp_path):
    event = {"action": "rendezvous", "dir": str(tmp_path), "count": 3}

    with ThreadPoolExecutor(max_workers=3) as pool:
        pids = list(pool.map(lambda _: call(client, "pool", event).data, range(3)))

    assert len(set(pids)) == 3  # all three ran at once, each on its own instance
    assert lc.cloud.fc.pool_sizes()["probe/pool"] == 3


def test_every_api_call_is_recorded(lc, client):
    call(client, "echo", {"action": "echo"})
    with pytest.raises(FcError):
        client.invoke_function("probe", "nope", payload=b"{}")

    calls = requests.get(f"{lc.url}/_localcloud/calls", params={"product": "fc"}, timeout=10).json()["calls"]

    assert [(c["action"], c["params"]["function"], c["status"], c["code"]) for c in calls] == [
        ("InvokeFunction", "echo", 200, None),
        ("InvokeFunction", "nope", 404, "FunctionNotFound"),
    ]
    assert calls[0]["access_key_id"] == AK_ID


@pytest.mark.parametrize(
    ("rule", "status", "code"),
    [({"throttle_rate": 1.0}, 429, "ResourceThrottled"), ({"error_rate": 1.0}, 503, "ServiceUnavailable")],
)
def test_injected_faults_answer_fc_json_errors(lc, client, rule, status, code):
    lc.cloud.faults.configure({"rules": [{"product": "fc", "action": "InvokeFunction", **rule}]})

    with pytest.raises(FcError) as caught:
        call(client, "echo", {"action": "echo"})

    assert (caught.value.status_code, caught.value.err_code) == (status, code)


@pytest.mark.parametrize("fault", ["drop_rate", "lost_reply_rate"])
def test_dropped_connections_reach_the_client_and_lost_replies_still_run(lc, client, fault):
    lc.cloud.faults.configure({"rules": [{"product": "fc", fault: 1.0}]})

    with pytest.raises(requests.ConnectionError):
        call(client, "echo", {"action": "print"})

    ran = "to stdout from the probe" in lc.cloud.fc.logs("probe", "echo")
    assert ran is (fault == "lost_reply_rate")


def test_stopping_localcloud_stops_every_instance():
    seed = {**SEED, "accounts": [DEMO_ACCOUNT, TEST_ACCOUNT]}
    lc = start_in_thread(Cloud(seed, root=ROOT))  # stopped here, not by the fixture
    client = fc2.Client(endpoint=lc.url, accessKeyID=AK_ID, accessKeySecret=AK_SECRET)
    pid = json.loads(call(client, "echo", {"action": "echo"}).data)["pid"]

    lc.stop()

    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_direct_invoke_and_invoke_async_for_other_rooms(lc):
    lc.cloud.fc.bind(lc.url)  # no FC API request has told FC its URL yet
    result = lc.cloud.fc.invoke("probe", "echo", b'{"action": "echo"}')
    assert result.ok
    assert json.loads(result.body)["context"]["request_id"] == result.request_id

    failed = lc.cloud.fc.invoke("probe", "echo", b'{"action": "raise"}')
    assert failed.error_type == "UnhandledInvocationError"
    assert failed.error["errorType"] == "ValueError"

    request_id = asyncio.run(lc.cloud.fc.invoke_async("probe", "echo", b'{"action": "print"}'))
    assert lc.cloud.fc.wait_idle(timeout=30)
    assert f"FC Invoke Start RequestId: {request_id}" in lc.cloud.fc.logs("probe", "echo")
