"""The claim read travels in the idempotency in-progress write's round trip (issue #15): what it
reads must still decide the request before any cloud call, as the read of its own did."""

from __future__ import annotations

from tests.functional.webhook.webhook_harness import Hook, body_of, sign


def test_a_new_delivery_for_an_instance_already_upgrading_is_answered_from_its_claim_without_a_cloud_call(
    hook: Hook,
):
    app = hook.app()
    first = body_of({"instance_id": "r-bp1demo0000000001", "target_version": "7.0", "ticket_id": "CHG-1"})
    assert hook.wsgi(app, "POST", "/upgrades", first, sign(first)).json()["status"] == "submitted"
    calls_before = len(hook.cloud_calls())

    again = body_of({"instance_id": "r-bp1demo0000000001", "target_version": "7.0", "ticket_id": "CHG-2"})
    reply = hook.wsgi(app, "POST", "/upgrades", again, sign(again))

    assert reply.status == 200
    assert (reply.json()["status"], reply.json()["reason"]) == ("in_progress", "upgrade_in_flight")
    assert "CHG-1" in reply.json()["message"]  # the claim it read is the first request's
    assert len(hook.cloud_calls()) == calls_before
