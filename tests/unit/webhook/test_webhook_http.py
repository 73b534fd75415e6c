"""Problem bodies (RFC 9457) and the two FC entry shapes adapted to one request."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import pytest
from dbupgrade.webhook.adapters import (
    fc3_reply,
    request_from_environ,
    request_from_fc3_event,
    route_path,
    wsgi_reply,
)
from dbupgrade.webhook.http import MAX_BODY_BYTES, HttpResponse, problem

ROOT = Path(__file__).resolve().parents[3]


def test_a_problem_names_the_field_and_allowed_values():
    response = problem(
        422, "invalid-field", "effective: must be one of", field="effective", allowed=["immediate"]
    )
    assert response.status == 422
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json() == {
        "type": "urn:dbupgrade:problem:invalid-field",
        "title": "Unprocessable Entity",
        "status": 422,
        "detail": "effective: must be one of",
        "field": "effective",
        "allowed": ["immediate"],
    }


def test_a_problem_leaves_out_absent_extensions_and_keeps_extra_headers():
    response = problem(503, "store-unavailable", "retry", headers={"retry-after": "5"}, field=None)
    assert "field" not in response.json()
    assert response.headers["retry-after"] == "5"


def environ(body: bytes = b"{}", **extra):
    return {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": "/upgrades",
        "QUERY_STRING": "",
        "CONTENT_TYPE": "application/json",
        "CONTENT_LENGTH": str(len(body)),
        "HTTP_WEBHOOK_ID": "msg_1",
        "wsgi.input": io.BytesIO(body),
        **extra,
    }


def test_wsgi_headers_are_lower_case_with_hyphens():
    request = request_from_environ(environ(b'{"a":1}'))
    assert request.header("webhook-id") == "msg_1"
    assert request.header("Content-Type") == "application/json"
    assert request.body == b'{"a":1}'
    assert request.body_error is None


def test_wsgi_refuses_a_declared_oversized_body_without_reading_it():
    stream = io.BytesIO(b"x" * (MAX_BODY_BYTES + 10))
    request = request_from_environ(
        environ(**{"CONTENT_LENGTH": str(MAX_BODY_BYTES + 10), "wsgi.input": stream})
    )
    assert request.body_error is not None and request.body_error.status == 413
    assert stream.tell() == 0


def test_wsgi_refuses_an_oversized_body_of_unknown_length():
    env = environ(b"x" * (MAX_BODY_BYTES + 1))
    del env["CONTENT_LENGTH"]
    assert request_from_environ(env).body_error.status == 413


def test_wsgi_accepts_a_body_exactly_at_the_limit():
    assert request_from_environ(environ(b"x" * MAX_BODY_BYTES)).body_error is None


@pytest.mark.parametrize("length", ["abc", "-1"])
def test_wsgi_refuses_a_bad_content_length(length):
    assert request_from_environ(environ(CONTENT_LENGTH=length)).body_error.status == 400


def test_wsgi_reply_sends_status_line_headers_and_length():
    seen = {}

    def start_response(status, headers):
        seen["status"], seen["headers"] = status, dict(headers)

    body = b"".join(
        wsgi_reply(HttpResponse(202, b"{}", {"content-type": "application/json"}), start_response)
    )
    assert seen["status"] == "202 Accepted"
    assert seen["headers"]["content-length"] == "2"
    assert body == b"{}"


@pytest.mark.parametrize(
    "path,routed",
    [("/2016-08-15/proxy/dbupgrade/webhook/upgrades", "/upgrades"), ("/healthz/", "/healthz"), ("", "/")],
)
def test_route_path_drops_the_fc2_proxy_prefix_and_trailing_slash(path, routed):
    assert route_path(path) == routed


def test_the_sample_fc3_event_becomes_a_signed_post():
    event = (ROOT / "events" / "webhook-fc3-http.json").read_bytes()
    request = request_from_fc3_event(event)
    assert (request.method, request.path) == ("POST", "/upgrades")
    assert request.header("webhook-id") and request.header("webhook-signature")
    assert json.loads(request.body)["instance_id"]


def test_an_fc3_base64_body_is_decoded():
    event = {
        "rawPath": "/upgrades",
        "isBase64Encoded": True,
        "body": base64.b64encode(b'{"x":1}').decode(),
        "requestContext": {"http": {"method": "POST", "path": "/upgrades"}},
    }
    assert request_from_fc3_event(json.dumps(event).encode()).body == b'{"x":1}'


@pytest.mark.parametrize(
    "event,status",
    [
        (b"not json", 400),
        (b"[1]", 400),
        (json.dumps({"rawPath": "/upgrades", "body": 5}).encode(), 400),
        (json.dumps({"rawPath": "/upgrades", "body": "!!", "isBase64Encoded": True}).encode(), 400),
        (json.dumps({"rawPath": "/upgrades", "body": "x" * (MAX_BODY_BYTES + 1)}).encode(), 413),
    ],
)
def test_a_malformed_or_oversized_fc3_event_is_a_problem(event, status):
    assert request_from_fc3_event(event).body_error.status == status


def test_an_fc3_text_body_with_a_lone_surrogate_is_kept_as_non_utf8_bytes():
    event = json.dumps({"rawPath": "/upgrades", "body": "\ud800"}).encode()
    request = request_from_fc3_event(event)
    with pytest.raises(UnicodeDecodeError):
        request.body.decode("utf-8")


def test_fc3_reply_has_the_documented_fields():
    reply = fc3_reply(HttpResponse(200, b'{"status":"ok"}', {"content-type": "application/json"}))
    assert reply == {
        "statusCode": 200,
        "headers": {"content-type": "application/json"},
        "body": '{"status":"ok"}',
        "isBase64Encoded": False,
    }


def test_the_sample_fc3_event_is_signed_with_the_documented_test_secret():
    from datetime import datetime, timezone

    from dbupgrade.webhook.auth import standard_webhook_headers

    event = json.loads((ROOT / "events" / "webhook-fc3-http.json").read_text())
    headers = event["headers"]
    at = datetime.fromtimestamp(int(headers["webhook-timestamp"]), tz=timezone.utc)
    expected = standard_webhook_headers(
        "whsec_ZGJ1cGdyYWRlLWV4YW1wbGUtd2ViaG9vay1zZWNyZXQ=",
        event["body"].encode(),
        headers["webhook-id"],
        at,
    )
    assert headers["webhook-signature"] == expected["webhook-signature"]
    assert json.loads(event["body"]) == json.loads((ROOT / "events" / "webhook-upgrade.json").read_text())
