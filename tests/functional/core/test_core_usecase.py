"""The use case end to end: real localcloud (R-kvstore, Dds, MNS) and a real Redis store."""

from __future__ import annotations

import io
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path
from types import SimpleNamespace

import pytest
from dbupgrade.errors import StoreUnavailable
from dbupgrade.model import UpgradeRequest
from dbupgrade.request import parse_request
from dbupgrade.usecase import Upgrader

from tests.conftest import AK_ID, AK_SECRET
from tests.functional.core.conftest import STS_ID, STS_SECRET, STS_TOKEN, Bench


def request(instance_id: str, target: str, **fields: object) -> UpgradeRequest:
    return parse_request({"instance_id": instance_id, "target_version": target, **fields}, source="cli")


def test_redis_upgrade_is_submitted_once_and_notified(bench: Bench) -> None:
    outcome = bench.upgrader().run(request("r-bp1ready0000001", "7.0", ticket_id="CHG-1"))

    assert (outcome.status, outcome.from_version, outcome.to_version) == ("submitted", "6.0", "7.0")
    [call] = bench.upgrade_calls("r-bp1ready0000001")
    assert call["params"]["MajorVersion"] == "7.0" and call["params"]["EffectiveTime"] == "Immediately"
    assert outcome.request_id == call["request_id"]
    [note] = bench.published()
    assert note["event"] == "upgrade.submitted" and note["_tag"] == "submitted"
    assert (note["request_id"], note["ticket_id"], note["version"]) == (call["request_id"], "CHG-1", 1)


def test_mongodb_upgrade_checks_offered_versions_then_submits(bench: Bench) -> None:
    outcome = bench.upgrader().run(request("dds-bp1ready000001", "5.0", effective="maintenance_window"))

    assert outcome.status == "submitted"
    [call] = bench.upgrade_calls("dds-bp1ready000001")
    assert call["params"]["EngineVersion"] == "5.0" and call["params"]["SwitchMode"] == "1"
    assert bench.calls("DescribeAvailableEngineVersion", instance_id="dds-bp1ready000001")


def test_already_at_target_is_a_noop_without_an_upgrade_call(bench: Bench) -> None:
    outcome = bench.upgrader().run(request("r-bp1attarget0001", "7.0"))
    assert (outcome.status, outcome.reason) == ("noop", "already_at_target")
    assert bench.upgrade_calls("r-bp1attarget0001") == []
    assert [n["event"] for n in bench.published()] == ["upgrade.noop"]


def test_an_instance_already_upgrading_is_in_progress_pointing_at_that_upgrade(bench: Bench) -> None:
    upgrader = bench.upgrader()
    first = upgrader.run(request("dds-bp1ready000002", "5.0", ticket_id="CHG-A"))
    second = upgrader.run(request("dds-bp1ready000002", "5.0", ticket_id="CHG-B"))
    assert (second.status, second.reason) == ("in_progress", "upgrade_in_flight")
    assert second.request_id == first.request_id and second.ticket_id == "CHG-B"
    assert second.upgrade is not None and second.upgrade["ticket_id"] == "CHG-A"
    assert len(bench.upgrade_calls("dds-bp1ready000002")) == 1


@pytest.mark.parametrize(
    ("instance_id", "target", "reason"),
    [
        ("r-bp1notready0001", "7.0", "not_ready"),
        ("r-bp1missing00001", "7.0", "not_found"),
        ("dds-bp1missing0001", "5.0", "not_found"),
        ("r-bp1attarget0001", "6.0", "downgrade"),
        ("r-bp1classic00001", "7.0", "not_offered"),  # classic 5.0 cannot move to cloud-native 7.0
        ("dds-bp1latest00001", "7.0", "downgrade"),
    ],
)
def test_pre_check_refusals_make_no_upgrade_call(
    bench: Bench, instance_id: str, target: str, reason: str
) -> None:
    outcome = bench.upgrader().run(request(instance_id, target))
    assert (outcome.status, outcome.reason) == ("rejected", reason)
    assert bench.upgrade_calls(instance_id) == []
    assert bench.upgrader().status(instance_id) == outcome
    if reason == "not_found":
        assert outcome.code is not None and outcome.code.endswith(".NotFound")
    if reason == "not_ready":
        assert "Changing" in (outcome.message or "")


