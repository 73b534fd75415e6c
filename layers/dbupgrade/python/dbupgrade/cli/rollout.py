"""``dbupgrade rollout ...``: plan, start, watch and steer fleet rollouts (``dbupgrade.rollouts``).

Same configuration as the functions (DBUPGRADE_* / ALIBABA_CLOUD_*, or DBUPGRADE_LOCAL for a local
stack). Targets come from a MANIFEST file (CSV / JSON / YAML) or a selector::

    dbupgrade rollout plan fleet.csv
    dbupgrade rollout plan --engine redis --tag env=prod --from-version 6.0 --target 7.0
    dbupgrade rollout start fleet.csv --waves 1,10%,100% --max-errors 3 --max-in-flight 20
    dbupgrade rollout start --all-accounts --region cn-hangzhou --region cn-shanghai --engine redis \
        --target 7.0 --max-in-flight-per-location 5 --max-errors-per-location 2
    dbupgrade rollout list
    dbupgrade rollout status redis-7 --watch
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import wraps
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from dbupgrade.engines import ENGINES

if TYPE_CHECKING:  # the CLI imports the plan only when a command needs it
    from dbupgrade.rollouts.plan import Estimate

EFFECTIVE = click.Choice(["immediate", "maintenance_window"])
BAR_WIDTH = 40


@dataclass(frozen=True)
class TargetSelection:
    """What names the targets: a MANIFEST, or a selector (``target_options``), as parsed."""

    manifest: Path | None
    engine: str | None
    tags: tuple[str, ...]
    regions: tuple[str, ...]
    from_versions: tuple[str, ...]
    targets: tuple[str, ...]
    effective: str | None
    accounts: tuple[str, ...]
    all_accounts: bool

    @property
    def selecting(self) -> bool:
        """Any selector option given (a MANIFEST excludes them)."""
        return bool(
            self.engine
            or self.tags
            or self.regions
            or self.from_versions
            or self.targets
            or self.accounts
            or self.all_accounts
        )

    @property
    def names_accounts(self) -> bool:
        """Other accounts than the own one named (--account or --all-accounts)."""
        return bool(self.accounts or self.all_accounts)


def target_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """MANIFEST or a selector (--engine / --tag / --region / --from-version with --target), given
    to the command as one ``selection`` (a ``TargetSelection``)."""

    @wraps(command)
    def with_selection(**kwargs: Any) -> Any:
        selection = TargetSelection(
            manifest=kwargs.pop("manifest"),
            engine=kwargs.pop("engine"),
            tags=kwargs.pop("tags"),
            regions=kwargs.pop("regions"),
            from_versions=kwargs.pop("from_versions"),
            targets=kwargs.pop("targets"),
            effective=kwargs.pop("effective"),
            accounts=kwargs.pop("accounts"),
            all_accounts=kwargs.pop("all_accounts"),
        )
        return command(selection=selection, **kwargs)

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
            "--account",
            "accounts",
            multiple=True,
            metavar="ID",
            help=(
                "Selector: an account of the organisation (repeatable); another account than "
                "DBUPGRADE_ACCOUNT_ID is reached through its DBUPGRADE_MEMBER_ROLE (default dbupgrade-member)."
            ),
        ),
        click.option(
            "--all-accounts",
            is_flag=True,
            help=(
                "Selector: every account of the Resource Directory (ListAccounts: run it with the "
                "management or a delegated administrator account's credentials; needs DBUPGRADE_ACCOUNT_ID)."
            ),
        ),
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
    decorated: Callable[..., Any] = with_selection
    for option in reversed(options):
        decorated = option(decorated)
    return decorated


def campaign_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """--apply-by, --waves-by-tag and --exclude-unmatched (``dbupgrade.rollouts.campaign``)."""
    options = [
        click.option(
            "--apply-by",
            metavar="DATE",
            help="A campaign: the date it must be done by (ISO date or datetime, UTC; 2026-09-25 is that "
            "day's 00:00 UTC). `status` shows the burn-down; the tracker sends one digest a day.",
        ),
        click.option(
            "--waves-by-tag",
            metavar="KEY=V1,V2,...",
            help="Wave n holds the targets whose tag KEY is the nth value (env=dev,staging,prod); "
            "instead of --waves. A target with another value or none is refused unless --exclude-unmatched.",
        ),
        click.option(
            "--exclude-unmatched",
            is_flag=True,
            help="With --waves-by-tag: leave out the targets whose tag has none of the values (counted "
            "per value on stderr) instead of refusing.",
        ),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def _campaign(
    upgrader: Any,
    found: list[dict[str, Any]],
    apply_by: str | None,
    waves_by_tag: str | None,
    exclude_unmatched: bool,
    label: str,
) -> tuple[str | None, list[dict[str, Any]], tuple[int, ...] | None, dict[str, Any] | None]:
    """(apply_by, the targets in release order, the waves, the wave tag plan): the targets and waves
    as given when no --waves-by-tag; refusals are one line (``InvalidRequest``)."""
    from dbupgrade.model import InvalidRequest
    from dbupgrade.rollouts.campaign import parse_apply_by, parse_wave_tag, read_tags
    from dbupgrade.rollouts.campaign import waves_by_tag as by_tag

    if exclude_unmatched and not waves_by_tag:
        raise InvalidRequest("--exclude-unmatched", "goes with --waves-by-tag")
    deadline = parse_apply_by(apply_by) if apply_by else None
    if not waves_by_tag:
        return deadline, found, None, None
    key, values = parse_wave_tag(waves_by_tag)
    tags = read_tags(upgrader, found, label=label)
    ordered, sizes, plan = by_tag(found, tags, key, values, exclude_unmatched=exclude_unmatched)
    for value, count in plan["excluded"].items():
        click.echo(f"left out {count} target(s) with {key} {value}: not a wave of --waves-by-tag", err=True)
    return deadline, ordered, sizes, plan


def _wave_tag_lines(plan: dict[str, Any] | None) -> list[str]:
    if not plan:
        return []
    waves = ", ".join(
        f"wave {w['wave']} {plan['key']}={w['value']}: {w['targets']}"
        if w["wave"]
        else f"{plan['key']}={w['value']}: none"
        for w in plan["waves"]
    )
    excluded = ", ".join(f"{value}: {count}" for value, count in plan["excluded"].items())
    return [f"waves by tag: {waves}" + (f" (left out: {excluded})" if excluded else "")]


# The manifest format, shown under `rollout --help`, `plan --help` and `start --help`.
MANIFEST_HELP = """\b
MANIFEST: a file of targets, its format by its suffix:
  CSV   a header line, then one row per target:
          instance_id,target_version[,engine,region,effective,ticket_id,account_id]
          r-bp1abc,7.0
        UTF-8, with or without the BOM Excel writes; an empty cell means "not set"
  JSON  [{"instance_id": "r-bp1abc", "target_version": "7.0"}, ...] or {"targets": [...]}
  YAML  the same list: - {instance_id: r-bp1abc, target_version: '7.0'}
