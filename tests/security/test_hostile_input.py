"""Hostile input: whatever bytes arrive, every trigger parser answers with data or InvalidRequest,
and the webhook and rollout functions answer with a reply — never an unhandled exception, never a
500. Property-based (hypothesis) over random JSON, wrong types, huge and deeply nested bodies,
invalid UTF-8 and bad base64; the webhook runs for real (localcloud + Redis) behind both FC shapes."""

from __future__ import annotations

import base64
import contextlib
import json
import uuid
from typing import Any

import pytest
from dbupgrade.model import InvalidRequest
from dbupgrade.request import parse_request
from dbupgrade.triggers import parse_rollout_event, parse_timer_event
from dbupgrade.usecase import Upgrader
from dbupgrade.webhook.adapters import request_from_fc3_event
from dbupgrade.webhook.app import WebhookApp
from dbupgrade.webhook.http import MAX_BODY_BYTES
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.functional.webhook.webhook_harness import sign
from tests.reliability.faultrun import (
    FAST_RETRY,
    WEBHOOK_SECRET,
    World,
    fc_context,
    load_rollout_function,
    post_wsgi,
)

FIELDS = (
    "instance_id",
    "target_version",
    "engine",
    "region",
    "effective",
    "ticket_id",
    "rollout_id",
    "dry_run",
)
SCALARS = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40)
JSON = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=20,
)
PLAUSIBLE_VALUES = (
    st.sampled_from(
        [
            "r-bp1chaos000000",
            "dds-bp1chaos000003",
            "r-",
            "r-bp1" + "x" * 40,
            "7.0",
            "5.0",
            "7",
            "redis",
            "mongodb",
            "cn-hangzhou",
            "immediate",
            "maintenance_window",
            "",
        ]
    )
    | JSON
)
# Request-shaped objects: the fields the parsers know, with right, wrong and absurd values.
REQUEST_LIKE = st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=10), PLAUSIBLE_VALUES, max_size=8)
BODIES = (
    REQUEST_LIKE.map(lambda d: json.dumps(d).encode())
    | st.lists(REQUEST_LIKE, max_size=3).map(lambda items: json.dumps({"upgrades": items}).encode())
    | JSON.map(lambda v: json.dumps(v).encode())
    | st.binary(max_size=200)  # invalid UTF-8, truncated JSON...
    | st.integers(1, 5000).map(lambda n: b"[" * n + b"]" * n)  # deeply nested
    | st.integers(1, 5000).map(lambda n: b'{"a":' * n + b"1" + b"}" * n)
)
FUZZ = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def base64_or_not(data: bytes, draw_bad: bool) -> str:
    return "%%not base64%%" if draw_bad else base64.b64encode(data).decode()


# -- the parsers alone: pure functions, many examples ------------------------------------------


@settings(max_examples=100, deadline=None)
@given(
    BODIES
    | REQUEST_LIKE.map(
        lambda d: json.dumps({"TopicOwner": "1", "MessageId": "m", "Message": json.dumps(d)}).encode()
    )
)
def test_the_rollout_parser_turns_anything_into_messages(event: bytes) -> None:
    messages = parse_rollout_event(event)
    assert messages
    for message in messages:
        assert message.ok or isinstance(message.error, InvalidRequest)


@settings(max_examples=100, deadline=None)
@given(REQUEST_LIKE, st.booleans(), st.booleans())
def test_the_rollout_parser_survives_bad_base64_and_wrong_types_in_eventbridge_events(
    body: dict[str, Any], bad: bool, batch: bool
) -> None:
    cloud_event = {
        "specversion": "1.0",
        "id": str(uuid.uuid4()),
        "data": {"messageId": "m-1", "messageBody": base64_or_not(json.dumps(body).encode(), bad)},
    }
    for message in parse_rollout_event(json.dumps([cloud_event] * 2 if batch else cloud_event).encode()):
        assert message.ok or isinstance(message.error, InvalidRequest)


@settings(max_examples=100, deadline=None)
@given(
    BODIES
    | st.dictionaries(
        st.sampled_from(["triggerTime", "triggerName", "payload"]),
        JSON | BODIES.map(lambda b: b.decode(errors="replace")),
    ).map(lambda d: json.dumps(d).encode())
)
def test_the_timer_parser_raises_only_invalid_request(event: bytes) -> None:
    with contextlib.suppress(InvalidRequest):
        parse_timer_event(event)


