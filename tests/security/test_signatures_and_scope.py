"""Who may make the webhook upgrade a database: every refused signature is a 401 that calls nothing
and records nothing; a replay of a delivery that succeeded returns its outcome and calls nothing
again; signatures are compared in constant time; the scope guard refuses before any call."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any

import pytest
from dbupgrade.webhook.app import WebhookApp

from tests.functional.webhook.webhook_harness import sign
from tests.reliability.faultrun import FAST_RETRY, WEBHOOK_SECRET, World, fc_context, notifications, post_wsgi

BODY = json.dumps({"instance_id": "r-bp1chaos000000", "target_version": "7.0", "ticket_id": "CHG-7"}).encode()
OTHER_SECRET = "whsec_" + base64.b64encode(b"not-the-configured-secret-000000").decode()


def post(world: World, headers: dict[str, str], body: bytes = BODY, **env: str) -> tuple[int, dict[str, Any]]:
    app = WebhookApp({**world.env, **env}, upgrader_options={"retry": FAST_RETRY})
    status, _, text = post_wsgi(app, body, headers, fc_context("webhook", 60))
    return status, json.loads(text)


def good(msg_id: str = "msg_auth_1", **kwargs: Any) -> dict[str, str]:
    return sign(BODY, msg_id, secret=WEBHOOK_SECRET, **kwargs)


def refused(world: World, headers: dict[str, str], body: bytes = BODY) -> str:
    status, reply = post(world, headers, body)
    assert status == 401, reply
    assert world.cloud_calls() == []
    assert list(notifications(world.lc)) == []  # nothing recorded, nothing published
    return str(reply["detail"])


def without(headers: dict[str, str], name: str) -> dict[str, str]:
    return {k: v for k, v in headers.items() if k != name}


@pytest.mark.parametrize("header", ["webhook-id", "webhook-timestamp", "webhook-signature"])
def test_a_missing_header_is_refused(world: World, header: str) -> None:
    assert header in refused(world, without(good(), header))


@pytest.mark.parametrize(
    "signature",
    ["v1", "v1,", "v2," + "A" * 44, "v1,not base64!", "sha256=" + "0" * 64, "v1,AAAA v1 ,", "\u00e9\u00e9"],
)
def test_a_malformed_signature_is_refused(world: World, signature: str) -> None:
    refused(world, {**good(), "webhook-signature": signature})


def test_a_signature_made_with_another_secret_is_refused(world: World) -> None:
    assert "no signature matches" in refused(world, sign(BODY, "msg_x", secret=OTHER_SECRET))


def test_a_signature_over_another_body_is_refused(world: World) -> None:
    tampered = BODY.replace(b"CHG-7", b"CHG-8")
    refused(world, good(), tampered)


@pytest.mark.parametrize("age", [301, -301, 86400], ids=["expired", "future-dated", "a-day-old"])
def test_a_timestamp_outside_five_minutes_is_refused(world: World, age: float) -> None:
    assert "tolerance" in refused(world, good(age=age))


def test_a_timestamp_that_is_not_a_number_is_refused(world: World) -> None:
    refused(world, {**good(), "webhook-timestamp": "yesterday"})


def test_several_signatures_none_matching_are_refused(world: World) -> None:
    wrong = sign(BODY, "msg_auth_1", secret=OTHER_SECRET)["webhook-signature"]
    refused(world, {**good(), "webhook-signature": f"{wrong} {wrong.replace('v1,', 'v1,A')} v1,junk"})


def test_one_matching_signature_among_several_is_accepted_as_the_standard_says(world: World) -> None:
    headers = good()
    wrong = sign(BODY, "msg_auth_1", secret=OTHER_SECRET)["webhook-signature"]
    status, _ = post(
        world, {**headers, "webhook-signature": f"v1,junk {wrong} {headers['webhook-signature']}"}
    )
    assert status == 202


def test_a_replayed_delivery_gets_the_first_outcome_and_no_second_call(world: World) -> None:
    first_status, first = post(world, good("msg_replayed"))
    again_status, again = post(world, good("msg_replayed"))  # re-signed now, same webhook-id

    assert (first_status, again_status) == (202, 202)
    assert again["request_id"] == first["request_id"]
    assert len([c for c in world.cloud_calls() if c["action"] == "ModifyInstanceMajorVersion"]) == 1
    assert len(list(notifications(world.lc))) == 1


def test_a_captured_request_replayed_after_the_tolerance_is_refused(world: World) -> None:
    captured = good("msg_captured", age=600)  # the exact bytes an eavesdropper kept 10 minutes
    refused(world, captured)


def test_signatures_are_compared_in_constant_time(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    compared: list[tuple[Any, Any]] = []
    real = hmac.compare_digest

    def spy(a: Any, b: Any) -> bool:
        compared.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    refused(world, sign(BODY, "msg_ct", secret=OTHER_SECRET))  # standardwebhooks
    assert compared
    compared.clear()
    status, _ = post(
        world, {"x-hub-signature-256": "sha256=" + "0" * 64}, DBUPGRADE_WEBHOOK_AUTH="hub-sha256"
    )
    assert status == 401 and compared  # our own hub-sha256 check
    compared.clear()
    digest = hmac.new(WEBHOOK_SECRET.encode(), BODY, hashlib.sha256).hexdigest()
    status, _ = post(world, {"x-hub-signature-256": f"sha256={digest}"}, DBUPGRADE_WEBHOOK_AUTH="hub-sha256")
    assert status == 202 and compared


def test_an_instance_outside_the_allow_list_is_rejected_with_no_cloud_call(world: World) -> None:
    status, reply = post(
        world, good("msg_scope"), DBUPGRADE_ALLOWED_INSTANCES="r-bp1chaos000001,r-bp1chaos000002"
    )

    assert status == 409
    assert (reply["reason"], reply["field"]) == ("out_of_scope", "instance_id")
    assert world.cloud_calls() == []
    [notified] = list(notifications(world.lc))
    assert (notified["event"], notified["reason"]) == ("upgrade.rejected", "out_of_scope")


def test_a_region_outside_the_allow_list_is_rejected_with_no_cloud_call(world: World) -> None:
    status, reply = post(world, good("msg_region"), DBUPGRADE_ALLOWED_REGIONS="cn-shanghai")

    assert (status, reply["reason"], reply["field"]) == (409, "out_of_scope", "region")
    assert world.cloud_calls() == []
