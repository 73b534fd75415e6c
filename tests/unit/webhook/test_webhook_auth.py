"""Signature checks a sender would hit: Standard Webhooks and X-Hub-Signature-256."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from datetime import datetime, timezone

import pytest
from dbupgrade.errors import ConfigError
from dbupgrade.webhook.auth import (
    HubSha256Auth,
    NoAuth,
    StandardWebhooksAuth,
    StatusReadAuth,
    Unauthorized,
    auth_mode,
    authenticator,
)
from dbupgrade.webhook.http import HttpRequest
from standardwebhooks import Webhook

SECRET = "whsec_" + base64.b64encode(b"unit-test-webhook-key-0123456789").decode()
OTHER_SECRET = "whsec_" + base64.b64encode(b"some-other-key-not-the-right-one").decode()
BODY = b'{"instance_id":"r-bp1demo0000000001","target_version":"7.0"}'


def signed(
    body: bytes = BODY, *, secret: str = SECRET, msg_id: str = "msg_1", at: float | None = None
) -> dict:
    moment = datetime.fromtimestamp(time.time() if at is None else at, tz=timezone.utc)
    signature = Webhook(secret).sign(msg_id, moment, body.decode())
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(moment.timestamp())),
        "webhook-signature": signature,
    }


def request(headers: dict, body: bytes = BODY) -> HttpRequest:
    return HttpRequest("POST", "/upgrades", {k.lower(): v for k, v in headers.items()}, body)


def test_a_valid_signature_yields_the_webhook_id_as_delivery_id():
    verified = StandardWebhooksAuth(SECRET).verify(request(signed(msg_id="msg_2b1c")))
    assert verified.delivery_id == "msg_2b1c"


@pytest.mark.parametrize("missing", ["webhook-id", "webhook-timestamp", "webhook-signature"])
def test_a_missing_header_is_named(missing):
    headers = signed()
    del headers[missing]
    with pytest.raises(Unauthorized, match=missing):
        StandardWebhooksAuth(SECRET).verify(request(headers))


def test_a_signature_made_with_another_secret_is_refused():
    with pytest.raises(Unauthorized, match="no signature matches"):
        StandardWebhooksAuth(SECRET).verify(request(signed(secret=OTHER_SECRET)))


def test_a_body_changed_after_signing_is_refused():
    headers = signed()
    with pytest.raises(Unauthorized, match="no signature matches"):
        StandardWebhooksAuth(SECRET).verify(request(headers, BODY.replace(b"7.0", b"6.0")))


@pytest.mark.parametrize("offset", [-6 * 60, 6 * 60], ids=["expired", "future-dated"])
def test_a_timestamp_outside_five_minutes_is_refused(offset):
    with pytest.raises(Unauthorized, match="5-minute tolerance"):
        StandardWebhooksAuth(SECRET).verify(request(signed(at=time.time() + offset)))


def test_a_timestamp_within_five_minutes_is_accepted():
    StandardWebhooksAuth(SECRET).verify(request(signed(at=time.time() - 4 * 60)))


@pytest.mark.parametrize(
    "signature",
    ["garbage", "v1", "v1,", "v1,!!!notbase64", "v2,abcd", ""],
)
def test_a_malformed_signature_header_is_refused_not_crashed(signature):
    headers = {**signed(), "webhook-signature": signature}
    with pytest.raises(Unauthorized):
        StandardWebhooksAuth(SECRET).verify(request(headers))


def test_a_non_numeric_timestamp_is_refused():
    headers = {**signed(), "webhook-timestamp": "yesterday"}
    with pytest.raises(Unauthorized, match="Unix time"):
        StandardWebhooksAuth(SECRET).verify(request(headers))


def test_any_one_of_several_signatures_may_match():
    good = signed()
    wrong = signed(secret=OTHER_SECRET)["webhook-signature"]
    headers = {**good, "webhook-signature": f"{wrong} v1a,ignored junk {good['webhook-signature']}"}
    assert StandardWebhooksAuth(SECRET).verify(request(headers)).delivery_id == "msg_1"


def test_a_secret_rotation_signs_twice_and_either_key_verifies():
    both = f"{signed(secret=OTHER_SECRET)['webhook-signature']} {signed()['webhook-signature']}"
    headers = {**signed(), "webhook-signature": both}
    StandardWebhooksAuth(SECRET).verify(request(headers))
    StandardWebhooksAuth(OTHER_SECRET).verify(request(headers))


@pytest.mark.parametrize("secret", ["whsec_", "whsec_not base64!"])
def test_a_bad_secret_is_a_config_error_naming_the_variable_not_the_value(secret):
    with pytest.raises(ConfigError) as raised:
        StandardWebhooksAuth(secret)
    assert raised.value.variable == "DBUPGRADE_WEBHOOK_SECRET"
    assert "not base64!" not in str(raised.value)


def hub(body: bytes, key: str = "jira-shared-secret-24-bytes") -> str:
    return "sha256=" + hmac.new(key.encode(), body, hashlib.sha256).hexdigest()


@pytest.mark.parametrize("header", ["X-Hub-Signature-256", "X-Hub-Signature"])
def test_hub_sha256_accepts_the_body_hmac_in_either_header(header):
    verified = HubSha256Auth("jira-shared-secret-24-bytes").verify(request({header: hub(BODY)}))
    assert verified.delivery_id is None


def test_hub_sha256_accepts_upper_case_hex():
    HubSha256Auth("jira-shared-secret-24-bytes").verify(request({"X-Hub-Signature-256": hub(BODY).upper()}))


@pytest.mark.parametrize(
    "value,reason",
    [
        (None, "missing header"),
        ("sha1=abcdef", "sha256=<hex>"),
        ("sha256=", "sha256=<hex>"),
        ("sha256=00ff", "no signature matches"),
        ("sha256=é", "no signature matches"),
    ],
)
def test_hub_sha256_refuses_missing_malformed_or_wrong(value, reason):
    headers = {"X-Hub-Signature-256": value} if value is not None else {}
    with pytest.raises(Unauthorized, match=reason):
        HubSha256Auth("jira-shared-secret-24-bytes").verify(request(headers))


def test_hub_sha256_refuses_a_signature_made_with_another_key():
    with pytest.raises(Unauthorized, match="no signature matches"):
        HubSha256Auth("jira-shared-secret-24-bytes").verify(
            request({"X-Hub-Signature-256": hub(BODY, "wrong")})
        )


def test_no_secret_means_not_configured_unless_auth_is_none():
    assert authenticator("standard", None) is None
    assert authenticator("hub-sha256", "") is None
    assert isinstance(authenticator("none", None), NoAuth)


def test_auth_none_passes_the_unsigned_webhook_id_along():
    assert NoAuth().verify(request({"webhook-id": "msg_9"})).delivery_id == "msg_9"


@pytest.mark.parametrize("value,mode", [(None, "standard"), ("", "standard"), ("hub-sha256", "hub-sha256")])
def test_auth_mode_defaults_to_standard(value, mode):
    assert auth_mode(value) == mode


def test_an_unknown_auth_mode_names_the_variable():
    with pytest.raises(ConfigError, match="DBUPGRADE_WEBHOOK_AUTH"):
        auth_mode("basic")


def test_status_reads_need_the_bearer_token():
    guard = StatusReadAuth("status-token-for-unit-tests-0123", open_access=False)
    guard.check(
        HttpRequest("GET", "/upgrades/x", {"authorization": "Bearer status-token-for-unit-tests-0123"})
    )
    for headers in (
        {},
        {"authorization": "Bearer wrong"},
        {"authorization": "Basic status-token-for-unit-tests-0123"},
    ):
        with pytest.raises(Unauthorized):
            guard.check(HttpRequest("GET", "/upgrades/x", headers))


def test_status_reads_are_refused_without_a_token_and_open_under_auth_none():
    with pytest.raises(Unauthorized, match="DBUPGRADE_WEBHOOK_STATUS_TOKEN"):
        StatusReadAuth(None, open_access=False).check(HttpRequest("GET", "/upgrades/x"))
    StatusReadAuth(None, open_access=True).check(HttpRequest("GET", "/upgrades/x"))