@settings(max_examples=100, deadline=None)
@given(REQUEST_LIKE, st.sampled_from(["webhook", "queue", "timer", "cli"]))
def test_the_request_parser_raises_only_invalid_request(data: dict[str, Any], source: str) -> None:
    try:
        parse_request(data, source=source)
    except InvalidRequest as error:
        assert isinstance(error.field, str)  # the error names the field


@settings(max_examples=100, deadline=None)
@given(
    BODIES
    | st.fixed_dictionaries(
        {
            "body": JSON,
            "isBase64Encoded": st.booleans(),
            "headers": JSON,
            "requestContext": JSON,
            "rawPath": JSON,
        }
    ).map(lambda d: json.dumps(d).encode())
)
def test_the_fc3_http_event_parser_never_raises(event: bytes) -> None:
    request_from_fc3_event(event)


# -- the functions, for real -------------------------------------------------------------------


def fc3_event(body: bytes, headers: dict[str, str], base64_body: bool, bad_base64: bool) -> bytes:
    encoded = base64_or_not(body, bad_base64) if base64_body else body.decode("utf-8", "replace")
    return json.dumps(
        {
            "version": "v1",
            "rawPath": "/upgrades",
            "body": encoded,
            "isBase64Encoded": base64_body,
            "headers": {"content-type": "application/json", **headers},
            "queryParameters": {},
            "requestContext": {
                "http": {"method": "POST", "path": "/upgrades"},
                "requestId": str(uuid.uuid4()),
            },
        }
    ).encode()


def assert_a_proper_reply(status: int, text: str) -> None:
    assert status != 500, text
    assert 200 <= status < 600
    json.loads(text)  # every reply is JSON (a result or an RFC 9457 problem)


@FUZZ
@given(body=BODIES, signed=st.booleans(), auth=st.sampled_from(["standard", "none"]))
def test_the_webhook_never_answers_500_over_wsgi(world: World, body: bytes, signed: bool, auth: str) -> None:
    app = WebhookApp({**world.env, "DBUPGRADE_WEBHOOK_AUTH": auth}, upgrader_options={"retry": FAST_RETRY})
    headers = (
        sign(body, secret=WEBHOOK_SECRET)
        if signed and _utf8(body)
        else {"webhook-id": "x", "webhook-signature": "v1,AAAA"}
    )
    status, _, text = post_wsgi(app, body, headers, fc_context("webhook", 60))
    assert_a_proper_reply(status, text)


@FUZZ
@given(body=BODIES, base64_body=st.booleans(), bad_base64=st.booleans())
def test_the_webhook_never_answers_500_as_an_fc3_function(
    world: World, body: bytes, base64_body: bool, bad_base64: bool
) -> None:
    app = WebhookApp({**world.env, "DBUPGRADE_WEBHOOK_AUTH": "none"}, upgrader_options={"retry": FAST_RETRY})
    result = app(fc3_event(body, {}, base64_body, bad_base64), fc_context("webhook", 60))
    assert_a_proper_reply(
        result["statusCode"],
        base64.b64decode(result["body"]).decode() if result["isBase64Encoded"] else result["body"],
    )


def test_a_huge_body_is_refused_before_anything_else(world: World) -> None:
    app = WebhookApp(world.env, upgrader_options={"retry": FAST_RETRY})
    body = json.dumps(
        {"instance_id": "r-bp1chaos000000", "target_version": "7.0", "pad": "x" * MAX_BODY_BYTES}
    ).encode()
    status, _, text = post_wsgi(app, body, sign(body, secret=WEBHOOK_SECRET), fc_context("webhook", 60))
    assert status == 413, text
    assert world.cloud_calls() == []


@FUZZ
@given(body=BODIES)
def test_the_rollout_function_answers_every_message(world: World, body: bytes) -> None:
    rollout = load_rollout_function()
    rollout._upgrader = Upgrader.from_env(world.env, retry=FAST_RETRY)
    summary = json.loads(rollout.handler(body, fc_context("rollout", 60)))
    assert summary["messages"] == len(summary["outcomes"]) >= 1


def _utf8(body: bytes) -> bool:
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


@pytest.mark.parametrize("depth", [31, 33, 100_000])
def test_deep_nesting_is_a_400_not_a_crash(world: World, depth: int) -> None:
    app = WebhookApp({**world.env, "DBUPGRADE_WEBHOOK_AUTH": "none"}, upgrader_options={"retry": FAST_RETRY})
    body = b'{"a":' * depth + b"1" + b"}" * depth
    status, _, text = post_wsgi(app, body, {}, fc_context("webhook", 60))
    assert status in (400, 413, 422), text
