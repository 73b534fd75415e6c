"""Booked upgrades under control, on localcloud and a real Redis: listed, rescheduled (never past the
deadline: the service's answer is shown and nothing changes) and cancelled (no switchover happens),
from the CLI and the webhook; each change recorded and notified. Also the progress the tracker keeps,
as GET /upgrades/{id} and `dbupgrade status` show it."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from alibabacloud_dds20151201 import models as dm
from alibabacloud_dds20151201.client import Client as DdsClient
from alibabacloud_tea_openapi.models import Config as SdkConfig
from click.testing import CliRunner
from dbupgrade.cli.commands import cli

from tests.conftest import AK_ID, AK_SECRET
from tests.functional.core.conftest import mongo_entry
from tests.functional.tracker.conftest import TrackBench, window_from_now
from tests.functional.webhook.webhook_harness import STATUS_TOKEN, WEBHOOK_SECRET, Hook, body_of, sign

UPGRADE_SECONDS = 600
BOOKED = "dds-bp1booked000001"
NOW = "dds-bp1bookednow001"


@pytest.fixture
def bench(make_track: Callable[..., TrackBench]) -> TrackBench:
    start, end = window_from_now(3)
    seed = {
        "mongodb": [
            mongo_entry(BOOKED, "5.0", MaintainStartTime=start, MaintainEndTime=end),
            mongo_entry(NOW, "5.0"),
        ],
        "upgrade_seconds": UPGRADE_SECONDS,
    }
    return make_track(
        seed, DBUPGRADE_WEBHOOK_SECRET=WEBHOOK_SECRET, DBUPGRADE_WEBHOOK_STATUS_TOKEN=STATUS_TOKEN
    )


def dds(bench: TrackBench) -> DdsClient:
    config = SdkConfig(
        access_key_id=AK_ID, access_key_secret=AK_SECRET, endpoint=bench.lc.url.removeprefix("http://")
    )
    config.protocol, config.region_id = "http", "cn-hangzhou"
    return DdsClient(config)


def version(bench: TrackBench, instance_id: str = BOOKED) -> str:
    request = dm.DescribeDBInstanceAttributeRequest(dbinstance_id=instance_id)
    return str(
        dds(bench).describe_dbinstance_attribute(request).body.dbinstances.dbinstance[0].engine_version
    )


def event(bench: TrackBench) -> Any:
    """The instance's O&M event as the official client lists it."""
    request = dm.DescribeActiveOperationTasksRequest(ins_name=BOOKED, region="cn-hangzhou")
    [item] = dds(bench).describe_active_operation_tasks(request).body.items
    return item


def book(bench: TrackBench) -> None:
    outcome = bench.upgrade(BOOKED, "6.0", effective="maintenance_window", ticket_id="CHG-9")
    assert outcome.status == "submitted"
    bench.tick()
    assert bench.upgrader().status(BOOKED).status == "scheduled"  # type: ignore[union-attr]


def stamp(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)


def cli_run(bench: TrackBench, *args: str) -> Any:
    return CliRunner().invoke(cli, list(args), env=bench.env)


def webhook(bench: TrackBench) -> tuple[Hook, Any]:
    hook = Hook(bench.lc, bench.env)
    return hook, hook.app()


def test_booked_list_shows_the_booking_and_that_dbupgrade_made_it(bench: TrackBench) -> None:
    book(bench)

    result = cli_run(bench, "booked", "list", "--json")

    assert result.exit_code == 0, result.output
    [row] = json.loads(result.output)
    assert (row["instance_id"], row["state"], row["ours"], row["ticket_id"]) == (
        BOOKED,
        "pending",
        True,
        "CHG-9",
    )
    assert (row["from_version"], row["to_version"]) == ("5.0", "6.0")
    assert row["switch_time"] == event(bench).switch_time and row["deadline"] == event(bench).deadline
    hook, app = webhook(bench)
    reply = hook.wsgi(app, "GET", "/booked", headers={"authorization": f"Bearer {STATUS_TOKEN}"})
    assert reply.status == 200 and [r["instance_id"] for r in reply.json()["booked"]] == [BOOKED]
    assert hook.wsgi(app, "GET", "/booked").status == 401