def test_the_same_request_five_times_calls_the_api_once(bench: Bench) -> None:
    upgrader = bench.upgrader()
    same = request("r-bp1ready0000002", "7.0").with_(delivery_id="msg-42", source="queue")
    outcomes = [upgrader.run(same) for _ in range(5)]

    assert len(bench.upgrade_calls("r-bp1ready0000002")) == 1
    assert {o.status for o in outcomes} == {"submitted"}
    assert len({o.request_id for o in outcomes}) == 1
    assert len(bench.published()) == 1
    # A fresh instance of the function (cold start) still remembers.
    assert bench.upgrader().run(same).request_id == outcomes[0].request_id


def test_half_the_calls_throttled_every_upgrade_submitted_once(bench: Bench) -> None:
    bench.faults([{"product": "r-kvstore", "throttle_rate": 0.5}])
    upgrader = bench.upgrader()
    fleet = [f"r-bp1fleet00000{n}" for n in range(8)]

    outcomes = [upgrader.run(request(iid, "7.0", rollout_id="roll-1")) for iid in fleet]

    assert [o.status for o in outcomes] == ["submitted"] * len(fleet)
    for iid in fleet:
        assert len([c for c in bench.upgrade_calls(iid) if c["status"] == 200]) == 1
    assert any(c["code"] == "Throttling.User" for c in bench.calls("ModifyInstanceMajorVersion"))


def test_a_lost_reply_is_reconciled_by_describing_not_by_resubmitting(bench: Bench) -> None:
    bench.faults([{"product": "r-kvstore", "action": "ModifyInstanceMajorVersion", "lost_reply_rate": 1.0}])
    outcome = bench.upgrader().run(request("r-bp1ready0000001", "7.0", ticket_id="CHG-7"))

    assert (outcome.status, outcome.reason) == ("submitted", "reconciled")
    assert len(bench.upgrade_calls("r-bp1ready0000001")) == 1
    describes = bench.calls("DescribeInstanceAttribute", instance_id="r-bp1ready0000001")
    assert len(describes) == 2  # the pre-check, then the look after the lost reply


def test_a_failed_publish_is_kept_for_the_tracker_not_published_by_the_next_request(bench: Bench) -> None:
    bench.faults([{"product": "mns", "error_rate": 1.0}])
    upgrader = bench.upgrader()
    first = upgrader.run(request("r-bp1ready0000001", "7.0"))
    assert first.status == "submitted" and bench.published() == []
    assert upgrader.store.outbox_size() == 1

    bench.faults([])
    upgrader.run(request("r-bp1attarget0001", "7.0"))

    assert [n["event"] for n in bench.published()] == ["upgrade.noop"]
    assert upgrader.store.outbox_size() == 1
    assert upgrader.drain_outbox() == 1  # what the tracker does every tick
    assert [n["event"] for n in bench.published()] == ["upgrade.noop", "upgrade.submitted"]
    assert bench.published()[1]["request_id"] == first.request_id
    assert upgrader.store.outbox_size() == 0


def test_credentials_come_from_an_fc2_context_before_the_env(bench: Bench) -> None:
    fc2_context = SimpleNamespace(
        request_id="fc-req-1",
        credentials=SimpleNamespace(
            access_key_id=STS_ID, access_key_secret=STS_SECRET, security_token=STS_TOKEN
        ),
        function=SimpleNamespace(name="webhook", timeout=60, memory=512),
        service=SimpleNamespace(name="dbupgrade"),
        region="cn-hangzhou",
        account_id="1234567890123456",
    )
    bench.upgrader().run(request("r-bp1ready0000001", "7.0"), fc2_context)
    [call] = bench.upgrade_calls("r-bp1ready0000001")
    assert call["access_key_id"] == STS_ID


def test_credentials_from_the_env_without_a_context(bench: Bench) -> None:
    bench.upgrader().run(request("r-bp1ready0000001", "7.0"))
    [call] = bench.upgrade_calls("r-bp1ready0000001")
    assert call["access_key_id"] == AK_ID