engine is inferred from the id prefix (r-: redis, dds-: mongodb); region defaults to
DBUPGRADE_REGION; effective is immediate or maintenance_window; ticket_id is free text;
account_id (a member account, reached through its role) defaults to the own account.
"""


@click.group(epilog=MANIFEST_HELP)
def rollout() -> None:
    """Fleet rollouts: a read-only plan, canary waves, an error budget, halt / resume / cancel."""


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


def _upgrader(*, reads_store: bool = True) -> Any:
    """The Upgrader from the environment; refuses an embedded store for a deployed stack's state."""
    from dbupgrade.cli.safety import require_shared_store
    from dbupgrade.usecase import Upgrader

    if reads_store:
        require_shared_store()
    return Upgrader.from_env()


def _cloud_upgrader(*, reads_store: bool = True) -> Any:
    """The Upgrader, for commands that call the cloud: credentials checked first (one line)."""
    from dbupgrade.cli.safety import require_credentials

    upgrader = _upgrader(reads_store=reads_store)
    require_credentials(upgrader)
    return upgrader


def _resolve_targets(
    upgrader: Any, selection: TargetSelection, label: str | None = None
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The targets, and the locations that could not be listed (account x region, with why)."""
    from dbupgrade.model import InvalidRequest
    from dbupgrade.rollouts import load_manifest, validate_targets

    engine, regions, effective = selection.engine, selection.regions, selection.effective
    if selection.accounts and selection.all_accounts:
        raise InvalidRequest("--account", "give --account or --all-accounts, not both")
    if selection.manifest is not None:
        if selection.selecting:
            raise InvalidRequest("manifest", "give a MANIFEST or selector options, not both")
        return validate_targets(load_manifest(selection.manifest), effective=effective), []
    if not selection.selecting:
        raise InvalidRequest("manifest", "give a MANIFEST file or a selector (--engine/--tag/... --target)")
    scanned = ", ".join(regions) if regions else "every region the product serves (DescribeRegions)"
    click.echo(f"scanning {engine or 'redis and mongodb'} in {scanned}", err=True)
    selector = {
        "engine": engine,
        "tags": dict(_pair(tag, "--tag") for tag in selection.tags),
        "regions": list(regions),
        "from_versions": list(selection.from_versions),
    }
    by_engine: dict[str, str] = {}
    for target in selection.targets:
        if "=" in target:
            name, version = _pair(target, "--target")
            by_engine[name] = version
        elif engine is not None:
            by_engine[engine] = target
        else:
            raise InvalidRequest("target", "with both engines selected, write ENGINE=VERSION (redis=7.0)")
    return _select_organisation(
        upgrader, selector, by_engine, selection.accounts, selection.all_accounts, effective, label
    )


def _select_organisation(
    upgrader: Any,
    selector: dict[str, Any],
    by_engine: dict[str, str],
    accounts: tuple[str, ...],
    all_accounts: bool,
    effective: str | None,
    label: str | None,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Select in each location (account x region): the own account alone unless --account or
    --all-accounts names more; the regions scanned and what each location gave, on stderr."""
    from dbupgrade.accounts import organisation_accounts
    from dbupgrade.config import ACCOUNT_ID_PATTERN
    from dbupgrade.model import InvalidRequest
    from dbupgrade.rollouts import select_locations

    for account in accounts:
        if not ACCOUNT_ID_PATTERN.match(account):
            raise InvalidRequest("--account", f"expected a numeric account ID, got {account[:40]!r}")
    ids: list[str | None] = [None]
    if accounts or all_accounts:
        regions = selector["regions"]
        ids = list(accounts) or list(organisation_accounts(upgrader, None, regions[0] if regions else None))
        click.echo(f"selecting in {len(ids)} account(s): {', '.join(map(str, ids))}", err=True)

    def scanning(account: str | None, by_engine: Any) -> None:
        if selector["regions"]:
            return  # the regions given, already shown
        where = f"account {account}" if account else "the own account"
        for name, regions in by_engine.items():
            shown = ", ".join(regions) or "none (DBUPGRADE_ALLOWED_REGIONS excludes them all)"
            click.echo(f"  {where}: {name} in {shown}", err=True)

    selection = select_locations(
        upgrader, selector, by_engine, ids, effective=effective, label=label, scanning=scanning
    )
    for location in selection.locations:
        where = f"{location['account_id'] or 'own account'}/{location['region']}"
        if location["code"] is None:
            click.echo(f"  {where}: {location['found']} instance(s)", err=True)
        else:
            click.echo(f"  {where}: unreachable - {location['message']}", err=True)
    return selection.targets, selection.unreachable


def _pair(text: str, option: str) -> tuple[str, str]:
    from dbupgrade.model import InvalidRequest

    key, sep, value = text.partition("=")
    if not sep or not key.strip() or not value.strip():
        raise InvalidRequest(option, f"expected KEY=VALUE, got {text!r}")
    return key.strip(), value.strip()


# A plan whose per-instance reads take at least this long at the rate limits says so before them.
SLOW_PLAN_SECONDS = 10.0
# Piped (no terminal), a long plan's progress is a line on stderr at most this often.
PROGRESS_LINE_SECONDS = 15.0


class PlanDisplay:
    """A plan's progress on stderr (``dbupgrade.rollouts.plan.PlanProgress``): first, when its
    per-instance reads take long at the rate limits, how long and which read sets it; then rich's
    progress bar in a terminal, or, piped, a line at most every ``PROGRESS_LINE_SECONDS``.

    Example::

        with PlanDisplay() as display:
            result = plan(upgrader, targets, progress=display)
    """

    def __init__(self) -> None:
        self._bar: Any = None
        self._task: Any = None
        self._started = self._last_line = time.monotonic()

    def __enter__(self) -> PlanDisplay:
        return self

    def __exit__(self, *_: object) -> None:
        if self._bar is not None:
            self._bar.stop()

    def started(self, estimate: Estimate, total: int) -> None:
        if estimate.seconds >= SLOW_PLAN_SECONDS:
            click.echo(
                f"reading {estimate.targets:,} targets one by one: at least ~{_duration(estimate.seconds)} "
                f"at the rate limits (slowest: {estimate.slowest}; after a quota increase, "
                "DBUPGRADE_RATE_LIMITS raises them)",
                err=True,
            )
        self._started = self._last_line = time.monotonic()
        if sys.stderr.isatty():
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

            self._bar = Progress(
                "checked", BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                console=Console(stderr=True), transient=True,
            )  # fmt: skip
            self._task = self._bar.add_task("checked", total=total)
            self._bar.start()

    def checked(self, done: int, total: int) -> None:
        if self._bar is not None:
            self._bar.update(self._task, completed=done)
            return
        now = time.monotonic()
        if done < total and now - self._last_line >= PROGRESS_LINE_SECONDS:
            self._last_line = now
            left = (total - done) * (now - self._started) / done
            click.echo(f"checked {done:,} of {total:,} targets, ~{_duration(left)} left", err=True)


def _planned(label: str, selection: TargetSelection, concurrency: int) -> dict[str, Any]:
    """The plan (with each target's readiness report) of `rollout plan` and `check`, read-only;
    ``label`` names the member accounts' role sessions."""
    from dbupgrade.rollouts import plan

    with _operator_errors():
        upgrader = _cloud_upgrader(reads_store=False)
        found, unreachable = _resolve_targets(upgrader, selection, label=label)
        with PlanDisplay() as display:
            result = plan(
                upgrader,
                found,
                concurrency=concurrency,
                unreachable=unreachable,
                label=label,
                progress=display,
            )
    # A member account's configuration is that account's (its location says so); the own one's is all.
    misconfigured = [r for r in result["rows"] if r["reason"] == "configuration" and not r["account_id"]]
    if misconfigured:
        # Every row would say the same: the key, role or endpoint is wrong. One line says what to fix.
        raise click.ClickException(str(misconfigured[0]["message"]))
    return result


@rollout.command("plan", epilog=MANIFEST_HELP)
@target_options
@click.option(
    "--concurrency", type=click.IntRange(1, 32), default=8, show_default=True, help="Describes at once."
)
@click.option(
    "--max-errors",
    type=click.IntRange(min=0),
    help="The error budget `start` would get: the plan says whether its predicted rejections spend it.",
)
@campaign_options
@click.option(
    "--max-in-flight", type=click.IntRange(min=1), help="The pace `start` would get: upgrades at once."
)
@click.option(
    "--max-in-flight-per-location",
    type=click.IntRange(min=1),
    help="The pace `start` would get: upgrades at once per location.",
)
@click.option("--window", help="The release window `start` would get (default: DBUPGRADE_WINDOW).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def plan_command(
    selection: TargetSelection,
    concurrency: int,
    max_errors: int | None,
    apply_by: str | None,
    waves_by_tag: str | None,
    exclude_unmatched: bool,
    max_in_flight: int | None,
    max_in_flight_per_location: int | None,
    window: str | None,
    as_json: bool,
) -> None:
    """Read-only: what a rollout would do to every target (describe APIs only, nothing is submitted).

    It reads the configuration the functions read (DBUPGRADE_WINDOW, DBUPGRADE_WINDOW_POLICY, scope:
    point the CLI at the stack's values, e.g. `eval "$(dbupgrade local env)"`), so WHEN says what the
    deployed functions would do: immediate, the instance's maintenance window, or deferred until the
    window opens.

    A campaign (--apply-by, --waves-by-tag): the waves by tag, and whether the date is reachable at
    the pace the waves, --max-in-flight[-per-location] and the window allow.
    """
    result = _planned("plan", selection, concurrency)
    if apply_by or waves_by_tag or exclude_unmatched:
        result["campaign"] = _plan_campaign(
            result,
            apply_by,
            waves_by_tag,
            exclude_unmatched,
            max_in_flight,
            max_in_flight_per_location,
            window,
        )
    if as_json:
        click.echo(json.dumps(result, indent=2))
        return
    click.echo(
        f"{'INSTANCE':<26} {'ENGINE':<8} {'CURRENT':<8} {'TARGET':<7} {'ACTION':<12} {'VERDICT':<8} "
        f"{'WHEN':<34} {'PATH':<30} WHY"
    )
    for row in result["rows"]:
        why = "" if row["action"] == "submit" else row["message"] or row["reason"] or ""
        click.echo(
            f"{row['instance_id']:<26} {row['engine'] or '-':<8} {row['current_version'] or '-':<8} "
            f"{row['target_version']:<7} {row['action']:<12} {row['verdict'] or '-':<8} {row['when']:<34} "
            f"{_path_text(row):<30} {why}"
        )
    totals = ", ".join(f"{count} {action}" for action, count in result["totals"].items())
    if selection.names_accounts or len(result["locations"]) > 1:
        click.echo(f"\n{'LOCATION':<36} {'TARGETS':>7}  FOUND")
        for location in result["locations"]:
            what = ", ".join(f"{count} {action}" for action, count in location["totals"].items())
            if location["status"] == "unreachable":
                what = f"UNREACHABLE - {location['reason']}"
            click.echo(f"{location['location']:<36} {location['targets']:>7}  {what}")
    click.echo(f"\n{result['targets']} targets: {totals}")
    verdicts = ", ".join(f"{count} {verdict}" for verdict, count in result["verdicts"].items())
    click.echo(f"readiness: {verdicts} (`dbupgrade check` lists the findings)")
    if result["window"]:
        click.echo(f"window {result['window']}, outside it: {result['window_policy']}")
    for line in budget_lines(result, max_errors):
        click.echo(line)
    for line in campaign_lines(result.get("campaign")):
        click.echo(line)


def _plan_campaign(
    result: dict[str, Any],
    apply_by: str | None,
    waves_by_tag: str | None,
    exclude_unmatched: bool,
    max_in_flight: int | None,
    max_in_flight_per_location: int | None,
    window: str | None,
) -> dict[str, Any]:
    """The plan's campaign part: the waves by tag and the projection against the date."""
    from collections import Counter

    from dbupgrade.config import Window
    from dbupgrade.errors import ConfigError
    from dbupgrade.rollouts.campaign import EXPECTED_UPGRADE_SECONDS, projection
    from dbupgrade.rollouts.model import location_of, parse_waves

    with _operator_errors():
        upgrader = _cloud_upgrader(reads_store=False)
        try:
            release = Window.parse(window, "--window") if window else upgrader.config.window
        except ConfigError as error:
            raise click.BadParameter(str(error), param_hint="--window") from None
        fields = ("instance_id", "engine", "region", "account_id", "target_version")
        found = [{k: row[k] for k in fields if row.get(k) is not None} for row in result["rows"]]
        deadline, ordered, sizes, plan = _campaign(
            upgrader, found, apply_by, waves_by_tag, exclude_unmatched, "plan"
        )
        waves = sizes or parse_waves("1,10%,100%", len(ordered))
        # A multi-hop row says how long it takes; the others are one hop.
        longest = max((row["expected_seconds"] or 0 for row in result["rows"]), default=0)
        projected = projection(
            waves,
            Counter(location_of(t) for t in ordered),
            apply_by=deadline,
            max_in_flight=max_in_flight,
            max_in_flight_per_location=max_in_flight_per_location,
            window=release,
            upgrade_seconds=max(longest, EXPECTED_UPGRADE_SECONDS),
        )
    return {"apply_by": deadline, "waves_by_tag": plan, "waves": list(waves), "projection": projected}


def campaign_lines(campaign: dict[str, Any] | None) -> list[str]:
    """The plan's campaign part in words: the waves by tag, the projected end against the date."""
    if not campaign:
        return []
    lines = _wave_tag_lines(campaign["waves_by_tag"])
    p = campaign["projection"]
    pace = (
        f"at {p['upgrades_at_once']} upgrade(s) at once, {p['rounds']} round(s) of ~{_duration(p['upgrade_seconds'])}: "
        f"~{p['projected_days']} day(s), done ~{p['projected_end']} (~{p['pace_per_day']}/day)"
    )
    if campaign["apply_by"]:
        verdict = "REACHABLE" if p["reachable"] else "NOT REACHABLE at this pace: raise the in-flight limits"
        pace += f"; apply by {campaign['apply_by']} ({p['days_left']} days left): {verdict}"
    return [*lines, pace]


def _path_text(row: dict[str, Any]) -> str:
    """``4.4>5.0>6.0>7.0 ~3h00m`` for a multi-hop upgrade; ``-`` for one hop."""
    if not row.get("path"):
        return "-"
    return ">".join(row["path"]) + f" ~{_duration(row['expected_seconds'])}"


def check_command(selection: TargetSelection, concurrency: int, as_json: bool) -> None:
    """``dbupgrade check``: the readiness report of every target (read-only, like ``rollout plan``)."""
    result = _planned("check", selection, concurrency)
    if as_json:
        click.echo(json.dumps({"verdicts": result["verdicts"], "rows": result["rows"]}, indent=2))
    else:
        for row in result["rows"]:
            verdict = row["verdict"] or f"- ({row['action']}: {row['message'] or row['reason']})"
            click.echo(
                f"{row['instance_id']} {row['engine'] or '-'} {row['current_version'] or '?'} -> "
                f"{row['target_version']}: {verdict}"
            )
            for finding in row["findings"]:
                if finding["grade"] != "ok":
                    click.echo(
                        f"  [{finding['grade']}] {finding['check']} ({finding['source']}): {finding['message']}"
                    )
        verdicts = ", ".join(f"{count} {verdict}" for verdict, count in result["verdicts"].items())
        click.echo(f"\n{result['targets']} targets: {verdicts}")
    if any(row["verdict"] != "go" and row["verdict"] != "warn" for row in result["rows"]):
        sys.exit(1)  # a script stops on anything not ready (blocked, or refused before any check)


def budget_lines(result: dict[str, Any], max_errors: int | None) -> list[str]:
    """The predicted rejections against the error budget, in words."""
    predicted = result["predicted_errors"]
    if not predicted:
        return []
    lines = [f"{predicted} targets would spend the error budget (reject / defer / error) before any upgrade"]
    if max_errors is not None and predicted > max_errors:
        lines.append(
            f"that is more than --max-errors {max_errors}: `rollout start` refuses; fix them, or start "
            "with --exclude-predicted-errors"
        )
    return lines


@rollout.command("start", epilog=MANIFEST_HELP)
@target_options
@click.option("--id", "rollout_id", help="Rollout id (default: ro-<UTC time>); used by status/resume/cancel.")
@click.option(
    "--waves",
    help="Cumulative wave sizes: counts or % (default 1,10%,100%); or --waves-by-tag instead.",
)
@click.option(
    "--max-in-flight", type=click.IntRange(min=1), help="Upgrades released but not finished, at most."
)
@click.option("--max-errors", type=click.IntRange(min=0), help="Halt once more targets than this failed.")
@click.option(
    "--max-in-flight-per-location",
    type=click.IntRange(min=1),
    help="Upgrades released but not finished, at most, per location (account x region).",
)
@click.option(
    "--max-errors-per-location",
    type=click.IntRange(min=0),
    help=(
        "A location (account x region) with more failed targets than this halts alone (its unreleased "
        "targets end halted, reason location_budget); the others go on under --max-errors."
    ),
)
@click.option("--window", help="Release waves only inside it, e.g. '02:00-05:00 Asia/Shanghai'.")
@click.option(
    "--exclude-predicted-errors",
    is_flag=True,
    help="With --max-errors: leave out the targets the plan predicts would be rejected, deferred or fail.",
)
@click.option(
    "--exclude-owned",
    is_flag=True,
    help=(
        "Leave out targets another active rollout still has to upgrade (listed on stderr) instead "
        "of refusing to start."
    ),
)
@campaign_options
@click.option("--yes", "-y", is_flag=True, help="Start without the confirmation prompt (scripts, CI).")
def start_command(
    selection: TargetSelection,
    rollout_id: str | None,
    waves: str | None,
    max_in_flight: int | None,
    max_errors: int | None,
    max_in_flight_per_location: int | None,
    max_errors_per_location: int | None,
    window: str | None,
    exclude_predicted_errors: bool,
    exclude_owned: bool,
    apply_by: str | None,
    waves_by_tag: str | None,
    exclude_unmatched: bool,
    yes: bool,
) -> None:
    """Record a rollout and release its first wave; prints the rollout id.

    With --max-errors it plans first (describe only): when the targets already predicted to be
    rejected, deferred or to fail would spend the budget, it refuses, naming them, unless
    --exclude-predicted-errors leaves them out.

    A target another active rollout still has to upgrade belongs to that rollout: start refuses,
    listing them, unless --exclude-owned leaves them out.

    Later waves are released by `rollout advance` or the tracker function (every minute), each only
    once every target of the waves before it has finished, while the error budget holds.

    A campaign: --apply-by DATE records the date (`status` shows the burn-down, the tracker sends a
    digest a day); --waves-by-tag env=dev,staging,prod releases one tag value per wave, in that
    order, under the same budgets and in-flight limits (not with --waves).
    """
    from dbupgrade.config import Window
    from dbupgrade.errors import ConfigError
    from dbupgrade.model import InvalidRequest
    from dbupgrade.rollouts import Rollouts, RolloutSpec, parse_waves
    from dbupgrade.rollouts.campaign import wave_text
    from dbupgrade.rollouts.model import ROLLOUT_ID

    if waves is not None and waves_by_tag:
        raise click.BadParameter(
            "give --waves or --waves-by-tag, not both: waves by tag release one tag value per wave",
            param_hint="--waves",
        )
    rollout_id = rollout_id or datetime.now(timezone.utc).strftime("ro-%Y%m%dT%H%M%SZ")
    if not ROLLOUT_ID.match(rollout_id):
        raise click.BadParameter("letters, digits, '.', '_' or '-', at most 64", param_hint="--id")
    if window is not None:
        try:
            Window.parse(window, "--window")
        except ConfigError as error:
            raise click.BadParameter(str(error), param_hint="--window") from None
    with _operator_errors():
        upgrader = _cloud_upgrader()
        found, unreachable = _resolve_targets(upgrader, selection, label=rollout_id)
        if max_errors is not None:
            found = _within_budget(upgrader, found, max_errors, exclude_predicted_errors, rollout_id)
        deadline, found, by_tag, plan = _campaign(
            upgrader, found, apply_by, waves_by_tag, exclude_unmatched, rollout_id
        )
        waves = wave_text(plan) if plan else (waves or "1,10%,100%")
        try:
            sizes = by_tag or parse_waves(waves, len(found))
        except InvalidRequest as error:
            raise click.BadParameter(str(error), param_hint="--waves") from None
        spec = RolloutSpec(
            rollout_id,
            tuple(found),
            sizes,
            waves,
            max_in_flight,
            max_errors,
            window,
            max_in_flight_per_location=max_in_flight_per_location,
            max_errors_per_location=max_errors_per_location,
            unreachable=tuple(unreachable),
            apply_by=deadline,
            wave_tags=plan,
        )
        if not yes:
            _confirm_start(upgrader, spec)
        status = Rollouts(upgrader).start(spec, exclude_owned=exclude_owned)
    for instance, owner in status.get("excluded", {}).items():
        click.echo(f"excluded {instance}: rollout {owner} has it", err=True)
    click.echo(rollout_id)
    click.echo(_line(status), err=True)


def _confirm_start(upgrader: Any, spec: Any) -> None:
    """What is about to happen, on stderr, and a yes/no (no by default; no input is a no)."""
    from dbupgrade.cli.safety import confirm, count_prod_like, prod_text, when_text

    regions = sorted({str(t.get("region") or "default region") for t in spec.targets})
    accounts = sorted({str(t["account_id"]) for t in spec.targets if t.get("account_id")})
    total = len(spec.targets)
    confirm(
        f"rollout {spec.rollout_id}: {total} instances in {', '.join(regions)}"
        + (f" of {len(accounts)} account(s)" if accounts else "")
        + (f" ({len(spec.unreachable)} location(s) unreachable)" if spec.unreachable else "")
        + ", "
        f"{prod_text(count_prod_like(upgrader, spec.targets), total)}, "
        f"waves {'by tag ' + spec.wave_text + ' ' if spec.wave_tags else ''}{list(spec.waves)} (cumulative), "
        + (f"apply by {spec.apply_by}, " if spec.apply_by else "")
        + (f"released only inside {spec.window}" if spec.window else "released from now on")
        + (f", halts past {spec.max_errors} errors" if spec.max_errors is not None else ", no error budget")
        + f"; when: {when_text(upgrader, [t.get('effective') for t in spec.targets])}",
        "Start it?",
        "not started: nothing was recorded or released",
    )


def _within_budget(
    upgrader: Any, found: list[dict[str, Any]], max_errors: int, exclude: bool, label: str
) -> list[dict[str, Any]]:
    """The targets to start with: all, unless the plan's predicted errors spend the budget."""
    from dbupgrade.rollouts import plan
    from dbupgrade.rollouts.plan import BUDGET_ACTIONS

    with PlanDisplay() as display:
        result = plan(upgrader, found, label=label, progress=display)
    doomed = [row for row in result["rows"] if row["action"] in BUDGET_ACTIONS]
    if exclude:
        left = {row["instance_id"] for row in doomed}
        kept = [t for t in found if t["instance_id"] not in left]
        if not kept:
            raise click.ClickException("every target is predicted to be rejected, deferred or fail")
        for row in doomed:
            click.echo(f"left out {row['instance_id']}: {row['action']} - {row['message']}", err=True)
        return kept
    if len(doomed) > max_errors:
        named = "; ".join(f"{row['instance_id']}: {row['message'] or row['action']}" for row in doomed[:10])
        raise click.ClickException(
            f"{len(doomed)} targets are already predicted to be rejected, deferred or fail, more than "
            f"--max-errors {max_errors}: the rollout would halt at once ({named}). Fix them, or add "
            "--exclude-predicted-errors"
        )
    return found


@rollout.command("advance")
@click.argument("rollout_id", required=False)
def advance_command(rollout_id: str | None) -> None:
    """One round now (what the tracker does every minute): record finished upgrades, release more."""
    from dbupgrade.rollouts import Rollouts, advance_all

    with _operator_errors():
        upgrader = _cloud_upgrader()
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
@click.option(
    "--watch",
    is_flag=True,
    help="Redraw in place until the rollout completes, halts or is cancelled (Ctrl-C stops watching).",
)
@click.option("--interval", type=click.FloatRange(min=0.5), default=5.0, show_default=True)
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Machine-readable output, with a `rows` list per target (with --watch: one line each).",
)
def status_command(rollout_id: str, watch: bool, interval: float, as_json: bool) -> None:
    """Progress, the headline, wave, ETA and one row per target (state, from -> to, RequestId, when, why).

    `done` counts targets that reached their end (completed, noop, or an error state); halted
    targets were stopped before they ran and are not done. The ETA follows the waves (each starts
    once the one before it ended), --max-in-flight and the release window (a rollout waiting for
    its window says when it resumes).

    \b
    Exit status (the same with and without --watch):
      0  running, or completed with every target upgraded (or already there)
      3  completed with failed / stuck / rejected / deferred targets
      4  halted (error budget or configuration: `rollout resume` after the fix)
      5  cancelled
    """
    from dbupgrade.rollouts import Rollouts

    with _operator_errors():
        rollouts = Rollouts(_upgrader())
        if watch and not as_json:
            status = _watch(lambda: rollouts.status(rollout_id), interval)
        else:
            while True:
                status = rollouts.status(rollout_id)
                if as_json:
                    click.echo(json.dumps(status, indent=None if watch else 2))
                else:
                    click.echo(render_status(status))
                if not watch or status["status"] != "running":
                    break
                time.sleep(interval)
    sys.exit(exit_code(status))


