"""Member accounts, the parts a caller sees without a cloud: session names STS accepts, the account
field of a request, the configuration variables, claims and locations per account."""

from __future__ import annotations

import re

import pytest
from dbupgrade.accounts import session_name
from dbupgrade.config import Config
from dbupgrade.errors import ConfigError
from dbupgrade.model import InvalidRequest, Outcome
from dbupgrade.request import parse_request
from dbupgrade.rollouts.model import location_of
from dbupgrade.store import MemoryStore
from dbupgrade.store.claims import Claim

# STS AssumeRole's RoleSessionName (its API metadata): 2..64 of letters, digits and .@-_
STS_SESSION_NAME = re.compile(r"[A-Za-z0-9.@_-]{2,64}")


@pytest.mark.parametrize("label", [None, "ro-20260101T000000Z", "JIRA 42 / ä", "x" * 200, ""])
def test_session_names_are_what_sts_accepts(label):
    assert STS_SESSION_NAME.fullmatch(session_name(label))


def test_a_session_is_named_after_its_rollout():
    assert session_name("redis-7") == "dbupgrade-redis-7"


def test_account_id_is_a_request_field_validated_as_a_numeric_id():
    request = parse_request(
        {"instance_id": "r-bp1abcdef", "target_version": "7.0", "account_id": 2000000000000002},
        source="webhook",
    )
    assert request.account_id == "2000000000000002"
    with pytest.raises(InvalidRequest) as refused:
        parse_request(
            {"instance_id": "r-bp1abcdef", "target_version": "7.0", "account_id": "prod"}, source="cli"
        )
    assert refused.value.field == "account_id"


def test_notifications_carry_the_account():
    message = Outcome("submitted", "r-bp1x", "7.0", account_id="2000000000000002").notification()
    assert (message["version"], message["account_id"]) == (1, "2000000000000002")


def test_configuration_of_accounts():
    config = Config.from_env(
        {"FC_ACCOUNT_ID": "1000000000000001", "DBUPGRADE_STS_ENDPOINT": "http://127.0.0.1:9"}
    )
    assert (config.account_id, config.member_role) == ("1000000000000001", "dbupgrade-member")
    assert config.endpoint_override("DBUPGRADE_STS_ENDPOINT").url == "http://127.0.0.1:9"
    assert Config.from_env({"DBUPGRADE_ACCOUNT_ID": "2", "FC_ACCOUNT_ID": "1"}).account_id == "2"
    for variable, value in (("DBUPGRADE_ACCOUNT_ID", "prod"), ("DBUPGRADE_MEMBER_ROLE", "bad role")):
        with pytest.raises(ConfigError) as refused:
            Config.from_env({variable: value})
        assert variable in str(refused.value)


def test_the_same_instance_id_is_claimed_separately_in_each_account():
    store = MemoryStore()
    assert store.claim(Claim("r-bp1x", "7.0", owner="a"), 60) is None
    assert store.claim(Claim("r-bp1x", "7.0", owner="b", account_id="2000000000000002"), 60) is None
    held = store.claim(Claim("r-bp1x", "7.0", owner="c", account_id="2000000000000002"), 60)
    assert held is not None and held.owner == "b"
    assert store.claim_of("r-bp1x").owner == "a"


def test_locations_are_account_by_region():
    assert location_of({"account_id": "2000000000000002", "region": "cn-shanghai"}) == (
        "2000000000000002/cn-shanghai"
    )
