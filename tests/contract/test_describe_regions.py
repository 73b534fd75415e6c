"""Contract: R-kvstore and Dds DescribeRegions, through the official product clients.

Which regions a product serves is the seed's ``regions`` (both products), else the regions its
seeded instances are in, whatever account owns them: the answer is about the product, not the
caller's fleet. A region's zones are its instances' zones. Dds lists one region when RegionId names
it (its SDK request model: "If you do not specify this parameter, all supported regions are
queried"); R-kvstore's metadata names no RegionId, so it always lists them all. A RAM role may call
DescribeRegions only when its policy grants it.
"""

from __future__ import annotations

from typing import Any

import pytest
from alibabacloud_dds20151201 import models as dm
from alibabacloud_dds20151201.client import Client as DdsClient
from alibabacloud_r_kvstore20150101 import models as km
from alibabacloud_r_kvstore20150101.client import Client as KvstoreClient

from localcloud.server import RunningServer
from tests.conftest import TEST_ACCOUNT
from tests.contract.helpers import openapi_config, refused

MEMBER = "2222333344445555"
MEMBER_KEY = {"access_key_id": "LTAI5tRegionsMember01", "access_key_secret": "regions-member-secret"}
# A role allowed to list instances but not regions.
LIST_ONLY_ROLE = {
    "access_key_id": "STS.NRegionsListOnly01",
    "access_key_secret": "regions-list-only-secret",
    "security_token": "CAISregionsListOnlyToken0123456789",
    "expiration": "2099-01-01T00:00:00Z",
    "role": {
        "name": "list-only",
        "policies": [
            {
                "Version": "1",
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Action": ["kvstore:DescribeInstances", "dds:DescribeDBInstances"],
                        "Resource": "*",
                    }
                ],
            }
        ],
    },
}
NATIVE = {"NodeType": "MASTER_SLAVE", "InstanceClass": "redis.shard.small.2.ce"}


def seed(**extra: Any) -> dict[str, Any]:
    return {
        "accounts": [
            {**TEST_ACCOUNT, "sts": [*TEST_ACCOUNT.get("sts", []), LIST_ONLY_ROLE]},
            {"account_id": MEMBER, **MEMBER_KEY},
        ],
        "redis": [
            {"InstanceId": "r-bp1regions00001", "RegionId": "cn-shanghai", "EngineVersion": "6.0", **NATIVE},
            {"InstanceId": "r-bp1regions00002", "RegionId": "cn-hangzhou", "ZoneId": "cn-hangzhou-k",
             "EngineVersion": "6.0", **NATIVE},
            {"InstanceId": "r-bp1regions00003", "RegionId": "ap-southeast-1", "EngineVersion": "6.0",
             "AccountId": MEMBER, **NATIVE},
        ],
        "mongodb": [{"DBInstanceId": "dds-bp1regions0001", "RegionId": "cn-beijing", "EngineVersion": "5.0"}],
        **extra,
    }  # fmt: skip


def kvstore_regions(lc: RunningServer, **credential: str) -> list[tuple[str, list[str], str]]:
    body = KvstoreClient(openapi_config(lc, **credential)).describe_regions(km.DescribeRegionsRequest()).body
    return [(r.region_id, r.zone_id_list.zone_id, r.zone_ids) for r in body.region_ids.kvstore_region]


def dds_regions(lc: RunningServer, region_id: str | None = None) -> list[tuple[str, list[str]]]:
    request = dm.DescribeRegionsRequest(region_id=region_id)
    body = DdsClient(openapi_config(lc)).describe_regions(request).body
    return [(r.region_id, [z.zone_id for z in r.zones.zone]) for r in body.regions.dds_region]


def test_each_product_serves_the_regions_its_seeded_instances_are_in(make_localcloud):
    lc = make_localcloud(seed())

    assert kvstore_regions(lc) == [
        ("ap-southeast-1", ["ap-southeast-1-h"], "ap-southeast-1-h"),
        ("cn-hangzhou", ["cn-hangzhou-k"], "cn-hangzhou-k"),
        ("cn-shanghai", ["cn-shanghai-h"], "cn-shanghai-h"),
    ]
    # The member account, with no instance in most of them, is told the same regions.
    assert [r[0] for r in kvstore_regions(lc, **MEMBER_KEY)] == [
        "ap-southeast-1",
        "cn-hangzhou",
        "cn-shanghai",
    ]
    assert dds_regions(lc) == [("cn-beijing", ["cn-beijing-h"])]


def test_the_seeds_regions_are_what_both_products_serve(make_localcloud):
    lc = make_localcloud(seed(regions=["cn-hangzhou", "cn-shenzhen"]))

    assert [r[0] for r in kvstore_regions(lc)] == ["cn-hangzhou", "cn-shenzhen"]
    assert dds_regions(lc) == [("cn-hangzhou", ["cn-hangzhou-h"]), ("cn-shenzhen", ["cn-shenzhen-h"])]


def test_dds_lists_only_the_region_named(make_localcloud):
    lc = make_localcloud(seed(regions=["cn-hangzhou", "cn-shenzhen"]))

    assert dds_regions(lc, "cn-shenzhen") == [("cn-shenzhen", ["cn-shenzhen-h"])]


@pytest.mark.parametrize("product", ["kvstore", "dds"])
def test_a_role_without_describe_regions_is_refused(make_localcloud, product):
    lc = make_localcloud(seed())
    credential = {k: LIST_ONLY_ROLE[k] for k in ("access_key_id", "access_key_secret", "security_token")}
    config = openapi_config(lc, **credential)
    if product == "kvstore":
        call: Any = lambda: KvstoreClient(config).describe_regions(km.DescribeRegionsRequest())  # noqa: E731
    else:
        call = lambda: DdsClient(config).describe_regions(dm.DescribeRegionsRequest())  # noqa: E731

    code, status, _ = refused(call)

    assert (code, status) == ("Forbidden.RAM", 403)