EXIT_COMPLETED_WITH_ERRORS = 3
EXIT_HALTED = 4
EXIT_CANCELLED = 5


def exit_code(status: dict[str, Any]) -> int:
    """What `status` exits with (its --help lists them)."""
    if status["status"] == "halted":
        return EXIT_HALTED
    if status["status"] == "cancelled":
        return EXIT_CANCELLED
    if status["status"] == "completed" and (status["errors"] or status.get("deferred")):
        return EXIT_COMPLETED_WITH_ERRORS
    return 0


def _watch(read: Callable[[], dict[str, Any]], interval: float) -> dict[str, Any]:
    """Redraw the status until the rollout leaves ``running``; its last status.

    In a terminal, rich's Live display rewrites the same lines (the table cut to the screen's
    height); piped, each frame is printed after the last, as without --watch.
    """
    from rich.console import Console
    from rich.live import Live
    from rich.text import Text

    console = Console()
    if not console.is_terminal:
        while True:
            status = read()
            click.echo(render_status(status))
            if status["status"] != "running":
                return status
            time.sleep(interval)
    try:
        with Live(console=console, auto_refresh=False, vertical_overflow="crop") as live:
            while True:
                status = read()
                frame = render_status(status, max_lines=console.size.height - 1)
                live.update(Text(frame, no_wrap=True, overflow="ellipsis"), refresh=True)
                if status["status"] != "running":
                    return status
                time.sleep(interval)
    except KeyboardInterrupt:
        raise click.ClickException("stopped watching; the rollout goes on") from None


