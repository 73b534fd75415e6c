"""Contract: localcloud's published API quotas (``"published_quotas": true``) as tea-openapi sees them.

R-kvstore's quota page gives DescribeEngineVersion 1000 calls per 60 s per region, API and main
account (https://help.aliyun.com/document_detail/472150.html): the 1,001st call in a region within
the period is refused with Throttling.User, the same call in another region is answered.
"""

from __future__ import annotations

from typing import Any

import pytest
from alibabacloud_tea_openapi.client import Client as OpenApiClient
from alibabacloud_tea_openapi.exceptions import ThrottlingException

from tests.contract.helpers import call_api, openapi_config, set_faults

REGIONS = ("cn-hangzhou", "cn-beijing")
IIDS = {"cn-hangzhou": "r-bp1quota00000001", "cn-beijing": "r-2zequota00000001"}
SEED: dict[str, Any] = {
    "redis": [
        {"InstanceId": IIDS[region], "RegionId": region, "EngineVersion": "6.0",
         "InstanceStatus": "Normal", "NodeType": "MASTER_SLAVE"}
        for region in REGIONS
    ],
    "published_quotas": True,
}  # fmt: skip
QUOTA = 1000  # DescribeEngineVersion per 60 s


def engine_versions(client: OpenApiClient, region: str) -> dict[str, Any]:
    return call_api(client, "DescribeEngineVersion", {"RegionId": region, "InstanceId": IIDS[region]})


def test_the_call_past_the_quota_is_refused_in_its_region_and_answered_in_another(make_localcloud) -> None:
    lc = make_localcloud(SEED)
    client = OpenApiClient(openapi_config(lc))
    for _ in range(QUOTA):
        assert engine_versions(client, "cn-hangzhou")["statusCode"] == 200

    with pytest.raises(ThrottlingException) as refused:
        engine_versions(client, "cn-hangzhou")

    assert (refused.value.code, refused.value.status_code) == ("Throttling.User", 400)
    assert 0 < refused.value.retry_after <= 60_000  # when the oldest call of the period leaves it
    assert engine_versions(client, "cn-beijing")["statusCode"] == 200  # another region's own quota
    # Switched off, localcloud enforces nothing again (the fixtures' default).
    set_faults(lc, published_quotas=False)
    assert engine_versions(client, "cn-hangzhou")["statusCode"] == 200
