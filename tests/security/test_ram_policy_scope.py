"""The functions' RAM roles (one service, so one role, per function), resource by resource (tests/functional/test_template.py already
checks that the actions equal what the code calls): "*" only where the API takes no resource (reads
and lists), every ARN in this account and in its actions' own namespace, and every write on a named
resource — the two topics, the dead-letter queue's messages, the rollout function, the log store — or,
for the calls on instances only known at run time, on that product's instance type alone. The
internet-facing webhook's role can neither invoke a function nor list the fleet."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
RESOURCES = yaml.safe_load((ROOT / "template.yml").read_text())["Resources"]
SERVICES = {name: r for name, r in RESOURCES.items() if r["Type"] == "Aliyun::Serverless::Service"}
POLICIES = [p for service in SERVICES.values() for p in service["Properties"]["Policies"]]
STATEMENTS: list[dict[str, Any]] = [s for p in POLICIES if isinstance(p, dict) for s in p["Statement"]]
WEBHOOK_SERVICE = next(name for name, service in SERVICES.items() if "webhook" in service)
READ_ONLY = re.compile(r"^[a-z]+:(Describe|List|Get)[A-Za-z]*$")
ARN = re.compile(r"^acs:(?P<service>[a-z]+):(?P<region>[^:]*):(?P<account>[^:]*):(?P<resource>.+)$")
# The upgrade APIs take any instance of the account; their resource is that product's instance type.
INSTANCE_TYPES = {"kvstore": "instance/*", "dds": "dbinstance/*"}
# Moving or cancelling a booked upgrade names O&M event Ids, no instance (API metadata of both
# products: Ids is their one required parameter): granted on the account's resources of the product.
EVENT_WRITES = re.compile(r"^(kvstore|dds):(Modify|Cancel)ActiveOperationTasks$")
# The one grant outside this account: assuming the member role (deploy/member-role.yml) in any member,
# that role's name and nothing else; the member's own trust policy decides which accounts it trusts.
MEMBER_ROLE = "acs:ram::*:role/${MemberRoleName}"


def assumes_the_member_role(statement: dict[str, Any]) -> bool:
    return statement["Action"] == ["sts:AssumeRole"] and resources(statement) == [MEMBER_ROLE]


def resources(statement: dict[str, Any]) -> list[str]:
    """The statement's resources with the deploy-time pseudo parameters as plain words."""
    raw = statement["Resource"]
    texts = [r if isinstance(r, str) else r["Fn::Sub"] for r in (raw if isinstance(raw, list) else [raw])]
    return [
        t.replace("${ALIYUN::AccountId}", "ACCOUNT").replace("${ALIYUN::Region}", "REGION") for t in texts
    ]


def test_only_reads_and_lists_are_granted_on_every_resource() -> None:
    for statement in STATEMENTS:
        if "*" in resources(statement):
            assert resources(statement) == ["*"]
            assert all(READ_ONLY.match(action) for action in statement["Action"]), statement["Sid"]


def test_every_arn_is_in_this_account_and_in_the_namespace_of_its_actions() -> None:
    for statement in STATEMENTS:
        if assumes_the_member_role(statement):
            continue
        namespaces = {action.split(":", 1)[0] for action in statement["Action"]}
        for resource in resources(statement):
            if resource == "*":
                continue
            arn = ARN.match(resource)
            assert arn, resource
            assert arn["account"] == "ACCOUNT", resource
            assert namespaces == {arn["service"]}, statement["Sid"]


def test_writes_name_their_resource_and_upgrades_name_the_instance_type() -> None:
    for statement in STATEMENTS:
        if all(READ_ONLY.match(action) for action in statement["Action"]) or assumes_the_member_role(
            statement
        ):
            continue
        for resource in resources(statement):
            arn = ARN.match(resource)
            assert arn, f"{statement['Sid']}: a write on {resource!r}"
            if arn["service"] in INSTANCE_TYPES:
                writes = [a for a in statement["Action"] if not READ_ONLY.match(a)]
                allowed = {INSTANCE_TYPES[arn["service"]]}
                if all(EVENT_WRITES.match(a) for a in writes):
                    allowed.add("*")  # the account's resources of that product, no other account's
                assert arn["resource"] in allowed, resource
            else:
                assert "*" not in resource, f"{statement['Sid']}: a wildcard in {resource}"
                assert arn["region"] == "REGION", resource


def test_no_managed_policy_grants_a_whole_product() -> None:
    managed = [p for p in POLICIES if isinstance(p, str)]
    assert not [name for name in managed if name.endswith("FullAccess") and "NetworkInterface" not in name]
    assert not [name for name in managed if re.search(r"(KVStore|Dds|MNS|FC|Log|RAM)", name)]


def test_the_webhook_role_cannot_invoke_functions_or_list_the_fleet() -> None:
    policies = SERVICES[WEBHOOK_SERVICE]["Properties"]["Policies"]
    actions = {a for p in policies if isinstance(p, dict) for s in p["Statement"] for a in s["Action"]}
    assert not [
        a for a in actions if a.startswith("fc:") or a.endswith(("DescribeInstances", "DescribeDBInstances"))
    ]
    assert not [a for a in actions if "*" in a]


def test_only_the_member_role_may_be_assumed_and_in_no_other_statement() -> None:
    assuming = [s for s in STATEMENTS if any(a.startswith("sts:") for a in s["Action"])]
    assert assuming and all(assumes_the_member_role(s) for s in assuming)