@rollout.command("resume")
@click.argument("rollout_id")
def resume_command(rollout_id: str) -> None:
    """Continue a halted rollout: halted targets are released again and the error budget restarts."""
    from dbupgrade.rollouts import Rollouts

    with _operator_errors():
        status = Rollouts(_upgrader()).resume(rollout_id)
    click.echo(_line(status))


# docs/deploy.md section 8, in short: what an operator can and cannot take back.
ROLLBACK = (
    "Rollback: a major-version upgrade cannot be undone in place (neither R-kvstore nor Dds offers a "
    "downgrade). To go back, restore a backup taken before the upgrade into a new instance at the old "
    "version, switch the application to it, then release the upgraded one. An upgrade booked for the "
    "maintenance window may still be cancelled in the console's pending events. See docs/deploy.md "
    "section 8."
)


@rollout.command("cancel")
@click.argument("rollout_id")
def cancel_command(rollout_id: str) -> None:
    """Stop for good: nothing more is released; unreleased targets get a `halted` outcome (cancelled).

    Messages already released but not yet run end `halted` without an upgrade call. Upgrades already
    submitted to the cloud cannot be recalled: the command lists them, and what rollback means.
    """
    from dbupgrade.engines import engine_for_instance
    from dbupgrade.rollouts import Rollouts
    from dbupgrade.runbook import rollback_text

    with _operator_errors():
        status = Rollouts(_upgrader()).cancel(rollout_id)
    click.echo(_line(status))
    rows = status["rows"]
    groups = (
        ("submitted", "already submitted to the cloud, cannot be recalled (upgrading or booked)"),
        ("completed", "already upgraded"),
        ("dispatched", "released, not yet run: each ends halted without an upgrade call"),
    )
    sent = False
    for state, title in groups:
        chosen = [row for row in rows if row["state"] == state]
        if not chosen:
            continue
        sent = sent or state != "dispatched"
        click.echo(f"{title} ({len(chosen)}):")
        for row in chosen:
            click.echo(
                f"  {row['instance_id']} {row['from_version'] or '?'} -> {row['to_version']}"
                + (f" RequestId {row['request_id']}" if row["request_id"] else "")
            )
            if state != "dispatched":  # what rolling this one back means (dbupgrade.runbook)
                engine = engine_for_instance(str(row["instance_id"]))
                text = rollback_text(
                    engine.name if engine else None,
                    row["from_version"],
                    str(row["to_version"]),
                    backup_id=row.get("backup_id"),
                    submitted=True,
                )
                click.echo(f"    rollback: {text}")
    if sent:
        click.echo(ROLLBACK)
    else:
        click.echo("nothing was submitted to the cloud: no instance was upgraded by this rollout")


