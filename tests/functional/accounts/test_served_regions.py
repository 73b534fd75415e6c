"""Issue #16: a selector naming no region scans every region the product serves, in every account.

On ``localcloud/seeds/organization.json`` (management, prod with the member role, staging without
it; instances in cn-hangzhou and cn-shanghai), ``rollout plan --all-accounts`` without ``--region``
asks each account's R-kvstore which regions it serves (DescribeRegions, through prod's role), says
which it scans, and finds the instances of both regions; staging, whose role is missing, is one
unreachable location for all its regions, named with the reason. DBUPGRADE_ALLOWED_REGIONS cuts
what is scanned.
"""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from dbupgrade.cli.commands import cli

from tests.functional.accounts.test_organisation_rollout import MANAGEMENT, PROD, STAGING, Fleet
from tests.functional.accounts.test_organisation_rollout import organisation as organisation  # noqa: F401

# ``organisation``: the fixture of test_organisation_rollout.py (its seed, env and operator role).


def test_all_accounts_without_a_region_scans_every_region_each_account_is_served(organisation: Fleet) -> None:
    plan = CliRunner().invoke(
        cli, ["rollout", "plan", "--all-accounts", "--engine", "redis", "--target", "7.0", "--json"]
    )

    assert plan.exit_code == 0, plan.stderr
    lines = plan.stderr.splitlines()
    assert lines[0] == "scanning redis in every region the product serves (DescribeRegions)"
    for account in (MANAGEMENT, PROD):
        assert f"  account {account}: redis in cn-hangzhou, cn-shanghai" in lines
    locations = {g["location"]: g for g in json.loads(plan.stdout)["locations"]}
    assert locations[f"{PROD}/cn-shanghai"]["targets"] == 1
    assert locations[f"{MANAGEMENT}/cn-shanghai"]["targets"] == 1
    assert locations[f"{PROD}/cn-hangzhou"]["targets"] == 6
    missing = locations[f"{STAGING}/*"]
    assert missing["status"] == "unreachable"
    assert STAGING in missing["reason"] and "dbupgrade-member" in missing["reason"]
    # DescribeRegions was asked in prod with prod's own temporary credential.
    asked = [
        fleet_call
        for fleet_call in organisation.lc.cloud.calls.query()
        if fleet_call["action"] == "DescribeRegions" and fleet_call["status"] == 200
    ]
    owners = {organisation.lc.cloud.accounts.lookup(c["access_key_id"]).account_id for c in asked}
    assert owners == {MANAGEMENT, PROD}


def test_allowed_regions_cut_the_regions_scanned(
    organisation: Fleet, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DBUPGRADE_ALLOWED_REGIONS", "cn-shanghai")

    plan = CliRunner().invoke(
        cli, ["rollout", "plan", "--account", PROD, "--engine", "redis", "--target", "7.0", "--json"]
    )

    assert plan.exit_code == 0, plan.stderr
    assert f"  account {PROD}: redis in cn-shanghai" in plan.stderr.splitlines()
    assert [g["location"] for g in json.loads(plan.stdout)["locations"]] == [f"{PROD}/cn-shanghai"]
