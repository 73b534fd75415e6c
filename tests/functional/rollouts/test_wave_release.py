"""A wave is released concurrently (``PUBLISH_CONCURRENCY`` senders), and still each target's message
is published exactly once: read back off the queue the rollout topic feeds, with the official MNS
SDK. Publishes that fail (localcloud's MNS faults: throttled, 5xx, connection dropped before the
call was taken) lose no target: the failed ones stay pending and the next round releases them,
under the same delivery id; none is sent twice.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable

from dbupgrade.rollouts import advance_all
from dbupgrade.rollouts.service import PUBLISH_CONCURRENCY, PUBLISH_MIN_SHARE

from tests.conftest import queue_messages
from tests.functional.rollouts.conftest import INBOX, Fleet, redis_instance
from tests.functional.rollouts.test_rollout_fleet import spec, targets_for

WAVE = 50
assert WAVE >= PUBLISH_CONCURRENCY * PUBLISH_MIN_SHARE  # the wave is big enough for every sender


def released(fleet: Fleet) -> Counter[str]:
    """Delivery ids of the messages the rollout topic pushed to the inbox since the last look (read
    with the MNS SDK, then held for ``fleet.deliver``): how many of each."""
    seen: Counter[str] = Counter()
    for message in queue_messages(fleet.lc.url, INBOX):
        body = message.message_body.encode()
        # Format JSON: the topic's envelope carries the published body in "Message".
        seen[json.loads(json.loads(body)["Message"])["delivery_id"]] += 1
        fleet.held.append(body)
    return seen


def wave_of(make_fleet: Callable[..., Fleet], rollout_id: str) -> tuple[Fleet, list[str]]:
    ids = [f"r-{rollout_id}{n:05d}" for n in range(WAVE)]
    return make_fleet([redis_instance(i) for i in ids]), ids


def test_a_wave_publishes_each_targets_message_exactly_once(make_fleet: Callable[..., Fleet]) -> None:
    fleet, ids = wave_of(make_fleet, "once")

    started = fleet.rollouts.start(spec("once", targets_for(ids), "100%"))

    assert started["counts"] == {"dispatched": WAVE}
    assert released(fleet) == Counter({f"once:{i}": 1 for i in ids})
    advance_all(fleet.tracker)  # a round with the wave in flight publishes nothing more
    assert released(fleet) == Counter()
    assert fleet.deliver() == WAVE
    assert fleet.upgrade_calls() == dict.fromkeys(ids, 1)


def test_publishes_that_fail_leave_their_targets_for_the_next_round_and_none_is_sent_twice(
    make_fleet: Callable[..., Fleet],
) -> None:
    fleet, ids = wave_of(make_fleet, "flaky")
    faults = {"product": "mns", "action": "PublishMessage", "throttle_rate": 0.2, "error_rate": 0.1}
    fleet.post("/_localcloud/faults", {"seed": 15, "rules": [{**faults, "drop_rate": 0.1}]})

    started = fleet.rollouts.start(spec("flaky", targets_for(ids), "100%"))

    rows = {row["instance_id"]: row for row in started["rows"]}
    sent = {i for i, row in rows.items() if row["state"] == "dispatched"}
    unsent = set(ids) - sent
    assert sent and unsent  # the faults hit some publishes, not all
    assert {rows[i]["state"] for i in unsent} == {"pending"}
    assert all(rows[i]["message"].startswith("not sent yet") for i in unsent)
    assert released(fleet) == Counter({f"flaky:{i}": 1 for i in sent})  # only what was answered 201

    fleet.post("/_localcloud/faults", {"rules": []})
    [status] = advance_all(fleet.tracker)  # the next round

    assert status["counts"] == {"dispatched": WAVE}
    # The rest, each once, under the delivery id it was first tried with; none of the first again.
    assert released(fleet) == Counter({f"flaky:{i}": 1 for i in unsent})
    assert fleet.deliver() == WAVE
    assert fleet.upgrade_calls() == dict.fromkeys(ids, 1)


def test_a_publish_whose_reply_was_lost_is_sent_again_and_upgrades_once(
    make_fleet: Callable[..., Fleet],
) -> None:
    """Taken by MNS, its reply lost: neither the MNS SDK (which sends a request once more when the
    connection closes unanswered) nor the round can tell it from a failure, so it may be published
    again, always under the same delivery id, and the rollout function's idempotency upgrades once."""
    fleet, ids = wave_of(make_fleet, "lost")
    # The SDK's second try hides one lost reply; only a target whose two tries both lose theirs stays
    # pending. Concurrent senders take the seeded draws in varying order, so the rate is set where
    # no target staying pending has odds of 0.75**50 (~6e-7), not 0.96**50 (13%, a CI flake).
    rule = {"product": "mns", "action": "PublishMessage", "lost_reply_rate": 0.5}
    fleet.post("/_localcloud/faults", {"seed": 15, "rules": [rule]})

    started = fleet.rollouts.start(spec("lost", targets_for(ids), "100%"))
    unsent = {row["instance_id"] for row in started["rows"] if row["state"] == "pending"}
    fleet.post("/_localcloud/faults", {"rules": []})
    advance_all(fleet.tracker)

    assert unsent
    copies = released(fleet)
    assert set(copies) == {f"lost:{i}" for i in ids}  # every target, under its one delivery id
    assert all(copies[f"lost:{i}"] >= 2 for i in unsent)  # its lost publish, and the next round's
    assert fleet.deliver() == copies.total()
    assert fleet.upgrade_calls() == dict.fromkeys(ids, 1)