def _line(status: dict[str, Any]) -> str:
    return (
        f"{status['rollout_id']}: {status['headline']}, wave {status['wave']}/{len(status['waves'])}, "
        f"{status['done']}/{status['targets']} done"
        + (f", {status['halted']} halted" if status["halted"] else "")
        + f", {status['errors']} errors"
    )


def _eta_text(status: dict[str, Any]) -> str:
    if status["status"] != "running":
        return ""
    parts = []
    if status["resumes_at"]:
        parts.append(f"waiting for its window {status['window']}: resumes at {status['resumes_at']}")
    if status["eta_seconds"] is not None:
        parts.append(f"ETA {_duration(status['eta_seconds'])}")
    elif status["done"] < status["targets"]:
        parts.append("ETA once the first upgrade finishes")
    return "  " + "; ".join(parts) if parts else ""


# Watching, the rows that need an eye come first when the screen cannot hold them all.
ROW_ORDER = {"dispatched": 0, "submitted": 0, "failed": 1, "stuck": 1, "rejected": 1, "deferred": 1}
ROW_HEADER = (
    f"{'INSTANCE':<24} {'WAVE':>4} {'STATE':<10} {'FROM -> TO':<14} {'REQUEST ID':<36} {'WHEN':<20} WHY"
)


def _row_line(row: dict[str, Any], resumes_at: str | None) -> str:
    when = row["finished_at"] or row["released_at"] or (resumes_at if row["state"] == "pending" else None)
    versions = f"{row['from_version'] or '?'} -> {row['to_version']}"
    why = progress_text(row) or " - ".join(
        str(part) for part in (row["code"] or row["reason"], row["message"]) if part
    )
    return (
        f"{row['instance_id']:<24} {row['wave']:>4} {row['state']:<10} {versions:<14} "
        f"{row['request_id'] or '-':<36} {when or '-':<20} {why}"
    ).rstrip()


