"""The webhook end to end: signed tickets in, one upgrade call and one notification out."""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import logging
from pathlib import Path

import pytest
from dbupgrade.logging import logger

from tests.conftest import AK_SECRET
from tests.functional.webhook.webhook_harness import STATUS_TOKEN, WEBHOOK_SECRET, Hook, body_of, sign

ROOT = Path(__file__).resolve().parents[3]
UPGRADE = {"instance_id": "r-bp1demo0000000001", "target_version": "7.0", "ticket_id": "CHG-2001"}


@pytest.mark.parametrize("shape", ["wsgi", "fc3"])
def test_the_same_signed_delivery_five_times_calls_the_upgrade_api_once(hook: Hook, shape: str):
    app = hook.app()
    call = getattr(hook, shape)
    body = body_of(UPGRADE)
    headers = sign(body, "msg_same_delivery_1")
    replies = [call(app, "POST", "/upgrades", body, headers) for _ in range(5)]

    assert [r.status for r in replies] == [202] * 5
    request_ids = {r.json()["request_id"] for r in replies}
    assert len(request_ids) == 1 and None not in request_ids
    assert replies[0].json()["status"] == "submitted"
    assert replies[0].headers["content-type"] == "application/json"
    upgrade_calls = hook.calls("ModifyInstanceMajorVersion")
    assert len(upgrade_calls) == 1
    assert upgrade_calls[0]["params"]["MajorVersion"] == "7.0"
    assert [m["event"] for m in hook.published()] == ["upgrade.submitted"]


def test_a_new_delivery_of_the_same_ticket_is_not_resubmitted_while_upgrading(hook: Hook):
    app = hook.app()
    body = body_of(UPGRADE)
    first = hook.wsgi(app, "POST", "/upgrades", body, sign(body))
    second = hook.wsgi(app, "POST", "/upgrades", body, sign(body))
    assert (first.status, second.status) == (202, 200)
    assert second.json()["status"] == "in_progress"
    assert len(hook.calls("ModifyInstanceMajorVersion")) == 1


def test_a_dry_run_answers_200_with_the_verdict_and_submits_records_and_notifies_nothing(hook: Hook):
    app = hook.app()
    body = body_of({**UPGRADE, "dry_run": True})
    reply = hook.wsgi(app, "POST", "/upgrades", body, sign(body))

    assert reply.status == 200
    assert (reply.json()["status"], reply.json()["dry_run"], reply.json()["from_version"]) == (
        "submitted",
        True,
        "6.0",
    )
    assert hook.calls("ModifyInstanceMajorVersion") == [] and hook.published() == []
    status = hook.wsgi(
        app, "GET", f"/upgrades/{UPGRADE['instance_id']}", headers={"authorization": f"Bearer {STATUS_TOKEN}"}
    )
    assert status.status == 404  # nothing recorded


@pytest.mark.parametrize(
    "make_headers,reason",
    [
        (lambda body: {}, "missing header"),
        (lambda body: sign(body, secret="whsec_" + "d3Jvbmcta2V5LXdyb25nLWtleQ=="), "no signature matches"),
        (lambda body: sign(body, age=10 * 60), "5-minute tolerance"),
        (lambda body: sign(body, age=-10 * 60), "5-minute tolerance"),
        (lambda body: {**sign(body), "webhook-signature": "v1,not-a-signature"}, "no v1,<base64>"),
        (lambda body: sign(b'{"instance_id":"r-bp1hook00000002","target_version":"7.0"}'), "no signature"),
    ],
    ids=["missing", "wrong-secret", "expired", "future", "malformed", "other-body"],
)
def test_a_bad_signature_is_401_and_nothing_is_called_or_recorded(hook: Hook, make_headers, reason):
    app = hook.app()
    body = body_of(UPGRADE)
    reply = hook.wsgi(app, "POST", "/upgrades", body, make_headers(body))
    assert reply.status == 401
    assert reply.headers["content-type"] == "application/problem+json"
    assert reason in reply.json()["detail"]
    assert hook.cloud_calls() == []
    assert hook.published() == []


