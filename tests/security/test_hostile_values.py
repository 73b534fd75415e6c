"""Hostile and malformed values, one case each (issue #12 point 9), against the real webhook with a
real localcloud and Redis: each gets its own rejected outcome naming the field (never a 500, never
failing a batch's other items); notifications fit MNS's 64 KiB; the auth configuration takes exact
values and secrets long enough to be secrets; a hub-sha256 redelivery without a ticket is
recognised by its body; rejected input creates no store key of its own."""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import json
from typing import Any

import pytest
import redis
from dbupgrade.config import Config
from dbupgrade.context import Credentials
from dbupgrade.errors import ConfigError
from dbupgrade.logging import logger
from dbupgrade.notify import MESSAGE_BYTES_MAX, REFUSED_CODES, Delivery, Notifier, bounded
from dbupgrade.request import BODY_DEDUPE_SECONDS
from dbupgrade.store import SET_ASIDE_MAX, RedisStore
from dbupgrade.webhook.app import WebhookApp
from mns.mns_exception import MNSClientParameterException, MNSServerException

from tests.functional.webhook.webhook_harness import sign
from tests.reliability.faultrun import (
    FAST_RETRY,
    STS_ID,
    STS_SECRET,
    STS_TOKEN,
    WEBHOOK_SECRET,
    World,
    fc_context,
    notifications,
    post_wsgi,
)

GOOD = {"instance_id": "r-bp1chaos000000", "target_version": "7.0"}
HUB_SECRET = "hub-shared-secret-for-hostile-tests"  # noqa: S105


def app(world: World, **env: str) -> WebhookApp:
    return WebhookApp({**world.env, **env}, upgrader_options={"retry": FAST_RETRY})


def post(world: World, body: bytes, **env: str) -> tuple[int, dict[str, Any]]:
    status, _, text = post_wsgi(
        app(world, **env), body, sign(body, secret=WEBHOOK_SECRET), fc_context("webhook", 60)
    )
    return status, json.loads(text)


def upgrade_calls(world: World) -> int:
    return len(world.processed_upgrades())


# -- malformed values: their own rejected outcome, naming the field ---------------------------------


@pytest.mark.parametrize("field", ["target_version", "ticket_id"])
def test_a_400_digit_number_is_rejected_naming_its_field(world: World, field: str) -> None:
    body = json.dumps({**GOOD, field: 10**400}).encode()
    status, reply = post(world, body)

    assert status == 422, reply
    assert reply["field"] == field
    assert upgrade_calls(world) == 0
    [notified] = list(notifications(world.lc))
    assert (notified["event"], notified["code"]) == ("upgrade.rejected", "InvalidRequest")


def test_a_400_digit_number_fails_only_its_own_item_of_a_batch(world: World) -> None:
    body = json.dumps({"upgrades": [{**GOOD, "target_version": 10**400}, GOOD]}).encode()
    status, reply = post(world, body)

    assert status == 207, reply
    first, second = reply["results"]
    assert (first["http_status"], first["field"]) == (422, "target_version")
    assert second["http_status"] == 202
    assert upgrade_calls(world) == 1


def test_a_number_too_long_for_python_to_read_is_a_400_naming_the_body(world: World) -> None:
    body = b'{"instance_id": "r-bp1chaos000000", "target_version": ' + b"7" * 5000 + b"}"
    status, reply = post(world, body)

    assert status == 400, reply
    assert reply["field"] == "body"


def test_a_mapping_expression_meeting_the_wrong_type_rejects_naming_the_field(world: World) -> None:
    mapping = json.dumps({"instance_id": "issue.db", "target_version": "to_string(length(issue.v))"})
    body = json.dumps({"issue": {"db": "r-bp1chaos000000", "v": 7}}).encode()
    status, reply = post(world, body, DBUPGRADE_WEBHOOK_MAPPING=mapping)

    assert status == 422, reply
    assert reply["field"] == "target_version"
    assert "length" in reply["detail"]
    assert upgrade_calls(world) == 0


def test_a_huge_string_field_is_rejected_with_a_small_reply_and_a_notification_that_fits(
    world: World,
) -> None:
    body = json.dumps({**GOOD, "region": "cn-" + "x" * 60_000}).encode()
    status, reply = post(world, body)

    assert status == 422, reply
    assert reply["field"] == "region"
    assert len(reply["detail"]) < 500
    [notified] = list(notifications(world.lc))  # published, not stuck in the outbox
    assert notified["event"] == "upgrade.rejected"
    assert len(json.dumps(notified)) <= MESSAGE_BYTES_MAX
    assert all(len(str(value)) <= 2100 for value in notified.values())


def test_rejected_input_creates_no_store_key_of_its_own(world: World) -> None:
    client = redis.Redis.from_url(world.env["DBUPGRADE_REDIS_URL"])
    before = set(client.keys("dbupgrade:*"))
    for n in range(20):  # twenty different garbage ids, one of them 40 KB long
        garbage = "x" * 40_000 if n == 0 else f"not-an-instance-{n}"
        status, reply = post(world, json.dumps({"instance_id": garbage, "target_version": "7.0"}).encode())
        assert status == 422, reply

    new = set(client.keys("dbupgrade:*")) - before
    assert len(new) <= 4, new  # the "unknown" record, its history, the outbox... never one per value
    assert all(len(key) <= 200 for key in new)
    assert all(b"not-an-instance" not in key for key in new)


