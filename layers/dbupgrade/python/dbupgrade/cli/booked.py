"""``dbupgrade booked ...`` (upgrades booked for the maintenance window) and ``dbupgrade status``.

Same configuration as the functions (DBUPGRADE_* / ALIBABA_CLOUD_*, or DBUPGRADE_LOCAL)::

    dbupgrade booked list
    dbupgrade booked reschedule r-bp1abc 2026-12-01T18:00:00Z
    dbupgrade booked cancel r-bp1abc
    dbupgrade status dds-bp1abc            # the followed upgrade: hop, progress, remaining time
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import click

from dbupgrade.engines import ENGINES


@contextmanager
def _errors() -> Iterator[None]:
    """The library's refusals as one line each (exit status 1 or 2); a service refusal names its code."""
    from dbupgrade.booked import BookingNotFound, BookingRefused
    from dbupgrade.cloudapi import CloudError
    from dbupgrade.errors import ConfigError, StoreUnavailable
    from dbupgrade.model import InvalidRequest
    from dbupgrade.store import Locked

    try:
        yield
    except InvalidRequest as error:
        raise click.BadParameter(str(error), param_hint=error.field) from None
    except (ConfigError, BookingNotFound) as error:
        raise click.ClickException(str(error)) from None
    except BookingRefused as error:
        raise click.ClickException(
            f"refused by the service, nothing changed: {error.code}: {error.message}"
        ) from None
    except Locked:
        raise click.ClickException("the tracker is checking this instance right now; try again") from None
    except StoreUnavailable:
        raise click.ClickException("the state store is unreachable; nothing was changed") from None
    except CloudError as error:
        raise click.ClickException(f"cloud API call failed: {error.explain()}") from None


def _booked() -> Any:
    from dbupgrade.booked import Booked
    from dbupgrade.cli.safety import require_credentials, require_shared_store
    from dbupgrade.usecase import Upgrader

    require_shared_store()
    upgrader = Upgrader.from_env()
    require_credentials(upgrader)
    return Booked(upgrader)


@click.group()
def booked() -> None:
    """Upgrades booked for the maintenance window: list, reschedule (not past the deadline), cancel."""


@booked.command("list")
@click.option("--engine", type=click.Choice(sorted(ENGINES)), help="One engine (default: both).")
@click.option("--region", help="Region (default: DBUPGRADE_REGION).")
@click.option("--instance", "instance_id", help="One instance.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def list_command(engine: str | None, region: str | None, instance_id: str | None, as_json: bool) -> None:
    """The O&M events (DescribeActiveOperationTasks): when each switches, until when it can move, and
    whether dbupgrade booked it (OURS: only those can be changed here)."""
    with _errors():
        rows = _booked().bookings(engine=engine, region=region, instance_id=instance_id)
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    click.echo(
        f"{'INSTANCE':<24} {'STATE':<10} {'SWITCH TIME':<21} {'DEADLINE':<21} {'FROM -> TO':<14} {'OURS':<5} TICKET"
    )
    for row in rows:
        versions = f"{row['from_version'] or '?'} -> {row['to_version'] or '?'}"
        click.echo(
            f"{row['instance_id']:<24} {row['state']:<10} {row['switch_time'] or '-':<21} "
            f"{row['deadline'] or '-':<21} {versions:<14} {'yes' if row['ours'] else 'no':<5} "
            f"{row['ticket_id'] or '-'}"
        )
    if not rows:
        click.echo("no booked upgrades")


@booked.command("reschedule")
@click.argument("instance_id")
@click.argument("switch_time")
@click.option("--region", help="Region (default: the upgrade's, else DBUPGRADE_REGION).")
def reschedule_command(instance_id: str, switch_time: str, region: str | None) -> None:
    """Move INSTANCE_ID's booked upgrade to SWITCH_TIME (UTC, 2026-12-01T18:00:00Z), not past its
    deadline: the service's refusal is shown and nothing changes. Recorded and notified
    (upgrade.rescheduled)."""
    with _errors():
        outcome = _booked().reschedule(instance_id, switch_time, region=region)
    click.echo(json.dumps(outcome.to_dict(), indent=2))


@booked.command("cancel")
@click.argument("instance_id")
@click.option("--region", help="Region (default: the upgrade's, else DBUPGRADE_REGION).")
def cancel_command(instance_id: str, region: str | None) -> None:
    """Cancel INSTANCE_ID's booked upgrade before it starts: no switchover happens. Recorded and
    notified (upgrade.cancelled); the instance is free for another request."""
    with _errors():
        outcome = _booked().cancel(instance_id, region=region)
    click.echo(json.dumps(outcome.to_dict(), indent=2))


@click.command("status")
@click.argument("instance_id")
@click.option("--json", "as_json", is_flag=True, help="The whole outcome.")
def status_command(instance_id: str, as_json: bool) -> None:
    """INSTANCE_ID's upgrade: the one the tracker follows (hop, progress, remaining time, step), else
    the latest recorded outcome. Exit status 1 when nothing is recorded."""
    from dbupgrade.cli.rollout import progress_text
    from dbupgrade.cli.safety import require_shared_store
    from dbupgrade.usecase import Upgrader

    with _errors():
        require_shared_store()
        store = Upgrader.from_env().store
        outcome = store.following(instance_id) or store.latest(instance_id)
    if outcome is None:
        click.echo(f"no upgrade recorded for {instance_id}", err=True)
        sys.exit(1)
    if as_json:
        click.echo(json.dumps(outcome.to_dict(), indent=2))
        return
    line = f"{instance_id}: {outcome.status} {outcome.from_version or '?'} -> {outcome.to_version}"
    progress = progress_text(outcome.to_dict())
    click.echo(
        line + (f", {progress}" if progress else "") + (f" - {outcome.message}" if outcome.message else "")
    )
    if outcome.progress_at:
        click.echo(f"task read at {outcome.progress_at} ({outcome.task_status})")