@pytest.mark.parametrize(
    "data,field",
    [
        ({"target_version": "7.0"}, "instance_id"),
        ({"instance_id": "i-notadatabase", "target_version": "7.0"}, "instance_id"),
        ({"instance_id": "r-bp1demo0000000001"}, "target_version"),
        ({"instance_id": "r-bp1demo0000000001", "target_version": "9.9"}, "target_version"),
        ({**UPGRADE, "effective": "later"}, "effective"),
        ({**UPGRADE, "engine": "postgres"}, "engine"),
        ({**UPGRADE, "region": "Hangzhou"}, "region"),
        ({**UPGRADE, "dry_run": "yes"}, "dry_run"),
        ({**UPGRADE, "ticket_id": "x" * 200}, "ticket_id"),
        ({**UPGRADE, "colour": "blue"}, "colour"),
    ],
)
def test_each_bad_field_is_a_422_naming_it_recorded_and_notified(hook: Hook, data, field):
    app = hook.app()
    body = body_of(data)
    reply = hook.fc3(app, "POST", "/upgrades", body, sign(body))
    problem = reply.json()
    assert reply.status == 422
    assert reply.headers["content-type"] == "application/problem+json"
    assert problem["field"] == field
    assert problem["type"] == "urn:dbupgrade:problem:invalid-field"
    assert field in problem["detail"]
    assert problem["outcome"]["status"] == "rejected"
    assert hook.cloud_calls() == []
    assert [(m["event"], m["source"]) for m in hook.published()] == [("upgrade.rejected", "webhook")]


def test_allowed_values_are_listed_for_a_finite_field(hook: Hook):
    body = body_of({**UPGRADE, "effective": "later"})
    problem = hook.wsgi(hook.app(), "POST", "/upgrades", body, sign(body)).json()
    assert problem["allowed"] == ["immediate", "maintenance_window"]


@pytest.mark.parametrize(
    "body,detail",
    [
        (b'{"instance_id": ', "not valid JSON"),
        (b'["r-bp1demo0000000001"]', "must be a JSON object"),
        (b"[" * 40 + b"]" * 40, "must be a JSON object"),
        (b'{"a":' * 40 + b"1" + b"}" * 40, "nested deeper"),
        (b'{"a":' * 5000 + b"1" + b"}" * 5000, "nested deeper"),
    ],
    ids=["truncated", "array", "deep-array", "deep-object", "very-deep"],
)
def test_a_malformed_body_after_a_valid_signature_is_400_and_recorded(hook: Hook, body, detail):
    reply = hook.wsgi(hook.app(), "POST", "/upgrades", body, sign(body))
    assert reply.status == 400
    assert reply.json()["field"] == "body"
    assert detail in reply.json()["detail"]
    assert [m["event"] for m in hook.published()] == ["upgrade.rejected"]


def test_a_body_that_is_not_utf8_is_400_and_not_recorded(hook: Hook):
    body = b'{"instance_id": "\xff\xfe"}'
    headers = {"webhook-id": "msg_1", "webhook-timestamp": "1", "webhook-signature": "v1,AAAA"}
    reply = hook.wsgi(hook.app(), "POST", "/upgrades", body, headers)
    assert reply.status == 400
    assert "not UTF-8" in reply.json()["detail"]
    assert hook.published() == []


@pytest.mark.parametrize("shape", ["wsgi", "fc3"])
def test_a_body_over_64_kib_is_413(hook: Hook, shape: str):
    body = body_of({**UPGRADE, "padding": "x" * (64 * 1024)})
    reply = getattr(hook, shape)(hook.app(), "POST", "/upgrades", body, sign(body))
    assert reply.status == 413
    assert hook.cloud_calls() == []