def progress_text(fields: dict[str, Any]) -> str:
    """An in-flight upgrade's task as the tracker last read it: ``hop 2/3, 42% (5m00s left, exec_task)``."""
    parts = []
    if fields.get("hops"):
        parts.append(f"hop {fields.get('hop')}/{fields['hops']}")
    if fields.get("progress") is not None:
        detail = [f"{_duration(fields['remaining_seconds'])} left"] if fields.get("remaining_seconds") else []
        detail += [str(fields["current_step"])] if fields.get("current_step") else []
        parts.append(f"{fields['progress']:g}%" + (f" ({', '.join(detail)})" if detail else ""))
    return ", ".join(parts)


def render_status(status: dict[str, Any], max_lines: int | None = None) -> str:
    """The human view: headline, progress bar and ETA, wave, counts, then one row per target.

    ``max_lines`` (a terminal's height, watching) cuts the table, in-flight and failed rows first.
    """
    total, done = status["targets"], status["done"]
    filled = round(BAR_WIDTH * done / total) if total else BAR_WIDTH
    lines = [
        f"rollout {status['rollout_id']}: {_loud(status['headline'])}",
        f"[{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {done}/{total} done"
        + (f", {status['halted']} halted" if status["halted"] else "")
        + _eta_text(status),
        f"wave {status['wave']} of {len(status['waves'])} (cumulative sizes {status['waves']}), "
        f"in flight {status['in_flight']}"
        + (f" (max {status['max_in_flight']})" if status["max_in_flight"] else "")
        + (f"; released only inside {status['window']}" if status["window"] else ""),
        "states: " + ", ".join(f"{state} {count}" for state, count in status["counts"].items()),
        f"errors: {status['errors']}"
        + (f" (budget {status['max_errors']})" if status["max_errors"] is not None else "")
        + f"; elapsed {_duration(status['duration_seconds'])}",
        *_location_lines(status),
        *burndown_lines(status),
        ROW_HEADER,
    ]
    rows = status["rows"]
    if max_lines is not None and len(lines) + len(rows) > max_lines:
        room = max(0, max_lines - len(lines) - 1)
        rows = sorted(rows, key=lambda row: ROW_ORDER.get(row["state"], 2))
        shown = rows[:room]
        lines += [_row_line(row, status["resumes_at"]) for row in shown]
        lines.append(f"... {len(rows) - len(shown)} more (`rollout status {status['rollout_id']}` lists all)")
        return "\n".join(lines)
    lines += [_row_line(row, status["resumes_at"]) for row in rows]
    return "\n".join(lines)