def test_a_rollout_message_nested_too_deep_is_rejected_alone(world: World) -> None:
    from dbupgrade.usecase import Upgrader

    from tests.reliability.faultrun import load_rollout_function

    rollout = load_rollout_function()
    rollout._upgrader = Upgrader.from_env(world.env, retry=FAST_RETRY)
    # A message body (a string, as MNS carries it) nested 5,000 deep, beside a good one.
    deep = {"specversion": "1.0", "id": "e-deep", "data": {"messageId": "m-deep", "messageBody": "[" * 5000}}
    good = {
        "specversion": "1.0",
        "id": "e-good",
        "data": {"messageId": "m-good", "messageBody": base64.b64encode(json.dumps(GOOD).encode()).decode()},
    }
    event = json.dumps([deep, good]).encode()
    summary = json.loads(rollout.handler(event, fc_context("rollout", 60)))

    assert summary["messages"] == 2
    statuses = sorted(o["status"] for o in summary["outcomes"])
    assert statuses == ["rejected", "submitted"], summary


# -- notifications: bounded to MNS's limit; refusals set aside -------------------------------------


def test_a_rollout_summary_caps_its_lists_and_says_how_many_it_left_out(world: World) -> None:
    failures = [
        {"instance_id": f"r-bp1fail{n:08d}", "code": "X" * 300, "message": "m" * 3000} for n in range(500)
    ]
    summary = {"version": 1, "event": "rollout.halted", "rollout_id": "nightly", "failures": failures}
    config = Config.from_env(world.env)

    delivered = Notifier(config).publish(
        summary, credentials=Credentials(STS_ID, STS_SECRET, STS_TOKEN), context=None
    )

    assert delivered is Delivery.DELIVERED  # today MNS refuses it: 1.7 MB
    [notified] = list(notifications(world.lc))
    assert len(notified["failures"]) < len(failures)
    assert notified["failures_omitted"] == len(failures) - len(notified["failures"])
    assert all(len(f["code"]) <= 300 and len(f["message"]) <= 2100 for f in notified["failures"])


def test_every_bounded_message_fits_even_with_many_long_fields() -> None:
    message = {f"field{n}": "v" * 10_000 for n in range(300)}
    assert len(json.dumps(bounded({"event": "upgrade.failed", **message}))) <= MESSAGE_BYTES_MAX


def test_a_flat_message_is_kept_as_is_unless_one_field_is_past_its_cap() -> None:
    # The common case (an outcome's notification) skips the caps' copy: it must keep cutting alike.
    message = {"version": 1, "event": "upgrade.failed", "reason": "r" * 128, "duration_seconds": 1.5}
    assert bounded(message) == message
    long_reason = bounded({**message, "reason": "r" * 129})["reason"]
    assert long_reason.startswith("r" * 128 + "...") and "1 more characters" in long_reason
    long_key = bounded({**message, "k" * 65: 1})
    assert "k" * 65 not in long_key and long_key["k" * 64 + "... (1 more characters)"] == 1


@pytest.mark.parametrize(
    "error,verdict",
    [
        (
            MNSServerException("InvalidArgument", "The MessageBody is larger than 65536 bytes.", "r", "h"),
            "refused",
        ),
        (
            MNSServerException("MalformedXML", "The XML you provided was not well-formed.", "r", "h"),
            "refused",
        ),
        (MNSClientParameterException("MessageTagInvalid", "too long"), "refused"),
        (MNSServerException("TooManyRequests", "flow limiter", "r", "h"), "retry"),
        (MNSServerException("AccessDenied", "denied", "r", "h"), "retry"),
        (MNSServerException("TopicNotExist", "no topic", "r", "h"), "retry"),
        (OSError("connection reset"), "retry"),
    ],
)
def test_publish_failures_are_told_apart_refused_for_good_or_retry_later(
    error: Exception, verdict: str
) -> None:
    from dbupgrade.notify import _classify

    assert _classify(error).value == verdict
    assert "InvalidArgument" in REFUSED_CODES


def test_set_aside_entries_are_kept_apart_and_capped(world: World) -> None:
    store = RedisStore(redis.Redis.from_url(world.env["DBUPGRADE_REDIS_URL"]))
    for n in range(SET_ASIDE_MAX + 5):
        kept = store.set_aside({"message": {"event": "upgrade.failed", "n": n}}, "refused by MNS")
    assert kept == store.set_aside_size() == SET_ASIDE_MAX
    assert store.outbox_size() == 0