def test_a_batch_gets_one_reply_per_item(hook: Hook):
    batch = {
        "upgrades": [
            {"instance_id": "r-bp1hook00000002", "target_version": "7.0"},
            {"instance_id": "r-bp1hook00000002", "target_version": "nope"},
            {"instance_id": "dds-bp1hook0000001", "target_version": "5.0"},
        ]
    }
    body = body_of(batch)
    headers = sign(body, "msg_batch_1")
    app = hook.app()
    reply = hook.wsgi(app, "POST", "/upgrades", body, headers)
    assert reply.status == 207
    results = reply.json()["results"]
    assert [(r["index"], r["http_status"]) for r in results] == [(0, 202), (1, 422), (2, 202)]
    assert results[1]["field"] == "target_version"
    assert len(hook.calls("ModifyInstanceMajorVersion")) == 1
    assert len(hook.calls("UpgradeDBInstanceEngineVersion")) == 1

    again = hook.wsgi(app, "POST", "/upgrades", body, headers)
    assert [r["request_id"] for r in again.json()["results"][::2]] == [r["request_id"] for r in results[::2]]
    assert len(hook.calls("ModifyInstanceMajorVersion")) == 1


@pytest.mark.parametrize(
    "batch,field",
    [
        ({"upgrades": []}, "upgrades"),
        ({"upgrades": [UPGRADE] * 51}, "upgrades"),
        ({"upgrades": [], "x": 1}, "x"),
    ],
)
def test_a_bad_batch_is_one_422(hook: Hook, batch, field):
    body = body_of(batch)
    reply = hook.wsgi(hook.app(), "POST", "/upgrades", body, sign(body))
    assert (reply.status, reply.json()["field"]) == (422, field)
    assert hook.cloud_calls() == []


def test_already_at_target_is_200_noop_and_a_downgrade_is_409(hook: Hook):
    app = hook.app()
    at_target = body_of({"instance_id": "r-bp1attarget0001", "target_version": "7.0"})
    downgrade = body_of({"instance_id": "r-bp1newer0000001", "target_version": "6.0"})
    noop = hook.wsgi(app, "POST", "/upgrades", at_target, sign(at_target))
    rejected = hook.wsgi(app, "POST", "/upgrades", downgrade, sign(downgrade))
    assert (noop.status, noop.json()["status"]) == (200, "noop")
    assert rejected.status == 409
    assert (rejected.json()["reason"], rejected.json()["field"]) == ("downgrade", "target_version")
    assert hook.calls("ModifyInstanceMajorVersion") == []


def test_throttling_that_outlasts_the_retries_is_429_with_retry_after(hook: Hook):
    hook.faults([{"product": "r-kvstore", "action": "ModifyInstanceMajorVersion", "throttle_rate": 1.0}])
    body = body_of(UPGRADE)
    reply = hook.wsgi(hook.app(), "POST", "/upgrades", body, sign(body))
    assert reply.status == 429
    assert int(reply.headers["retry-after"]) > 0
    assert reply.json()["code"].startswith("Throttling")


def test_a_non_transient_api_error_is_502_with_the_api_code(hook: Hook):
    hook.faults([{"product": "r-kvstore", "action": "ModifyInstanceMajorVersion", "error_rate": 1.0}])
    body = body_of(UPGRADE)
    reply = hook.wsgi(hook.app(), "POST", "/upgrades", body, sign(body))
    assert reply.status == 502
    assert reply.json()["code"]
    assert reply.json()["outcome"]["status"] == "failed"


def test_the_store_down_is_503_with_retry_after_and_no_cloud_call(hook: Hook, tmp_path):
    app = hook.app(DBUPGRADE_REDIS_URL=f"unix://{tmp_path}/no-redis.sock")
    body = body_of(UPGRADE)
    reply = hook.wsgi(app, "POST", "/upgrades", body, sign(body))
    assert reply.status == 503
    assert int(reply.headers["retry-after"]) > 0
    assert hook.cloud_calls() == []


def test_status_of_an_instance_is_its_latest_outcome_behind_a_bearer_token(hook: Hook):
    app = hook.app()
    body = body_of(UPGRADE)
    submitted = hook.wsgi(app, "POST", "/upgrades", body, sign(body)).json()
    path = "/upgrades/r-bp1demo0000000001"

    status = hook.fc3(app, "GET", path, headers={"authorization": f"Bearer {STATUS_TOKEN}"})
    assert status.status == 200
    assert (status.json()["status"], status.json()["request_id"]) == ("submitted", submitted["request_id"])

    assert hook.wsgi(app, "GET", path).status == 401
    assert hook.wsgi(app, "GET", path, headers={"authorization": "Bearer wrong"}).status == 401
    unknown = hook.wsgi(
        app, "GET", "/upgrades/r-bp1hook00000002", headers={"authorization": f"Bearer {STATUS_TOKEN}"}
    )
    assert unknown.status == 404
    assert unknown.headers["content-type"] == "application/problem+json"


