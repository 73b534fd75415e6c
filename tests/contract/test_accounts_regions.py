"""Contract: each account sees only its own instances, in the region it calls; reset restores the seed.

Two accounts share one localcloud (seed key ``AccountId`` places an instance in an account; absent,
the seed's first account). Through the official R-kvstore and Dds clients, the second account's
AccessKey and a RAM role STS credential of it neither see nor upgrade the first account's instances:
they answer InvalidInstanceId.NotFound / InvalidDBInstanceId.NotFound, as an unknown ID does
(assumption, named in localcloud/openapi/instance_responses.py: no public source shows what the
real API answers for another account's instance). An instance of one region is not found from
another region; ``POST /_localcloud/reset`` puts every instance back as seeded; ``--state`` keeps
each account's progress across a restart.
"""

from __future__ import annotations

from typing import Any

import pytest
import requests
from alibabacloud_dds20151201 import models as dm
from alibabacloud_dds20151201.client import Client as DdsClient
from alibabacloud_r_kvstore20150101 import models as km
from alibabacloud_r_kvstore20150101.client import Client as KvstoreClient

from localcloud.server import RunningServer
from tests.conftest import ACCOUNT_ID, TEST_ACCOUNT
from tests.contract.helpers import advance, call_api, openapi_config, refused

OTHER_ACCOUNT_ID = "2222333344445555"
OTHER_KEY = {"access_key_id": "LTAI5tOtherAccount001", "access_key_secret": "other-account-secret"}
# A RAM role of the other account allowed everything: RAM lets it, only the account boundary stops it.
OTHER_ROLE_STS = {
    "access_key_id": "STS.NOtherAccountRole01",
    "access_key_secret": "other-account-role-secret",
    "security_token": "CAISotherAccountRoleToken0123456789",
    "expiration": "2099-01-01T00:00:00Z",
    "role": {
        "name": "other-admin",
        "policies": [{"Version": "1", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}],
    },
}
NATIVE = {"NodeType": "MASTER_SLAVE", "InstanceClass": "redis.shard.small.2.ce"}


def redis(iid: str, **extra: Any) -> dict[str, Any]:
    return {"InstanceId": iid, "RegionId": "cn-hangzhou", "EngineVersion": "6.0", **NATIVE, **extra}


def mongo(iid: str, **extra: Any) -> dict[str, Any]:
    return {"DBInstanceId": iid, "RegionId": "cn-hangzhou", "EngineVersion": "5.0", **extra}


SEED: dict[str, Any] = {
    "accounts": [
        TEST_ACCOUNT,  # first: owns every instance that names no AccountId
        {"account_id": OTHER_ACCOUNT_ID, **OTHER_KEY, "sts": [OTHER_ROLE_STS]},
    ],
    "redis": [
        redis("r-bp1firstacct0001"),
        redis("r-bp1otheracct0001", AccountId=OTHER_ACCOUNT_ID),
        redis("r-bp1firstshanghai", RegionId="cn-shanghai"),
    ],
    "mongodb": [
        mongo("dds-bp1firstacct001", AccountId=ACCOUNT_ID),
        mongo("dds-bp1otheracct001", AccountId=OTHER_ACCOUNT_ID),
    ],
    "upgrade_seconds": 2,
}


@pytest.fixture
def lc(make_localcloud) -> RunningServer:
    return make_localcloud(SEED)


def kvstore(lc: RunningServer, **credential: str) -> KvstoreClient:
    return KvstoreClient(openapi_config(lc, **credential))


def dds(lc: RunningServer, **credential: str) -> DdsClient:
    return DdsClient(openapi_config(lc, **credential))


OTHER = {"other account's AccessKey": OTHER_KEY, "other account's RAM role": OTHER_ROLE_STS}
OTHER_CREDENTIALS = [
    {k: v for k, v in c.items() if k != "expiration" and k != "role"} for c in OTHER.values()
]


def redis_attribute(
    client: KvstoreClient, iid: str
) -> km.DescribeInstanceAttributeResponseBodyInstancesDBInstanceAttribute:
    request = km.DescribeInstanceAttributeRequest(instance_id=iid)
    return client.describe_instance_attribute(request).body.instances.dbinstance_attribute[0]


def redis_upgrade(client: KvstoreClient, iid: str, version: str) -> None:
    request = km.ModifyInstanceMajorVersionRequest(instance_id=iid, major_version=version)
    client.modify_instance_major_version(request)


def redis_listed(client: KvstoreClient, **kw: Any) -> list[str]:
    body = client.describe_instances(km.DescribeInstancesRequest(**kw)).body
    return [i.instance_id for i in body.instances.kvstore_instance]


def mongo_attribute(
    client: DdsClient, iid: str
) -> dm.DescribeDBInstanceAttributeResponseBodyDBInstancesDBInstance:
    request = dm.DescribeDBInstanceAttributeRequest(dbinstance_id=iid)
    return client.describe_dbinstance_attribute(request).body.dbinstances.dbinstance[0]


def mongo_upgrade(client: DdsClient, iid: str, version: str) -> None:
    request = dm.UpgradeDBInstanceEngineVersionRequest(dbinstance_id=iid, engine_version=version)
    client.upgrade_dbinstance_engine_version(request)


def mongo_listed(client: DdsClient, **kw: Any) -> list[str]:
    body = client.describe_dbinstances(dm.DescribeDBInstancesRequest(**kw)).body
    return [i.dbinstance_id for i in body.dbinstances.dbinstance]