def test_reschedule_past_the_deadline_is_refused_with_the_services_answer(bench: TrackBench) -> None:
    book(bench)
    before = event(bench)
    late = stamp(parse(before.deadline) + timedelta(hours=1))
    notes = len(bench.published())

    result = cli_run(bench, "booked", "reschedule", BOOKED, late)
    hook, app = webhook(bench)
    body = body_of({"switch_time": late})
    reply = hook.wsgi(app, "POST", f"/booked/{BOOKED}/reschedule", body, sign(body))

    assert result.exit_code == 1
    assert "refused by the service, nothing changed: SwitchTimeAfterDeadline" in result.output
    assert (reply.status, reply.json()["code"]) == (409, "SwitchTimeAfterDeadline")
    assert event(bench).switch_time == before.switch_time  # nothing moved
    assert bench.upgrader().status(BOOKED).status == "scheduled"  # type: ignore[union-attr]
    assert len(bench.published()) == notes  # nothing notified
    unsigned = hook.wsgi(app, "POST", f"/booked/{BOOKED}/reschedule", body)
    assert unsigned.status == 401


def test_a_rescheduled_booking_is_recorded_notified_and_followed_to_its_new_time(bench: TrackBench) -> None:
    book(bench)
    soon = stamp(bench.now() + timedelta(minutes=10))
    hook, app = webhook(bench)
    body = body_of({"switch_time": soon})

    reply = hook.wsgi(app, "POST", f"/booked/{BOOKED}/reschedule", body, sign(body))

    assert reply.status == 200, reply.text
    assert (reply.json()["status"], reply.json()["switch_at"]) == ("rescheduled", soon)
    assert event(bench).switch_time == soon
    [note] = [n for n in bench.published() if n["event"] == "upgrade.rescheduled"]
    assert (note["instance_id"], note["switch_at"], note["ticket_id"]) == (BOOKED, soon, "CHG-9")
    bench.advance(600 + UPGRADE_SECONDS + 5)  # long before the window would have opened
    bench.tick()
    assert version(bench) == "6.0"
    assert bench.upgrader().status(BOOKED).status == "completed"  # type: ignore[union-attr]


def test_a_cancelled_booking_never_switches_and_is_recorded_and_notified(bench: TrackBench) -> None:
    book(bench)

    result = cli_run(bench, "booked", "cancel", BOOKED)

    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["status"] == "cancelled"
    bench.advance(4 * 3600 + UPGRADE_SECONDS)  # past the window and the upgrade's time
    summary = bench.tick()
    assert summary["checked"] == 0  # no longer followed
    assert version(bench) == "5.0"  # no switchover
    assert event(bench).status == 7  # cancelled, as the service lists it
    assert bench.events(BOOKED) == ["upgrade.submitted", "upgrade.scheduled", "upgrade.cancelled"]
    latest = bench.upgrader().status(BOOKED)
    assert latest is not None and (latest.status, latest.ticket_id) == ("cancelled", "CHG-9")
    assert bench.upgrader().store.claim_of(BOOKED) is None  # the instance is free again
    assert bench.upgrade(BOOKED, "6.0").status == "submitted"
    again = cli_run(bench, "booked", "cancel", BOOKED)
    assert again.exit_code == 1 and "follows no upgrade" in again.output


def test_progress_shows_in_get_upgrades_and_dbupgrade_status(bench: TrackBench) -> None:
    bench.upgrade(NOW, "6.0")
    bench.advance(UPGRADE_SECONDS / 2)
    bench.tick()
    hook, app = webhook(bench)

    reply = hook.wsgi(app, "GET", f"/upgrades/{NOW}", headers={"authorization": f"Bearer {STATUS_TOKEN}"})
    shown = cli_run(bench, "status", NOW)

    assert reply.status == 200
    body = reply.json()
    assert body["status"] == "submitted" and 40 <= body["progress"] <= 60
    assert 250 <= body["remaining_seconds"] <= 350 and body["current_step"] == "exec_task"
    assert shown.exit_code == 0 and "%" in shown.output and "left" in shown.output