def test_no_secret_configured_refuses_every_post(hook: Hook):
    app = hook.app(DBUPGRADE_WEBHOOK_SECRET="")
    body = body_of(UPGRADE)
    reply = hook.wsgi(app, "POST", "/upgrades", body, sign(body))
    assert reply.status == 503
    assert "DBUPGRADE_WEBHOOK_SECRET" in reply.json()["detail"]
    assert hook.cloud_calls() == []


def test_auth_none_accepts_an_unsigned_post(hook: Hook):
    app = hook.app(DBUPGRADE_WEBHOOK_AUTH="none", DBUPGRADE_WEBHOOK_SECRET="")
    reply = hook.wsgi(app, "POST", "/upgrades", body_of(UPGRADE))
    assert reply.status == 202


def test_hub_sha256_with_a_jira_mapping_submits_the_ticket_once(hook: Hook):
    mapping = {
        "instance_id": "issue.fields.customfield_10050",
        "target_version": "issue.fields.customfield_10051.value",
        "ticket_id": "issue.key",
    }
    app = hook.app(
        DBUPGRADE_WEBHOOK_AUTH="hub-sha256",
        DBUPGRADE_WEBHOOK_SECRET="jira-shared-secret-0a9b-2f4c",
        DBUPGRADE_WEBHOOK_MAPPING=json.dumps(mapping),
    )
    body = (ROOT / "events" / "webhook-jira.json").read_bytes()
    digest = hmac.new(b"jira-shared-secret-0a9b-2f4c", body, hashlib.sha256).hexdigest()
    replies = [
        hook.wsgi(app, "POST", "/upgrades", body, {"X-Hub-Signature": f"sha256={digest}"}) for _ in range(3)
    ]
    assert replies[0].status == 202
    assert replies[0].json()["ticket_id"] == "OPS-1234"
    assert len(hook.calls("ModifyInstanceMajorVersion")) == 1

    unfillable = json.dumps({"issue": {"key": "OPS-9", "fields": {}}}).encode()
    digest = hmac.new(b"jira-shared-secret-0a9b-2f4c", unfillable, hashlib.sha256).hexdigest()
    reply = hook.wsgi(app, "POST", "/upgrades", unfillable, {"X-Hub-Signature-256": f"sha256={digest}"})
    assert (reply.status, reply.json()["field"]) == (422, "instance_id")


@pytest.mark.parametrize(
    "overrides,variable",
    [
        ({"DBUPGRADE_WEBHOOK_MAPPING": '{"instance_id": "issue.["}'}, "DBUPGRADE_WEBHOOK_MAPPING"),
        ({"DBUPGRADE_WEBHOOK_AUTH": "basic"}, "DBUPGRADE_WEBHOOK_AUTH"),
        ({"DBUPGRADE_REGION": "Hangzhou"}, "DBUPGRADE_REGION"),
    ],
)
def test_a_misconfiguration_is_500_naming_the_variable(hook: Hook, overrides, variable):
    body = body_of(UPGRADE)
    reply = hook.wsgi(hook.app(**overrides), "POST", "/upgrades", body, sign(body))
    assert reply.status == 500
    assert reply.json()["detail"] == f"misconfigured: {variable}"
    assert reply.json()["correlation_id"]


def test_healthz_openapi_and_unknown_routes(hook: Hook):
    app = hook.app()
    health = hook.wsgi(app, "GET", "/healthz")
    assert (health.status, health.json()["status"], health.json()["auth"]) == (200, "ok", "standard")

    document = hook.fc3(app, "GET", "/openapi.json").json()
    assert document["openapi"].startswith("3.1")
    assert set(document["paths"]) == {
        "/upgrades",
        "/upgrades/{instance_id}",
        "/booked",
        "/booked/{instance_id}/reschedule",
        "/booked/{instance_id}/cancel",
        "/healthz",
        "/openapi.json",
    }
    documented = set(document["paths"]["/upgrades"]["post"]["responses"])
    assert {"200", "202", "207", "400", "401", "409", "413", "422", "429", "500", "502", "503"} <= documented
    assert "StandardWebhooks" in document["components"]["securitySchemes"]

    assert hook.wsgi(app, "GET", "/nowhere").status == 404
    wrong_method = hook.wsgi(app, "GET", "/upgrades")
    assert (wrong_method.status, wrong_method.headers["allow"]) == (405, "POST")


