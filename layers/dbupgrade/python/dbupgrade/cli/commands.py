"""The ``dbupgrade`` command tree (click)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from dbupgrade.cli.booked import booked, status_command
from dbupgrade.cli.invoke import invoke_command
from dbupgrade.cli.rollout import MANIFEST_HELP, check_command, rollout, target_options
from dbupgrade.cli.up import local_up


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="dbupgrade")
@click.option("--verbose", "-v", is_flag=True, help="The JSON log lines on stderr (never on stdout).")
@click.option(
    "--log-file",
    type=click.Path(dir_okay=False, writable=True),
    help="Append the JSON log lines to this file instead.",
)
def cli(verbose: bool, log_file: str | None) -> None:
    """Major-version upgrades of ApsaraDB for Redis and MongoDB (Function Compute package + tools).

    Set DBUPGRADE_LOCAL=http://127.0.0.1:PORT to point every command at a running `local cloud`.
    stdout carries each command's output alone; the JSON logs appear only with --verbose (stderr)
    or --log-file.
    """
    import os

    from dbupgrade.cli.safety import configure_logs

    configure_logs(verbose, log_file)
    if os.environ.get("DBUPGRADE_LOCAL"):
        from dbupgrade.cli.local import point_at_localcloud

        point_at_localcloud(os.environ["DBUPGRADE_LOCAL"].rstrip("/"))


@cli.command()
@click.argument("instance_id")
@click.argument("target_version")
@click.option(
    "--effective", type=click.Choice(["immediate", "maintenance_window"]), help="When the switchover happens."
)
@click.option("--region", help="Region of the instance (default: DBUPGRADE_REGION).")
@click.option("--ticket", "ticket_id", help="Change ticket this upgrade belongs to.")
@click.option("--dry-run", is_flag=True, help="Pre-check only: nothing is submitted, recorded or notified.")
@click.option("--yes", "-y", is_flag=True, help="Submit without the confirmation prompt (scripts, CI).")
def upgrade(
    instance_id: str,
    target_version: str,
    effective: str | None,
    region: str | None,
    ticket_id: str | None,
    dry_run: bool,
    yes: bool,
) -> None:
    """Upgrade INSTANCE_ID to TARGET_VERSION, with the same checks as the functions.

    Configuration comes from the same DBUPGRADE_* / ALIBABA_CLOUD_* variables the functions read.
    Unless --yes (or --dry-run), it first shows what is about to happen - the instance, whether it
    is tagged prod-like (env/environment/stage = prod/production/prd), when the switchover happens -
    and asks; no answer is a no.
    Exit status 0 when the instance is, or will be, at the target; 1 otherwise.
    """
    from dbupgrade.cli.safety import (
        confirm,
        count_prod_like,
        prod_text,
        require_credentials,
        require_shared_store,
        when_text,
    )
    from dbupgrade.errors import ConfigError, StoreUnavailable
    from dbupgrade.model import InvalidRequest
    from dbupgrade.request import parse_request
    from dbupgrade.usecase import Upgrader

    data: dict[str, Any] = {"instance_id": instance_id, "target_version": target_version, "dry_run": dry_run}
    data.update(
        {k: v for k, v in (("effective", effective), ("region", region), ("ticket_id", ticket_id)) if v}
    )
    try:
        request = parse_request(data, source="cli")
        if not dry_run:
            require_shared_store()
        upgrader = Upgrader.from_env()
        require_credentials(upgrader)
        if not (yes or dry_run):
            target = {"instance_id": request.instance_id, "engine": request.engine, "region": request.region}
            confirm(
                f"upgrade {request.instance_id} ({request.engine or 'engine from its id'}, "
                f"{request.region or upgrader.config.region or 'default region'}) to {target_version}: "
                f"1 instance, {prod_text(count_prod_like(upgrader, [target]), 1)}; "
                f"when: {when_text(upgrader, [request.effective])}",
                "Submit it?",
                "not submitted: nothing was sent, recorded or notified",
            )
        outcome = upgrader.run(request)
    except InvalidRequest as error:
        raise click.BadParameter(str(error), param_hint=error.field) from None
    except ConfigError as error:
        raise click.ClickException(str(error)) from None
    except StoreUnavailable:
        raise click.ClickException("the state store is unreachable; nothing was submitted") from None
    click.echo(json.dumps(outcome.to_dict(), indent=2))
    if outcome.reason == "configuration":
        # The key, role or endpoint is wrong: say what to fix on one line (stderr), exit 1.
        raise click.ClickException(str(outcome.message))
    sys.exit(0 if outcome.ok else 1)


@cli.command()
@click.option("--verbose", is_flag=True, help="Show the functions' own logs.")
def demo(verbose: bool) -> None:
    """Run all three triggers end to end on an embedded localcloud and Redis, then print the results."""
    from dbupgrade.cli.demo import DemoFailed, run

    try:
        code = run(click.echo, verbose=verbose)
    except DemoFailed as error:
        raise click.ClickException(str(error)) from None
    sys.exit(code)


@cli.group()
def local() -> None:
    """Local stand-ins for the cloud: localcloud, function invocations, the webhook server."""


local.add_command(local_up)


@local.command("env")
@click.option("--port", type=int, help="The port of the `local up` to point at (when several run).")
def local_env(port: int | None) -> None:
    """Print the exports that point the CLI at a running `dbupgrade local up`:

    eval "$(dbupgrade local env)"

    Endpoints, the seed account's keys, the store, the functions' window and policy, WEBHOOK_URL and
    the webhook's secret and status token (the same lines `local up` prints).
    """
    from dbupgrade.cli.up import env_file, running_env_files

    files = [env_file(port)] if port is not None else running_env_files()
    files = [f for f in files if f.is_file()]
    if not files:
        where = f" on port {port}" if port is not None else ""
        raise click.ClickException(f"no `dbupgrade local up` is running{where}; start one first")
    if len(files) > 1:
        ports = ", ".join(f.stem.rsplit("-", 1)[1] for f in files)
        raise click.ClickException(f"several `local up` stacks run (ports {ports}): pick one with --port")
    click.echo(files[0].read_text(), nl=False)


@local.command("cloud")
@click.option("--port", type=int, default=9000, show_default=True, help="TCP port (0: any free port).")
@click.option("--seed", type=click.Path(exists=True, dir_okay=False, path_type=Path), help="Seed JSON.")
@click.option(
    "--state", type=click.Path(dir_okay=False, path_type=Path), help="Persist state across restarts."
)
def local_cloud(port: int, seed: Path | None, state: Path | None) -> None:
    """Serve localcloud (R-kvstore, Dds, MNS, FC) on 127.0.0.1; the same as `python -m localcloud`."""
    from dbupgrade.cli.local import project_root
    from localcloud.__main__ import main as localcloud_main

    argv = ["--port", str(port), "--root", str(project_root())]
    if seed is not None:
        argv += ["--seed", str(seed)]
    if state is not None:
        argv += ["--state", str(state)]
    sys.exit(localcloud_main(argv))


@local.command("invoke")
@click.argument("function")
@click.option(
    "--event",
    "event_file",
    type=click.Path(exists=True, dir_okay=False, allow_dash=True, path_type=Path),
    required=True,
    help="Event file (see events/), or - for stdin.",
)
@click.option("--fc3", is_flag=True, help="FC 3.0 context: no service, credentials only in the environment.")
def local_invoke(function: str, event_file: Path, fc3: bool) -> None:
    """Run FUNCTION's real handler (functions/FUNCTION/index.py) on an event, in this process.

    The handler reads its configuration from the environment exactly as in FC; set
    DBUPGRADE_LOCAL=http://127.0.0.1:PORT to point every endpoint at a running `local cloud`.
    """
    from dbupgrade.cli.local import invoke

    event = sys.stdin.buffer.read() if str(event_file) == "-" else event_file.read_bytes()
    reply = invoke(function, event, fc3=fc3)
    if isinstance(reply, bytes):
        reply = reply.decode()
    if isinstance(reply, str):
        try:
            reply = json.loads(reply)
        except ValueError:
            click.echo(reply)
            return
    click.echo(json.dumps(reply, indent=2))


@local.group("serve")
def local_serve() -> None:
    """Serve an HTTP function locally."""


@local_serve.command("webhook")
@click.option("--port", type=int, default=9000, show_default=True)
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--fc3", is_flag=True, help="Call the handler with FC 3.0 HTTP events instead of WSGI.")
def serve_webhook(port: int, host: str, fc3: bool) -> None:
    """Serve the webhook function's real handler, called as FC would call it."""
    from dbupgrade.webhook.serve import serve

    click.echo(f"webhook on http://{host}:{port} ({'FC 3.0 event' if fc3 else 'FC 2.0 WSGI'}); Ctrl-C stops")
    serve(host, port, fc3=fc3)


cli.add_command(rollout)
cli.add_command(invoke_command)
cli.add_command(booked)
cli.add_command(status_command)


def main(argv: list[str] | None = None) -> int:
    """Console-script entry point (``dbupgrade``)."""
    try:
        cli.main(args=argv, prog_name="dbupgrade", standalone_mode=True)
    except SystemExit as exit_:
        return int(exit_.code or 0) if not isinstance(exit_.code, str) else 1
    return 0


@cli.command("check", epilog=MANIFEST_HELP)
@target_options
@click.option(
    "--concurrency", type=click.IntRange(1, 32), default=8, show_default=True, help="Instances read at once."
)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def check(**options: Any) -> None:
    """Read-only readiness report: per instance go / warn / blocked, with graded findings.

    Each finding names the API (or document) it comes from: state, deployment mode, the offered
    versions, booked O&M events, running tasks, backup freshness (DBUPGRADE_BACKUP), the window,
    end of service and the documented caveats of the path. A check that cannot be read blocks.
    Exit status 1 when any instance is not ready (blocked, or refused before any check).
    """
    check_command(**options)