def test_no_secret_in_logs_outcomes_or_notifications(bench: Bench) -> None:
    from dbupgrade.logging import logger

    lines = io.StringIO()
    previous = logger.registered_handler.setStream(lines)  # the JSON lines exactly as FC would log them
    bench.faults([{"product": "r-kvstore", "throttle_rate": 0.5}])
    upgrader = bench.upgrader()
    outcomes = [
        upgrader.run(request("r-bp1ready0000001", "7.0")),
        upgrader.run(request("r-bp1missing00001", "7.0")),
        upgrader.run(
            request("r-bp1fleet000001", "7.0"),
            SimpleNamespace(
                request_id="fc-2",
                credentials=SimpleNamespace(
                    access_key_id=STS_ID, access_key_secret=STS_SECRET, security_token=STS_TOKEN
                ),
            ),
        ),
    ]
    logger.info("credentials check", extra={"leak": f"secret={AK_SECRET} token={STS_TOKEN}"})
    logger.registered_handler.setStream(previous)
    everything = lines.getvalue() + repr(outcomes) + repr(bench.published())
    for secret in (AK_SECRET, STS_SECRET, STS_TOKEN):
        assert secret not in everything
    assert "***" in lines.getvalue() and "r-bp1fleet000001" in lines.getvalue()


def test_store_down_fails_closed_before_any_cloud_call(bench: Bench) -> None:
    upgrader = bench.upgrader(DBUPGRADE_REDIS_URL="redis://127.0.0.1:1/0")
    with pytest.raises(StoreUnavailable):
        upgrader.run(request("r-bp1ready0000001", "7.0"))
    assert bench.get("/_localcloud/calls")["calls"] == []


def test_scope_guard_rejects_without_a_cloud_call(bench: Bench) -> None:
    upgrader = bench.upgrader(DBUPGRADE_ALLOWED_INSTANCES="r-bp1ready0000002")
    outcome = upgrader.run(request("r-bp1ready0000001", "7.0"))
    assert (outcome.status, outcome.reason, outcome.field) == ("rejected", "out_of_scope", "instance_id")
    regions = bench.upgrader(DBUPGRADE_ALLOWED_REGIONS="cn-shanghai").run(request("r-bp1ready0000001", "7.0"))
    assert (regions.status, regions.field) == ("rejected", "region")
    assert bench.calls("DescribeInstanceAttribute") == []


@pytest.mark.parametrize(
    ("policy", "status", "effective"),
    [
        ("reject", "deferred", "immediate"),
        ("maintenance_window", "submitted", "maintenance_window"),
        ("allow", "submitted", "immediate"),
    ],
)
def test_outside_the_window_the_policy_decides(
    bench: Bench, policy: str, status: str, effective: str
) -> None:
    from dbupgrade.config import Config
    from dbupgrade.store import open_store
    from dbupgrade.usecase import Upgrader

    from tests.functional.core.conftest import FAST_RETRY

    env = {**bench.env, "DBUPGRADE_WINDOW": "02:00-05:00 Asia/Shanghai", "DBUPGRADE_WINDOW_POLICY": policy}
    config = Config.from_env(env)
    noon_utc = datetime(2026, 11, 23, 12, 0, tzinfo=timezone.utc)  # 20:00 in Shanghai: outside
    upgrader = Upgrader(config, open_store(config), retry=FAST_RETRY, now=lambda: noon_utc)

    outcome = upgrader.run(request("r-bp1ready0000001", "7.0"))

    assert (outcome.status, outcome.effective) == (status, effective)
    calls = bench.upgrade_calls("r-bp1ready0000001")
    if status == "deferred":
        assert outcome.reason == "outside_window" and calls == []
    else:
        expected = {"immediate": "Immediately", "maintenance_window": "MaintainTime"}[effective]
        assert [c["params"]["EffectiveTime"] for c in calls] == [expected]


def test_unparseable_input_is_recorded_and_notified_once(bench: Bench) -> None:
    raw = {"instance_id": "r-bp1ready0000001", "target_version": "9.9"}
    with pytest.raises(Exception) as caught:
        parse_request(raw, source="webhook")
    outcome = bench.upgrader().reject(caught.value, raw, source="webhook", correlation_id="wh-1")  # type: ignore[arg-type]
    assert (outcome.status, outcome.field, outcome.instance_id) == (
        "rejected",
        "target_version",
        "r-bp1ready0000001",
    )
    assert [n["event"] for n in bench.published()] == ["upgrade.rejected"]
    assert bench.upgrader().status("r-bp1ready0000001") == outcome
    assert bench.get("/_localcloud/calls?product=r-kvstore")["calls"] == []