def _location_lines(status: dict[str, Any]) -> list[str]:
    """Per location (account x region), when the rollout spans more than one or names accounts."""
    locations = status.get("locations") or []
    if len(locations) < 2 and not any(g["account_id"] for g in locations):
        return []
    limits = [
        f"max {value} {name} per location"
        for name, value in (
            ("in flight", status.get("max_in_flight_per_location")),
            ("errors", status.get("max_errors_per_location")),
        )
        if value is not None
    ]
    lines = ["locations" + (f" ({', '.join(limits)})" if limits else "") + ":"]
    for g in locations:
        counts = f"{g['done']}/{g['targets']} done, {g['in_flight']} in flight, {g['errors']} errors"
        counts += f", {g['halted']} halted" if g["halted"] else ""
        why = f" - {g['reason']}" if g["reason"] else ""
        lines.append(f"  {g['location']:<34} {g['status'].upper():<11} {counts}{why}")
    return lines


def burndown_lines(status: dict[str, Any]) -> list[str]:
    """A campaign's burn-down: per location and in total, done / remaining / failed or halted, the
    pace the date needs against the pace so far (upgrades a day), and days left."""
    burn = status.get("burndown")
    if not burn:
        return []
    lines = _wave_tag_lines(burn["waves_by_tag"])
    if burn["apply_by"]:
        lines.append(f"apply by {burn['apply_by']}: {_days(burn['days_left'])}")
    lines.append(
        f"  {'BURN-DOWN':<34} {'TARGETS':>7} {'DONE':>6} {'REMAINING':>9} {'FAILED/HALTED':>13} "
        f"{'NEEDED/DAY':>10} {'SO FAR/DAY':>10}"
    )
    for group in [*burn["locations"], {**burn["total"], "location": "total"}]:
        track = {True: "", False: "  BEHIND", None: ""}[group["on_track"]]
        lines.append(
            f"  {group['location']:<34} {group['targets']:>7} {group['done']:>6} {group['remaining']:>9} "
            f"{group['failed_or_halted']:>13} {_rate(group['pace_needed_per_day']):>10} "
            f"{_rate(group['pace_so_far_per_day']):>10}{track}"
        )
    return lines


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{value:g}"


def _days(days_left: float | None) -> str:
    if days_left is None:
        return "-"
    return f"{days_left:g} days left" if days_left > 0 else f"PAST the date by {-days_left:g} days"


def _loud(headline: str) -> str:
    """The state word in capitals, the rest as written: ``COMPLETED with 1 failed``."""
    word, _, rest = headline.partition(" ")
    return word.upper() + (" " + rest if rest else "")


def _duration(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"
