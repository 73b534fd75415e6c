"""The webhook as deployed (functions/webhook/index.py) and as served locally over real HTTP."""

from __future__ import annotations

import importlib.util
import json
import urllib.error
import urllib.request
from pathlib import Path

import dbupgrade.webhook.handler as handler_module
import pytest
from dbupgrade.webhook.app import WebhookApp
from dbupgrade.webhook.serve import start_in_thread

from tests.functional.webhook.webhook_harness import FAST_RETRY, Hook, body_of, fc_context, sign

ROOT = Path(__file__).resolve().parents[3]


def load_function_handler():
    spec = importlib.util.spec_from_file_location(
        "webhook_index", ROOT / "functions" / "webhook" / "index.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.handler


@pytest.fixture
def deployed(hook: Hook, monkeypatch: pytest.MonkeyPatch) -> Hook:
    """The function's environment as FC would set it, and a cold instance (a fresh app)."""
    for name, value in hook.env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(handler_module, "app", WebhookApp(upgrader_options={"retry": FAST_RETRY}))
    return hook


def test_the_function_handler_takes_the_sample_fc3_event_re_signed(deployed: Hook):
    event = json.loads((ROOT / "events" / "webhook-fc3-http.json").read_text())
    event["headers"].update(sign(event["body"].encode()))
    handler = load_function_handler()

    reply = handler(json.dumps(event).encode(), fc_context(fc3=True))

    assert reply["statusCode"] == 202
    assert json.loads(reply["body"])["status"] == "submitted"
    assert len(deployed.calls("ModifyInstanceMajorVersion")) == 1


def test_the_sample_fc3_event_as_stored_is_refused_as_expired(deployed: Hook):
    event = (ROOT / "events" / "webhook-fc3-http.json").read_bytes()
    reply = load_function_handler()(event, fc_context(fc3=True))
    assert reply["statusCode"] == 401
    assert "5-minute tolerance" in json.loads(reply["body"])["detail"]


def post(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, dict]:
    headers = {"content-type": "application/json", **headers}
    request = urllib.request.Request(url + "/upgrades", body, headers)  # noqa: S310 -- localhost
    try:
        with urllib.request.urlopen(request, timeout=10) as reply:  # noqa: S310 -- localhost
            return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


@pytest.mark.parametrize("fc3", [False, True], ids=["wsgi", "fc3"])
def test_the_local_server_runs_the_real_handler_in_either_shape(deployed: Hook, fc3: bool):
    server = start_in_thread(fc3=fc3)
    try:
        body = body_of({"instance_id": "r-bp1demo0000000001", "target_version": "7.0"})
        headers = sign(body, "msg_local_serve")
        first = post(server.url, body, headers)
        again = post(server.url, body, headers)
        unsigned = post(server.url, body, {})
        too_big = post(server.url, b"x" * (64 * 1024 + 1), headers)
    finally:
        server.stop()
    assert first[0] == again[0] == 202
    assert first[1]["request_id"] == again[1]["request_id"]
    assert unsigned[0] == 401
    assert too_big[0] == 413
    assert len(deployed.calls("ModifyInstanceMajorVersion")) == 1
