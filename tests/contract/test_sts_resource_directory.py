"""Contract: STS AssumeRole and Resource Manager ListAccounts, through the official SDK clients.

The seed is ``localcloud/seeds/organization.json`` (issue #16's rehearsal): a management account
whose operator role may assume ``dbupgrade-member``, a prod member that has that role trusting the
management account, and a staging member without it; instances in two regions of each. What a caller
would notice: the member's temporary credentials list and upgrade only the member's instances; an
untrusted caller, an account's own AccessKey, a missing role, an out-of-range DurationSeconds and an
expired token are refused with the codes STS documents (localcloud/sts/models.py cites them);
ListAccounts pages the directory for the management account and refuses a member.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from alibabacloud_dds20151201 import models as dm
from alibabacloud_dds20151201.client import Client as DdsClient
from alibabacloud_r_kvstore20150101 import models as km
from alibabacloud_r_kvstore20150101.client import Client as KvstoreClient
from alibabacloud_resourcemanager20200331 import models as rmm
from alibabacloud_resourcemanager20200331.client import Client as ResourceManagerClient
from alibabacloud_sts20150401 import models as stsm
from alibabacloud_sts20150401.client import Client as StsClient

import localcloud.accounts
from localcloud.server import RunningServer
from tests.contract.helpers import openapi_config, refused

SEED_FILE = Path(__file__).resolve().parents[2] / "localcloud" / "seeds" / "organization.json"
MANAGEMENT, PROD, STAGING = "1000000000000001", "2000000000000002", "3000000000000003"
MEMBER_ROLE = "acs:ram::{account}:role/dbupgrade-member"


def seed_account(account_id: str) -> dict[str, Any]:
    seed = json.loads(SEED_FILE.read_text())
    return next(a for a in seed["accounts"] if a["account_id"] == account_id)


def key_of(account: dict[str, Any]) -> dict[str, str]:
    return {k: account[k] for k in ("access_key_id", "access_key_secret")}


OPERATOR = {
    k: seed_account(MANAGEMENT)["sts"][0][k] for k in ("access_key_id", "access_key_secret", "security_token")
}


def rehearsal_seed() -> dict[str, Any]:
    seed = json.loads(SEED_FILE.read_text())
    # The functions are the rehearsal's, not under test here: no FC runtimes to start.
    for key in ("functions", "subscriptions"):
        seed.pop(key)
    return seed


@pytest.fixture
def lc(make_localcloud) -> RunningServer:
    return make_localcloud(rehearsal_seed())


def sts(lc: RunningServer, **credential: str) -> StsClient:
    return StsClient(openapi_config(lc, **(credential or OPERATOR)))


def assume(client: StsClient, account: str, **kw: Any) -> stsm.AssumeRoleResponseBody:
    request = stsm.AssumeRoleRequest(
        role_arn=kw.pop("role_arn", MEMBER_ROLE.format(account=account)),
        role_session_name=kw.pop("role_session_name", "rollout-r1"),
        **kw,
    )
    return client.assume_role(request).body


def as_member(lc: RunningServer, body: stsm.AssumeRoleResponseBody) -> dict[str, str]:
    c = body.credentials
    return {
        "access_key_id": c.access_key_id,
        "access_key_secret": c.access_key_secret,
        "security_token": c.security_token,
    }


def redis_ids(client: KvstoreClient, region: str) -> list[str]:
    body = client.describe_instances(km.DescribeInstancesRequest(region_id=region)).body
    return sorted(i.instance_id for i in body.instances.kvstore_instance)


def test_assumed_credentials_see_and_upgrade_only_the_members_fleet(lc):
    body = assume(sts(lc), PROD, duration_seconds=1800)

    assert body.credentials.access_key_id.startswith("STS.")
    assert body.assumed_role_user.arn == f"acs:ram::{PROD}:role/dbupgrade-member/rollout-r1"
    assert body.assumed_role_user.assumed_role_id.endswith(":rollout-r1")
    expires = time.mktime(time.strptime(body.credentials.expiration, "%Y-%m-%dT%H:%M:%SZ")) - time.timezone
    assert abs(expires - (time.time() + 1800)) < 60
    member = as_member(lc, body)
    kvstore = KvstoreClient(openapi_config(lc, **member))
    assert redis_ids(kvstore, "cn-hangzhou") == ["r-bp1orgprod0000001", "r-bp1orgprod0000002"]
    assert redis_ids(kvstore, "cn-shanghai") == ["r-uf6orgprod0000003"]
    dds = DdsClient(openapi_config(lc, **member))
    listed = dds.describe_dbinstances(dm.DescribeDBInstancesRequest(region_id="cn-hangzhou")).body
    assert [i.dbinstance_id for i in listed.dbinstances.dbinstance] == ["dds-bp1orgprod00001"]

    kvstore.modify_instance_major_version(
        km.ModifyInstanceMajorVersionRequest(instance_id="r-bp1orgprod0000001", major_version="5.0")
    )
    attribute = kvstore.describe_instance_attribute(
        km.DescribeInstanceAttributeRequest(instance_id="r-bp1orgprod0000001")
    ).body.instances.dbinstance_attribute[0]
    assert attribute.instance_status == "MajorVersionUpgrading"
    # The management account's own instance is not the member's to touch.
    code, status, _ = refused(
        kvstore.modify_instance_major_version,
        km.ModifyInstanceMajorVersionRequest(instance_id="r-bp1orgmgmt0000001", major_version="5.0"),
    )
    assert (code, status) == ("InvalidInstanceId.NotFound", 404)


def test_a_role_seeded_without_policies_may_manage_its_accounts_databases(make_localcloud):
    """Default policy of a seeded role: every kvstore/dds/mns action on its own account."""
    seed = rehearsal_seed()
    staging = next(a for a in seed["accounts"] if a["account_id"] == STAGING)
    staging["roles"] = [{"name": "dbupgrade-member", "trusts": [MANAGEMENT]}]
    lc = make_localcloud(seed)
    member = as_member(lc, assume(sts(lc), STAGING))
    kvstore = KvstoreClient(openapi_config(lc, **member))

    assert redis_ids(kvstore, "cn-hangzhou") == ["r-bp1orgstag0000001"]
    kvstore.modify_instance_major_version(
        km.ModifyInstanceMajorVersionRequest(instance_id="r-bp1orgstag0000001", major_version="5.0")
    )


def test_an_inline_policy_narrows_the_role(lc):
    only_hangzhou_listing = json.dumps(
        {
            "Version": "1",
            "Statement": [{"Effect": "Allow", "Action": "kvstore:DescribeInstances", "Resource": "*"}],
        }
    )
    member = as_member(lc, assume(sts(lc), PROD, policy=only_hangzhou_listing))
    kvstore = KvstoreClient(openapi_config(lc, **member))

    assert redis_ids(kvstore, "cn-hangzhou") == ["r-bp1orgprod0000001", "r-bp1orgprod0000002"]
    code, status, _ = refused(
        kvstore.modify_instance_major_version,
        km.ModifyInstanceMajorVersionRequest(instance_id="r-bp1orgprod0000001", major_version="5.0"),
    )
    assert (code, status) == ("Forbidden.RAM", 403)


def test_a_member_without_the_role_answers_entity_not_exist_role(lc):
    code, status, message = refused(assume, sts(lc), STAGING)

    assert (code, status) == ("EntityNotExist.Role", 404)
    assert "Role not exists" in message


def test_an_untrusted_caller_is_refused(make_localcloud):
    """The staging account's own RAM role may assume anything, but prod's role trusts only management."""
    seed = rehearsal_seed()
    staging = next(a for a in seed["accounts"] if a["account_id"] == STAGING)
    staging["sts"] = [
        {
            "access_key_id": "STS.NStagingAdminRole0001",
            "access_key_secret": "staging-admin-secret",
            "security_token": "CAISstagingAdminRoleToken012345",
            "expiration": "2099-01-01T00:00:00Z",
            "role": {"name": "staging-admin", "policies": [
                {"Version": "1", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}]},
        }
    ]  # fmt: skip
    other = make_localcloud(seed)
    caller = {k: staging["sts"][0][k] for k in ("access_key_id", "access_key_secret", "security_token")}

    code, status, message = refused(assume, sts(other, **caller), PROD)

    assert (code, status) == ("NoPermission", 403)
    assert "authorized by RAM" in message


def test_a_caller_without_sts_assume_role_is_refused(lc):
    """The operator role may assume only dbupgrade-member: a role of another name is NoPermission,
    whether or not it exists (RAM is asked first)."""
    code, status, _ = refused(lambda: assume(sts(lc), PROD, role_arn=f"acs:ram::{PROD}:role/admin"))

    assert (code, status) == ("NoPermission", 403)


def test_an_accounts_own_access_key_may_not_assume_roles(lc):
    code, status, message = refused(assume, sts(lc, **key_of(seed_account(MANAGEMENT))), PROD)

    assert (code, status) == ("NoPermission", 403)
    assert "Roles may not be assumed by root accounts." in message


@pytest.mark.parametrize("seconds", [899, 3601])
def test_duration_seconds_outside_900_to_the_roles_maximum_is_refused(lc, seconds):
    code, status, _ = refused(lambda: assume(sts(lc), PROD, duration_seconds=seconds))

    assert (code, status) == ("InvalidParameter.DurationSeconds", 400)


def test_duration_seconds_bounds_are_accepted(lc):
    assert assume(sts(lc), PROD, duration_seconds=900).credentials.access_key_id
    assert assume(sts(lc), PROD, duration_seconds=3600).credentials.access_key_id


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("role_arn", "arn:aws:iam::2000000000000002:role/dbupgrade-member", "InvalidParameter.RoleArn"),
        ("role_session_name", "a", "InvalidParameter.RoleSessionName"),
        ("role_session_name", "has space", "InvalidParameter.RoleSessionName"),
        ("role_session_name", "x" * 65, "InvalidParameter.RoleSessionName"),
        ("policy", "{not json", "InvalidParameter.PolicyGrammar"),
        (
            "policy",
            json.dumps({"Version": "1", "Statement": [], "Pad": "x" * 2048}),
            "InvalidParameter.PolicySize",
        ),
    ],
)
def test_malformed_parameters_are_refused_with_their_codes(lc, field, value, expected):
    code, status, _ = refused(lambda: assume(sts(lc), PROD, **{field: value}))

    assert (code, status) == (expected, 400)


def test_expired_credentials_are_refused(lc, monkeypatch):
    member = as_member(lc, assume(sts(lc), PROD, duration_seconds=900))
    kvstore = KvstoreClient(openapi_config(lc, **member))
    assert redis_ids(kvstore, "cn-hangzhou")
    # 901 s of wall time pass for the token check alone: the request's signing time stays now, as a
    # client's clock would be, so only the token's age is past its DurationSeconds.
    later = SimpleNamespace(time=lambda: time.time() + 901)
    monkeypatch.setattr(localcloud.accounts, "time", later)

    code, status, _ = refused(
        kvstore.describe_instances, km.DescribeInstancesRequest(region_id="cn-hangzhou")
    )

    assert (code, status) == ("InvalidSecurityToken.Expired", 400)


def rm_client(lc: RunningServer, **credential: str) -> ResourceManagerClient:
    return ResourceManagerClient(openapi_config(lc, **(credential or OPERATOR)))


def test_list_accounts_pages_the_directory_for_the_management_account(lc):
    client = rm_client(lc)

    first = client.list_accounts(rmm.ListAccountsRequest(page_size=2)).body
    second = client.list_accounts(rmm.ListAccountsRequest(page_size=2, page_number=2)).body
    default = client.list_accounts(rmm.ListAccountsRequest()).body

    assert first.total_count == second.total_count == 3
    assert [a.account_id for a in first.accounts.account] == [MANAGEMENT, PROD]
    assert [a.account_id for a in second.accounts.account] == [STAGING]
    assert (default.page_number, default.page_size) == (1, 10)
    prod = first.accounts.account[1]
    assert (prod.display_name, prod.type, prod.status, prod.join_method) == (
        "prod", "ResourceAccount", "CreateSuccess", "created"
    )  # fmt: skip
    assert prod.folder_id == "fd-lcWorkloads" and prod.resource_directory_path.endswith(f"/{PROD}")
    assert prod.tags is None  # only with IncludeTags


def test_list_accounts_tags_on_request_and_filters_by_tag(lc):
    client = rm_client(lc)
    tag = rmm.ListAccountsRequestTag(key="env", value="prod")

    body = client.list_accounts(rmm.ListAccountsRequest(include_tags=True, tag=[tag])).body

    assert [a.account_id for a in body.accounts.account] == [PROD]
    assert [(t.key, t.value) for t in body.accounts.account[0].tags.tag] == [("env", "prod")]


def test_list_accounts_page_size_above_100_is_refused(lc):
    code, status, _ = refused(rm_client(lc).list_accounts, rmm.ListAccountsRequest(page_size=101))

    assert (code, status) == ("InvalidParameter", 400)


def test_list_accounts_is_refused_to_a_member(lc):
    """Even the member's own AccessKey, which RAM lets do anything: the directory is not its to list."""
    member = key_of(seed_account(PROD))

    code, status, _ = refused(rm_client(lc, **member).list_accounts, rmm.ListAccountsRequest())

    assert (code, status) == ("NoPermission", 403)
