"""The published default API rate quotas of R-kvstore and Dds, enforced when a seed or
``POST /_localcloud/faults`` sets ``"published_quotas": true`` (off by default: the test suite's
fixtures stay fast).

Sources (the products' "API rate quota" / API速率配额 pages; rows read
``<action> | <version> | <calls>/<period>(s) | 地域:* API限速维度:regionId,API,ParentUid``, i.e. a
quota per region, per API, per main account):

- R-kvstore 2015-01-01: https://help.aliyun.com/document_detail/472150.html
  (https://help.aliyun.com/en/redis/developer-reference/api-r-kvstore-2015-01-01-quota-redis)
- Dds 2015-12-01: https://help.aliyun.com/document_detail/468451.html
- The notation: https://help.aliyun.com/en/openapi/throttling-and-quota-management ("200/60 s - the
  API can be called up to 200 times per minute"); exceeding it answers ``Throttling.User``.
"""

from __future__ import annotations

# (product, action) -> (calls, period seconds), the rows read from the pages above.
PUBLISHED: dict[tuple[str, str], tuple[int, float]] = {
    # https://help.aliyun.com/document_detail/472150.html:
    # "DescribeEngineVersion | 2015-01-01 | 1000/60(s) | 地域:* API限速维度:regionId,API,ParentUid"
    ("r-kvstore", "DescribeEngineVersion"): (1000, 60.0),
}
# CreateBackup's rows on both pages read "暂无数据" (no quota published): it gets ASSUMED below.
# Assumption: an R-kvstore or Dds action whose row was not read gets 600 calls per 60 s (10/s),
# below the one row read (1000/60 s), so localcloud never lets through more than the cloud might.
ASSUMED: tuple[int, float] = (600, 60.0)
# Assumption: how the cloud counts calls inside the period is not published; localcloud allows at
# most ``calls`` in any ``period`` seconds (a sliding window), bursts included, and a refusal's
# x-acs-retry-after says when the oldest counted call leaves the window.
PRODUCTS = ("r-kvstore", "dds")


def quota(product: str, action: str) -> tuple[int, float] | None:
    """``(calls, period seconds)`` of the action's quota per account and region; None: unquoted."""
    if product not in PRODUCTS:
        return None
    return PUBLISHED.get((product, action), ASSUMED)