def test_an_oversized_outbox_entry_no_longer_blocks_the_ones_behind_it(world: World) -> None:
    """An entry parked by a version that did not bound its messages: delivered, bounded, and the
    entries behind it follow."""
    from dbupgrade.usecase import Upgrader

    upgrader = Upgrader.from_env(world.env, retry=FAST_RETRY)
    huge = {"version": 1, "event": "upgrade.rejected", "instance_id": "unknown", "message": "x" * 100_000}
    upgrader.store.outbox_add({"message": huge, "added_at": 0})
    upgrader.store.outbox_add({"message": {"version": 1, "event": "upgrade.noop", "instance_id": "r-1"}})

    assert upgrader.drain_outbox(fc_context("tracker", 60)) == 2
    assert upgrader.store.outbox_size() == 0
    events = [n["event"] for n in notifications(world.lc)]
    assert events == ["upgrade.rejected", "upgrade.noop"]


# -- authentication settings ------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["None", "NONE", " none", "none ", "hub", "Standard", "hub_sha256"])
def test_the_auth_mode_takes_exact_values_only(world: World, value: str) -> None:
    status, _, text = post_wsgi(
        app(world, DBUPGRADE_WEBHOOK_AUTH=value), json.dumps(GOOD).encode(), {}, fc_context("webhook", 60)
    )
    reply = json.loads(text)
    assert (status, reply["type"]) == (500, "urn:dbupgrade:problem:misconfigured"), reply
    assert "DBUPGRADE_WEBHOOK_AUTH" in reply["detail"]
    assert upgrade_calls(world) == 0


def test_auth_none_is_logged_loudly_when_the_webhook_starts(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    logs = io.StringIO()
    monkeypatch.setattr(logger.registered_handler, "stream", logs)
    post_wsgi(app(world, DBUPGRADE_WEBHOOK_AUTH="none"), b"{}", {}, fc_context("webhook", 60))

    warnings = [json.loads(line) for line in logs.getvalue().splitlines() if '"WARNING"' in line]
    assert any("DBUPGRADE_WEBHOOK_AUTH=none" in w["message"] for w in warnings), logs.getvalue()


@pytest.mark.parametrize(
    "env,variable",
    [
        (
            {"DBUPGRADE_WEBHOOK_SECRET": "whsec_" + base64.b64encode(b"only-23-bytes-of-secret").decode()},
            "DBUPGRADE_WEBHOOK_SECRET",
        ),
        (
            {"DBUPGRADE_WEBHOOK_AUTH": "hub-sha256", "DBUPGRADE_WEBHOOK_SECRET": "jira-secret-23-bytes-xx"},
            "DBUPGRADE_WEBHOOK_SECRET",
        ),
        ({"DBUPGRADE_WEBHOOK_STATUS_TOKEN": "short-token"}, "DBUPGRADE_WEBHOOK_STATUS_TOKEN"),
    ],
    ids=["standard-23-bytes", "hub-23-bytes", "status-token"],
)
def test_a_secret_shorter_than_24_bytes_is_refused_at_start(
    world: World, env: dict[str, str], variable: str
) -> None:
    from dbupgrade.webhook.app import WebhookSettings

    with pytest.raises(ConfigError) as raised:
        WebhookSettings.from_env({**world.env, **env})
    assert raised.value.variable == variable
    status, _, text = post_wsgi(app(world, **env), json.dumps(GOOD).encode(), {}, fc_context("webhook", 60))
    assert status == 500 and variable in json.loads(text)["detail"]


def test_the_standard_secrets_the_docs_show_are_long_enough() -> None:
    from dbupgrade.cli.demo import DEMO_WEBHOOK_SECRET
    from dbupgrade.webhook.auth import StandardWebhooksAuth

    for secret in (DEMO_WEBHOOK_SECRET, WEBHOOK_SECRET):
        StandardWebhooksAuth(secret)


# -- hub-sha256: a redelivery without a ticket is recognised by its body ----------------------------


def hub_post(world: World, body: bytes) -> tuple[int, dict[str, Any]]:
    digest = hmac.new(HUB_SECRET.encode(), body, hashlib.sha256).hexdigest()
    env = {"DBUPGRADE_WEBHOOK_AUTH": "hub-sha256", "DBUPGRADE_WEBHOOK_SECRET": HUB_SECRET}
    status, _, text = post_wsgi(
        app(world, **env), body, {"x-hub-signature-256": f"sha256={digest}"}, fc_context("webhook", 60)
    )
    return status, json.loads(text)


def test_a_hub_sha256_redelivery_without_a_ticket_gets_the_first_outcome(world: World) -> None:
    body = json.dumps(GOOD).encode()
    first_status, first = hub_post(world, body)
    again_status, again = hub_post(world, body)

    assert (first_status, again_status) == (202, 202), again
    assert again["request_id"] == first["request_id"]
    assert upgrade_calls(world) == 1
    assert len(list(notifications(world.lc))) == 1


def test_the_body_dedupe_lasts_a_short_window_only(world: World) -> None:
    hub_post(world, json.dumps(GOOD).encode())
    client = redis.Redis.from_url(world.env["DBUPGRADE_REDIS_URL"])
    [key] = client.keys("dbupgrade:idempotency*")
    assert 0 < client.ttl(key) <= BODY_DEDUPE_SECONDS