# --- accounts --------------------------------------------------------------------------------------


def test_each_account_lists_only_its_own_instances(lc):
    assert redis_listed(kvstore(lc)) == ["r-bp1firstacct0001", "r-bp1firstshanghai"]
    assert mongo_listed(dds(lc)) == ["dds-bp1firstacct001"]
    for credential in OTHER_CREDENTIALS:
        assert redis_listed(kvstore(lc, **credential)) == ["r-bp1otheracct0001"]
        assert mongo_listed(dds(lc, **credential)) == ["dds-bp1otheracct001"]
        named = redis_listed(kvstore(lc, **credential), instance_ids="r-bp1firstacct0001,r-bp1otheracct0001")
        assert named == ["r-bp1otheracct0001"]


@pytest.mark.parametrize("credential", OTHER_CREDENTIALS, ids=list(OTHER))
def test_another_account_can_neither_see_nor_upgrade_an_instance(lc, credential):
    redis_client, mongo_client = kvstore(lc, **credential), dds(lc, **credential)

    not_found = ("InvalidInstanceId.NotFound", 404)
    assert refused(redis_attribute, redis_client, "r-bp1firstacct0001")[:2] == not_found
    assert refused(redis_upgrade, redis_client, "r-bp1firstacct0001", "7.0")[:2] == not_found
    db_not_found = ("InvalidDBInstanceId.NotFound", 404)
    assert refused(mongo_attribute, mongo_client, "dds-bp1firstacct001")[:2] == db_not_found
    assert refused(mongo_upgrade, mongo_client, "dds-bp1firstacct001", "6.0")[:2] == db_not_found

    owner_redis, owner_mongo = kvstore(lc), dds(lc)
    advance(lc, 10)  # a refused call booked nothing: the owner's instances never moved
    redis_seen = redis_attribute(owner_redis, "r-bp1firstacct0001")
    assert (redis_seen.engine_version, redis_seen.instance_status) == ("6.0", "Normal")
    mongo_seen = mongo_attribute(owner_mongo, "dds-bp1firstacct001")
    assert (mongo_seen.engine_version, mongo_seen.dbinstance_status) == ("5.0", "Running")


def test_the_owner_upgrades_its_own_instance_and_the_other_account_still_does_not_see_it(lc):
    other = kvstore(lc, **OTHER_CREDENTIALS[0])
    redis_upgrade(other, "r-bp1otheracct0001", "7.0")
    advance(lc, 2)

    assert redis_attribute(other, "r-bp1otheracct0001").engine_version == "7.0"
    assert refused(redis_attribute, kvstore(lc), "r-bp1otheracct0001")[:2] == (
        "InvalidInstanceId.NotFound",
        404,
    )


# --- regions ---------------------------------------------------------------------------------------


def test_an_instance_is_invisible_from_another_region(lc):
    client = kvstore(lc)

    def attribute_in(region: str) -> dict[str, Any]:
        query = {"RegionId": region, "InstanceId": "r-bp1firstshanghai"}
        return call_api(client, "DescribeInstanceAttribute", query)["body"]

    seen = attribute_in("cn-shanghai")["Instances"]["DBInstanceAttribute"][0]
    assert seen["RegionId"] == "cn-shanghai"
    code, status, _ = refused(attribute_in, "cn-hangzhou")
    assert (code, status) == ("InvalidInstanceId.NotFound", 404)
    assert redis_listed(client, region_id="cn-hangzhou") == ["r-bp1firstacct0001"]
    assert redis_listed(client, region_id="cn-shanghai") == ["r-bp1firstshanghai"]
    assert redis_listed(client, region_id="cn-beijing") == []


# --- reset and state -------------------------------------------------------------------------------


def test_reset_puts_every_account_back_to_the_seed(lc):
    redis_upgrade(kvstore(lc), "r-bp1firstacct0001", "7.0")
    mongo_upgrade(dds(lc, **OTHER_CREDENTIALS[0]), "dds-bp1otheracct001", "6.0")
    advance(lc, 2)
    assert redis_attribute(kvstore(lc), "r-bp1firstacct0001").engine_version == "7.0"

    requests.post(f"{lc.url}/_localcloud/reset", timeout=5).raise_for_status()

    assert redis_attribute(kvstore(lc), "r-bp1firstacct0001").engine_version == "6.0"
    assert mongo_attribute(dds(lc, **OTHER_CREDENTIALS[0]), "dds-bp1otheracct001").engine_version == "5.0"
    redis_upgrade(kvstore(lc), "r-bp1firstacct0001", "7.0")  # seeded, not upgraded: it upgrades again


def test_state_keeps_each_accounts_progress_across_a_restart(make_localcloud, tmp_path):
    state = tmp_path / "state.json"
    first = make_localcloud(SEED, state_file=state)
    mongo_upgrade(dds(first, **OTHER_CREDENTIALS[0]), "dds-bp1otheracct001", "6.0")
    first.cloud.save()

    second = make_localcloud(SEED, state_file=state)
    other = dds(second, **OTHER_CREDENTIALS[0])
    assert mongo_attribute(other, "dds-bp1otheracct001").dbinstance_status == "EngineVersionUpgrading"
    advance(second, 2)
    assert mongo_attribute(other, "dds-bp1otheracct001").engine_version == "6.0"
    assert mongo_attribute(dds(second), "dds-bp1firstacct001").engine_version == "5.0"
