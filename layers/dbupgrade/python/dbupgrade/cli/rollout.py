"""``dbupgrade rollout ...``: plan, start, watch and steer fleet rollouts (``dbupgrade.rollouts``).

Same configuration as the functions (DBUPGRADE_* / ALIBABA_CLOUD_*, or DBUPGRADE_LOCAL for a local
stack). Targets come from a MANIFEST file (CSV / JSON / YAML) or a selector::

    dbupgrade rollout plan fleet.csv
    dbupgrade rollout plan --engine redis --tag env=prod --from-version 6.0 --target 7.0
    dbupgrade rollout start fleet.csv --waves 1,10%,100% --max-errors 3 --max-in-flight 20
    dbupgrade rollout list
    dbupgrade rollout status redis-7 --watch
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import click

from dbupgrade.engines import ENGINES

EFFECTIVE = click.Choice(["immediate", "maintenance_window"])
BAR_WIDTH = 40


def target_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """MANIFEST or a selector (--engine / --tag / --region / --from-version with --target)."""
    options = [
        click.argument(
            "manifest", required=False, type=click.Path(exists=True, dir_okay=False, path_type=Path)
        ),
        click.option("--engine", type=click.Choice(sorted(ENGINES)), help="Selector: the engine."),
        click.option(
            "--tag", "tags", multiple=True, metavar="KEY=VALUE", help="Selector: a tag (repeatable)."
        ),
        click.option("--region", "regions", multiple=True, help="Selector: a region (repeatable)."),
        click.option(
            "--from-version", "from_versions", multiple=True, help="Selector: a current version (repeatable)."
        ),
        click.option(
            "--target",
            "targets",
            multiple=True,
            metavar="[ENGINE=]VERSION",
            help="Selector: the target version, per engine when both are selected (repeatable).",
        ),
        click.option(
            "--effective", type=EFFECTIVE, help="When the switchover happens (rows may set their own)."
        ),
    ]
    for option in reversed(options):
        command = option(command)
    return command


@click.group()
def rollout() -> None:
    """Fleet rollouts: a read-only plan, canary waves, an error budget, halt / resume / cancel."""
    from dbupgrade.logging import logger

    logger.registered_handler.setStream(sys.stderr)  # stdout carries the command's output alone


@contextmanager
def _operator_errors() -> Iterator[None]:
    """The library's refusals as click errors naming what to fix (exit status 1 or 2).

    A failed list or describe call (a wrong key, a missing permission, the API down) is one line too:
    what to fix for a configuration error, else the API's message, each with its code.
    """
    from dbupgrade.cloudapi import CloudError
    from dbupgrade.errors import ConfigError, StoreUnavailable
    from dbupgrade.model import InvalidRequest
    from dbupgrade.rollouts import (
        RolloutExists,
        RolloutFinished,
        RolloutLocked,
        RolloutNotFound,
        TargetsOwned,
    )

    try:
        yield
    except InvalidRequest as error:
        raise click.BadParameter(str(error), param_hint=error.field) from None
    except (
        ConfigError,
        RolloutExists,
        RolloutFinished,
        RolloutLocked,
        RolloutNotFound,
        TargetsOwned,
    ) as error:
        raise click.ClickException(str(error)) from None
    except StoreUnavailable:
        raise click.ClickException("the state store is unreachable; nothing was changed") from None
    except CloudError as error:
        raise click.ClickException(f"cloud API call failed: {error.explain()}") from None


def _upgrader() -> Any:
    from dbupgrade.usecase import Upgrader

    return Upgrader.from_env()


def _resolve_targets(
    upgrader: Any,
    manifest: Path | None,
    engine: str | None,
    tags: tuple[str, ...],
    regions: tuple[str, ...],
    from_versions: tuple[str, ...],
    targets: tuple[str, ...],
    effective: str | None,
) -> list[dict[str, Any]]:
    from dbupgrade.model import InvalidRequest
    from dbupgrade.rollouts import load_manifest, select_targets, validate_targets

    selecting = bool(engine or tags or regions or from_versions or targets)
    if manifest is not None:
        if selecting:
            raise InvalidRequest("manifest", "give a MANIFEST or selector options, not both")
        return validate_targets(load_manifest(manifest), effective=effective)
    if not selecting:
        raise InvalidRequest("manifest", "give a MANIFEST file or a selector (--engine/--tag/... --target)")
    selector = {
        "engine": engine,
        "tags": dict(_pair(tag, "--tag") for tag in tags),
        "regions": list(regions),
        "from_versions": list(from_versions),
    }
    by_engine: dict[str, str] = {}
    for target in targets:
        if "=" in target:
            name, version = _pair(target, "--target")
            by_engine[name] = version
        elif engine is not None:
            by_engine[engine] = target
        else:
            raise InvalidRequest("target", "with both engines selected, write ENGINE=VERSION (redis=7.0)")
    return select_targets(upgrader, selector, by_engine, effective=effective)


def _pair(text: str, option: str) -> tuple[str, str]:
    from dbupgrade.model import InvalidRequest

    key, sep, value = text.partition("=")
    if not sep or not key.strip() or not value.strip():
        raise InvalidRequest(option, f"expected KEY=VALUE, got {text!r}")
    return key.strip(), value.strip()


@rollout.command("plan")
@target_options
@click.option(
    "--concurrency", type=click.IntRange(1, 32), default=8, show_default=True, help="Describes at once."
)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def plan_command(
    manifest: Path | None,
    engine: str | None,
    tags: tuple[str, ...],
    regions: tuple[str, ...],
    from_versions: tuple[str, ...],
    targets: tuple[str, ...],
    effective: str | None,
    concurrency: int,
    as_json: bool,
) -> None:
    """Read-only: what a rollout would do to every target (describe APIs only, nothing is submitted)."""
    from dbupgrade.rollouts import plan

    with _operator_errors():
        upgrader = _upgrader()
        found = _resolve_targets(upgrader, manifest, engine, tags, regions, from_versions, targets, effective)
        result = plan(upgrader, found, concurrency=concurrency)
    misconfigured = [row for row in result["rows"] if row["reason"] == "configuration"]
    if misconfigured:
        # Every row would say the same: the key, role or endpoint is wrong. One line says what to fix.
        raise click.ClickException(str(misconfigured[0]["message"]))
    if as_json:
        click.echo(json.dumps(result, indent=2))
        return
    click.echo(f"{'INSTANCE':<26} {'ENGINE':<8} {'CURRENT':<8} {'TARGET':<7} {'ACTION':<12} WHY")
    for row in result["rows"]:
        why = "" if row["action"] == "submit" else row["message"] or row["reason"] or ""
        click.echo(
            f"{row['instance_id']:<26} {row['engine'] or '-':<8} {row['current_version'] or '-':<8} "
            f"{row['target_version']:<7} {row['action']:<12} {why}"
        )
    totals = ", ".join(f"{count} {action}" for action, count in result["totals"].items())
    click.echo(f"\n{result['targets']} targets: {totals}")


@rollout.command("start")
@target_options
@click.option("--id", "rollout_id", help="Rollout id (default: ro-<UTC time>); used by status/resume/cancel.")
@click.option("--waves", default="1,10%,100%", show_default=True, help="Cumulative wave sizes: counts or %.")
@click.option(
    "--max-in-flight", type=click.IntRange(min=1), help="Upgrades released but not finished, at most."
)
@click.option("--max-errors", type=click.IntRange(min=0), help="Halt once more targets than this failed.")
@click.option("--window", help="Release waves only inside it, e.g. '02:00-05:00 Asia/Shanghai'.")
@click.option(
    "--exclude-owned",
    is_flag=True,
    help=(
        "Leave out targets another active rollout still has to upgrade (listed on stderr) instead "
        "of refusing to start."
    ),
)
def start_command(
    manifest: Path | None,
    engine: str | None,
    tags: tuple[str, ...],
    regions: tuple[str, ...],
    from_versions: tuple[str, ...],
    targets: tuple[str, ...],
    effective: str | None,
    rollout_id: str | None,
    waves: str,
    max_in_flight: int | None,
    max_errors: int | None,
    window: str | None,
    exclude_owned: bool,
) -> None:
    """Record a rollout and release its first wave; prints the rollout id.

    A target another active rollout still has to upgrade belongs to that rollout: start refuses,
    listing them, unless --exclude-owned leaves them out. Later waves are released by `rollout advance` or the tracker function (every minute), each only
    once every target of the waves before it has finished, while the error budget holds.
    """
    from dbupgrade.config import Window
    from dbupgrade.errors import ConfigError
    from dbupgrade.model import InvalidRequest
    from dbupgrade.rollouts import Rollouts, RolloutSpec, parse_waves
    from dbupgrade.rollouts.model import ROLLOUT_ID

    rollout_id = rollout_id or datetime.now(timezone.utc).strftime("ro-%Y%m%dT%H%M%SZ")
    if not ROLLOUT_ID.match(rollout_id):
        raise click.BadParameter("letters, digits, '.', '_' or '-', at most 64", param_hint="--id")
    if window is not None:
        try:
            Window.parse(window, "--window")
        except ConfigError as error:
            raise click.BadParameter(str(error), param_hint="--window") from None
    with _operator_errors():
        upgrader = _upgrader()
        found = _resolve_targets(upgrader, manifest, engine, tags, regions, from_versions, targets, effective)
        try:
            sizes = parse_waves(waves, len(found))
        except InvalidRequest as error:
            raise click.BadParameter(str(error), param_hint="--waves") from None
        spec = RolloutSpec(rollout_id, tuple(found), sizes, waves, max_in_flight, max_errors, window)
        status = Rollouts(upgrader).start(spec, exclude_owned=exclude_owned)
    for instance, owner in status.get("excluded", {}).items():
        click.echo(f"excluded {instance}: rollout {owner} has it", err=True)
    click.echo(rollout_id)
    click.echo(_line(status), err=True)


@rollout.command("advance")
@click.argument("rollout_id", required=False)
def advance_command(rollout_id: str | None) -> None:
    """One round now (what the tracker does every minute): record finished upgrades, release more."""
    from dbupgrade.rollouts import Rollouts, advance_all

    with _operator_errors():
        upgrader = _upgrader()
        statuses = (
            [Rollouts(upgrader).advance(rollout_id, wait=True)] if rollout_id else advance_all(upgrader)
        )
    for status in statuses:
        click.echo(_line(status) if "status" in status else f"{status['rollout_id']}: busy")


@rollout.command("list")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def list_command(as_json: bool) -> None:
    """The rollouts still running or in flight, one line each (what the tracker advances)."""
    from dbupgrade.rollouts import RolloutNotFound, Rollouts

    with _operator_errors():
        rollouts = Rollouts(_upgrader())
        statuses = []
        for rollout_id in rollouts.repo.active():
            try:
                statuses.append(rollouts.status(rollout_id))
            except RolloutNotFound:  # cleared from the store since it was listed
                continue
    if as_json:
        click.echo(json.dumps(statuses, indent=2))
        return
    for status in statuses:
        click.echo(_line(status))
    if not statuses:
        click.echo("no active rollouts")


@rollout.command("status")
@click.argument("rollout_id")
@click.option("--watch", is_flag=True, help="Redraw until the rollout ends (Ctrl-C stops watching).")
@click.option("--interval", type=click.FloatRange(min=0.5), default=5.0, show_default=True)
@click.option(
    "--json", "as_json", is_flag=True, help="Machine-readable output (with --watch: one line each)."
)
def status_command(rollout_id: str, watch: bool, interval: float, as_json: bool) -> None:
    """Progress, counts per state, failures with their codes, wave and ETA (the summary once ended)."""
    from dbupgrade.rollouts import Rollouts

    with _operator_errors():
        rollouts = Rollouts(_upgrader())
        while True:
            status = rollouts.status(rollout_id)
            if as_json:
                click.echo(json.dumps(status, indent=None if watch else 2))
            else:
                click.echo(render_status(status))
            if not watch or status["ended"]:
                break
            time.sleep(interval)
    sys.exit(1 if status["status"] in ("halted", "cancelled") else 0)


@rollout.command("resume")
@click.argument("rollout_id")
def resume_command(rollout_id: str) -> None:
    """Continue a halted rollout: halted targets are released again and the error budget restarts."""
    from dbupgrade.rollouts import Rollouts

    with _operator_errors():
        status = Rollouts(_upgrader()).resume(rollout_id)
    click.echo(_line(status))


@rollout.command("cancel")
@click.argument("rollout_id")
def cancel_command(rollout_id: str) -> None:
    """Stop for good: nothing more is released; unreleased targets get a `halted` outcome (cancelled)."""
    from dbupgrade.rollouts import Rollouts

    with _operator_errors():
        status = Rollouts(_upgrader()).cancel(rollout_id)
    click.echo(_line(status))


def _line(status: dict[str, Any]) -> str:
    return (
        f"{status['rollout_id']}: {status['status']}, wave {status['wave']}/{len(status['waves'])}, "
        f"{status['done']}/{status['targets']} done, {status['errors']} errors"
        + (f" ({status['reason']})" if status["reason"] else "")
    )


def render_status(status: dict[str, Any]) -> str:
    """The human view: a progress bar, counts, wave, ETA, why it stopped, and the failures."""
    total, done = status["targets"], status["done"]
    filled = round(BAR_WIDTH * done / total) if total else BAR_WIDTH
    eta = status["eta_seconds"]
    lines = [
        f"rollout {status['rollout_id']}: {status['status'].upper()}"
        + (f" - {status['reason']}" if status["reason"] else ""),
        f"[{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {done}/{total}"
        + (f"  ETA {_duration(eta)}" if eta is not None else ""),
        f"wave {status['wave']} of {len(status['waves'])} (cumulative sizes {status['waves']}), "
        f"in flight {status['in_flight']}"
        + (f" (max {status['max_in_flight']})" if status["max_in_flight"] else "")
        + (f"; released only inside {status['window']}" if status["window"] else ""),
        "states: " + ", ".join(f"{state} {count}" for state, count in status["counts"].items()),
        f"errors: {status['errors']}"
        + (f" (budget {status['max_errors']})" if status["max_errors"] is not None else "")
        + f"; elapsed {_duration(status['duration_seconds'])}",
    ]
    for failure in status["failures"]:
        lines.append(
            f"  {failure['instance_id']}: {failure['state']} {failure['code'] or failure['reason'] or ''}"
            f" - {failure['message'] or ''}"
        )
    return "\n".join(lines)


def _duration(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"
