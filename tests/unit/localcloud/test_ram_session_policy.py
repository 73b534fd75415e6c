"""localcloud/ram: an assumed role's credential may do only what its role and the call's Policy both allow."""

from __future__ import annotations

import pytest

from localcloud.accounts import AssumableRole
from localcloud.ram.policy import ALLOW, EXPLICIT_DENY, IMPLICIT_DENY, Policy, PolicyError, Role


def policy(*statements: dict[str, object]) -> Policy:
    return Policy.compile([{"Version": "1", "Statement": list(statements)}])


ROLE = policy({"Effect": "Allow", "Action": ["kvstore:*", "dds:Describe*"], "Resource": "*"})
UPGRADE = ("kvstore:ModifyInstanceMajorVersion", "acs:kvstore:cn-hangzhou:2:instance/r-1")


@pytest.mark.parametrize(
    ("session", "expected"),
    [
        (None, ALLOW),
        (policy({"Effect": "Allow", "Action": "*", "Resource": "*"}), ALLOW),
        (policy({"Effect": "Allow", "Action": "kvstore:Describe*", "Resource": "*"}), IMPLICIT_DENY),
        (policy({"Effect": "Deny", "Action": "kvstore:Modify*", "Resource": "*"}), EXPLICIT_DENY),
    ],
)
def test_the_session_policy_narrows_and_never_widens(session, expected):
    assert Role("member", ROLE, session).decide(*UPGRADE) == expected


def test_a_session_policy_cannot_grant_what_the_role_lacks():
    wide = policy({"Effect": "Allow", "Action": "*", "Resource": "*"})

    assert Role("member", ROLE, wide).decide("dds:UpgradeDBInstanceEngineVersion", "*") == IMPLICIT_DENY


def test_a_seeded_role_defaults_to_its_own_accounts_databases_and_trust():
    role = AssumableRole.from_seed("2000000000000002", {"name": "DbUpgrade-Member"})

    assert role.trusts == frozenset({"2000000000000002"})
    assert role.max_session_duration == 3600
    assert role.arn == "acs:ram::2000000000000002:role/dbupgrade-member"
    assert role.policy.decide(UPGRADE[0], "acs:kvstore:cn-hangzhou:2000000000000002:instance/r-1") == ALLOW
    assert role.policy.decide(UPGRADE[0], "acs:kvstore:cn-hangzhou:1000000000000001:instance/r-1") != ALLOW
    assert role.policy.decide("ram:CreateUser", "*") != ALLOW


def test_a_seeded_role_with_an_impossible_session_maximum_is_refused_at_start():
    with pytest.raises(PolicyError, match="max_session_duration"):
        AssumableRole.from_seed("2", {"name": "r", "max_session_duration": 60})