def test_the_fc2_proxy_path_prefix_routes_like_the_bare_path(hook: Hook):
    body = body_of(UPGRADE)
    reply = hook.wsgi(hook.app(), "POST", "/2016-08-15/proxy/dbupgrade/webhook/upgrades", body, sign(body))
    assert reply.status == 202


def test_no_secret_appears_in_any_reply_or_log(hook: Hook):
    # The lines as FC would ship them: the logger's own (masking) formatter, into a buffer.
    lines = io.StringIO()
    handler = logging.StreamHandler(lines)
    handler.setFormatter(logger.registered_formatter)
    logging.getLogger(logger.name).addHandler(handler)
    app = hook.app()
    body = body_of(UPGRADE)
    hook.wsgi(app, "POST", "/upgrades", body, sign(body))
    hook.wsgi(app, "POST", "/upgrades", body, sign(body, secret="whsec_" + "b3RoZXIta2V5LW90aGVyLWtleQ=="))
    hook.wsgi(app, "POST", "/upgrades", b"{", sign(b"{"))
    hook.fc3(app, "GET", "/upgrades/r-bp1demo0000000001", headers={"authorization": f"Bearer {STATUS_TOKEN}"})
    hook.wsgi(hook.app(DBUPGRADE_WEBHOOK_MAPPING="{bad"), "POST", "/upgrades", body, sign(body))
    logging.getLogger(logger.name).removeHandler(handler)
    logs = lines.getvalue()
    assert "webhook reply" in logs and "signature refused" in logs
    secret_key = WEBHOOK_SECRET.removeprefix("whsec_")
    for text in [logs, *(r.text for r in hook.replies)]:
        for secret in (AK_SECRET, WEBHOOK_SECRET, secret_key, STATUS_TOKEN):
            assert secret not in text


def test_an_unknown_access_key_is_a_500_saying_what_to_fix_not_instance_not_found(hook: Hook):
    app = hook.app(ALIBABA_CLOUD_ACCESS_KEY_ID="LTAI5tNobodyKnowsThisKey")
    body = body_of(UPGRADE)
    reply = hook.wsgi(app, "POST", "/upgrades", body, sign(body, "msg_wrong_key"))

    assert reply.status == 500
    problem = reply.json()
    assert problem["type"].endswith(":misconfigured") and problem["reason"] == "configuration"
    assert problem["detail"] == (
        "the AccessKey ID is not known to Alibaba Cloud: check ALIBABA_CLOUD_ACCESS_KEY_ID or the "
        "function's role (InvalidAccessKeyId.NotFound)"
    )
    assert problem["code"] == "InvalidAccessKeyId.NotFound" and "field" not in problem
    assert "Traceback" not in reply.text and "CloudError" not in reply.text
    # Not remembered: the sender's retry, once the key is fixed, submits.
    again = hook.wsgi(hook.app(), "POST", "/upgrades", body, sign(body, "msg_wrong_key"))
    assert again.status == 202


def test_a_busy_instance_is_503_with_retry_after(hook: Hook):
    hook.faults(
        [
            {
                "product": "r-kvstore",
                "action": "ModifyInstanceMajorVersion",
                "error_rate": 1.0,
                "error_code": "Task.Conflict",
                "error_status": 403,
            }
        ]  # fmt: skip
    )
    body = body_of(UPGRADE)
    reply = hook.wsgi(hook.app(), "POST", "/upgrades", body, sign(body))

    assert reply.status == 503 and int(reply.headers["retry-after"]) > 0
    assert reply.json()["detail"] == "instance busy with another task; try again later (Task.Conflict)"