def test_select_finds_instances_by_tag_and_version(bench: Bench) -> None:
    found = bench.upgrader().select({"engine": "redis", "tags": {"env": "prod"}, "from_versions": ["6.0"]})
    assert sorted(f["instance_id"] for f in found) == [f"r-bp1fleet00000{n}" for n in range(8)]
    assert {(f["engine"], f["region"], f["version"], f["status"]) for f in found} == {
        ("redis", "cn-hangzhou", "6.0", "Normal")
    }
    mongo = bench.upgrader().select({"engine": "mongodb", "regions": ["cn-hangzhou"]})
    assert {m["instance_id"] for m in mongo} == {
        "dds-bp1ready000001",
        "dds-bp1ready000002",
        "dds-bp1latest00001",
    }


def test_dry_run_checks_but_neither_submits_nor_records(bench: Bench) -> None:
    outcome = bench.upgrader().run(request("r-bp1ready0000001", "7.0", dry_run=True))
    assert (outcome.status, outcome.dry_run, outcome.reason) == ("submitted", True, "dry_run")
    assert bench.upgrade_calls("r-bp1ready0000001") == []
    assert bench.published() == [] and bench.upgrader().status("r-bp1ready0000001") is None


def test_a_transient_failure_is_not_remembered_so_a_redelivery_retries(bench: Bench) -> None:
    bench.faults([{"product": "r-kvstore", "action": "ModifyInstanceMajorVersion", "error_rate": 1.0}])
    upgrader = bench.upgrader()
    message = request("r-bp1ready0000001", "7.0").with_(delivery_id="msg-9", source="queue")

    first = upgrader.run(message)
    assert (first.status, first.reason, first.code) == ("failed", "retries_exhausted", "ServiceUnavailable")

    bench.faults([])
    second = upgrader.run(message)
    assert second.status == "submitted"
    assert len([c for c in bench.upgrade_calls("r-bp1ready0000001") if c["status"] == 200]) == 1
    assert [n["event"] for n in bench.published()] == ["upgrade.failed", "upgrade.submitted"]


def test_a_refusal_is_not_retried(bench: Bench) -> None:
    outcome = bench.upgrader().run(request("r-bp1missing00001", "7.0"))
    assert outcome.code == "InvalidInstanceId.NotFound"
    assert len(bench.calls("DescribeInstanceAttribute", instance_id="r-bp1missing00001")) == 1


def test_without_a_redis_url_an_embedded_store_is_shared_by_processes(bench: Bench, tmp_path: Path) -> None:
    env = {k: v for k, v in bench.env.items() if k != "DBUPGRADE_REDIS_URL"}
    env["DBUPGRADE_STATE_DIR"] = str(tmp_path)
    outcome = Upgrader.from_env(env).run(request("r-bp1attarget0001", "7.0"))
    script = (
        "from dbupgrade.usecase import Upgrader; import sys;"
        f"print(Upgrader.from_env({{'DBUPGRADE_STATE_DIR': {str(tmp_path)!r}}}).status(sys.argv[1]).status)"
    )
    other = subprocess.run(
        [sys.executable, "-c", script, "r-bp1attarget0001"], capture_output=True, text=True
    )
    assert other.stdout.strip() == outcome.status == "noop", other.stderr


def test_a_dry_run_refused_by_a_guard_is_not_recorded_either(bench: Bench) -> None:
    upgrader = bench.upgrader(DBUPGRADE_ALLOWED_INSTANCES="r-bp1ready0000002")
    outcome = upgrader.run(request("r-bp1ready0000001", "7.0", dry_run=True))
    assert (outcome.status, outcome.reason, outcome.dry_run) == ("rejected", "out_of_scope", True)
    built_by_hand = request("r-bp1ready0000001", "7.0", dry_run=True).with_(target_version="9.9")
    invalid = bench.upgrader().run(built_by_hand)
    assert (invalid.status, invalid.field, invalid.dry_run) == ("rejected", "target_version", True)
    assert bench.published() == [] and upgrader.status("r-bp1ready0000001") is None
    assert bench.upgrade_calls("r-bp1ready0000001") == []
