"""What the CLI does before it changes anything: where its logs go, whether it reads the stack's
store, and the summary (how many instances, how many tagged prod-like, when) an operator confirms.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterable, Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

import click

# Tags that mark an instance as production: the key (any of these) and the value (any of these),
# case-insensitive. `upgrade` and `rollout start` count them in the summary they ask about.
PROD_TAG_KEYS = frozenset({"env", "environment", "stage"})
PROD_TAG_VALUES = frozenset({"prod", "production", "prd"})

# Set only when the CLI speaks to a deployed stack: its topics, queue and endpoints. Without
# DBUPGRADE_REDIS_URL the CLI would fall back to a fresh embedded store and report an empty world.
STACK_VARIABLES = ("DBUPGRADE_TOPIC", "DBUPGRADE_ROLLOUT_QUEUE")
ENDPOINT_VARIABLES = (
    "DBUPGRADE_KVSTORE_ENDPOINT",
    "DBUPGRADE_DDS_ENDPOINT",
    "DBUPGRADE_MNS_ENDPOINT",
    "DBUPGRADE_FC_ENDPOINT",
)
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


def configure_logs(verbose: bool, log_file: str | None) -> None:
    """The Powertools JSON lines: to stderr with --verbose, to a file with --log-file, else nowhere.

    stdout carries each command's own output alone, whatever is chosen. Restored when the command
    ends (tests run many commands in one process).
    """
    from dbupgrade.logging import logger

    handler = logger.registered_handler
    stream, level = handler.stream, handler.level
    opened = open(log_file, "a", encoding="utf-8") if log_file else None  # noqa: SIM115 -- closed below
    if opened is not None:
        handler.setStream(opened)
        handler.setLevel(logging.NOTSET)
    elif verbose:
        handler.setStream(sys.stderr)
        handler.setLevel(logging.NOTSET)
    else:
        handler.setLevel(logging.CRITICAL + 1)

    def restore() -> None:
        handler.setStream(stream)
        handler.setLevel(level)
        if opened is not None:
            opened.close()

    click.get_current_context().call_on_close(restore)


def _deployed_endpoint(value: str) -> bool:
    host = urlsplit(value if "://" in value else "https://" + value).hostname or ""
    return host not in LOOPBACK_HOSTS


def require_shared_store(env: Mapping[str, str] | None = None) -> None:
    """Refuse to read an empty embedded store while pointed at a deployed stack.

    A local stack (DBUPGRADE_LOCAL, or every endpoint on this machine) and an explicit
    DBUPGRADE_STATE_DIR (the operator chose the embedded store) are fine.
    """
    env = os.environ if env is None else env
    if env.get("DBUPGRADE_REDIS_URL") or env.get("DBUPGRADE_LOCAL") or env.get("DBUPGRADE_STATE_DIR"):
        return
    stack = [v for v in STACK_VARIABLES if env.get(v)]
    stack += [v for v in ENDPOINT_VARIABLES if env.get(v) and _deployed_endpoint(env[v])]
    if stack:
        raise click.ClickException(
            f"pointed at a deployed stack ({stack[0]} is set) but DBUPGRADE_REDIS_URL is not: set it to "
            "the stack's state store (docs/deploy.md, 'Running the CLI against production')"
        )


def require_credentials(upgrader: Any) -> None:
    """One line when no credentials can be found, before any cloud call.

    The ALIBABA_CLOUD_* keys are used as they are; without them the SDK's default chain (a profile in
    ~/.aliyun/config.json, an ECS RAM role, ...) is resolved once here, its own tracebacks silenced,
    rather than failing - and logging a traceback - once per target.
    """
    if upgrader.cloud.credentials(None) is not None:
        return
    from alibabacloud_credentials.client import Client as CredentialsClient

    from dbupgrade.cli.invoke import sdk_logging_silenced

    try:
        with sdk_logging_silenced():
            CredentialsClient().get_credential()
    except Exception:  # the chain raises CredentialException, or whatever a provider hit
        raise click.ClickException(
            "no credentials: set ALIBABA_CLOUD_ACCESS_KEY_ID and ALIBABA_CLOUD_ACCESS_KEY_SECRET "
            "(or a profile in ~/.aliyun/config.json, or run where a RAM role is attached)"
        ) from None


def prod_like(tags: Mapping[str, str]) -> bool:
    """Whether the tags mark a production instance (PROD_TAG_KEYS = one of PROD_TAG_VALUES)."""
    return any(
        key.strip().lower() in PROD_TAG_KEYS and str(value).strip().lower() in PROD_TAG_VALUES
        for key, value in tags.items()
    )


def count_prod_like(upgrader: Any, targets: Sequence[Mapping[str, Any]]) -> int | None:
    """How many targets carry a prod-like tag (one list call per engine and region), or None when
    the tags could not be read (the summary then says so)."""
    from dbupgrade.cloudapi import CloudError
    from dbupgrade.engines import engine_for_instance

    wanted: dict[tuple[str, str], set[str]] = {}
    for target in targets:
        engine = target.get("engine") or getattr(engine_for_instance(target["instance_id"]), "name", None)
        region = target.get("region") or upgrader.config.region
        if engine is None or region is None:
            return None
        wanted.setdefault((str(engine), str(region)), set()).add(str(target["instance_id"]))
    count = 0
    try:
        for (engine, region), ids in wanted.items():
            found = upgrader.select({"engine": engine, "regions": [region]})
            count += sum(1 for item in found if item["instance_id"] in ids and prod_like(item["tags"]))
    except CloudError:
        return None
    return count


def when_text(upgrader: Any, effective: Iterable[str | None]) -> str:
    """When the switchovers would happen: immediate, the maintenance window, and the functions'
    window (DBUPGRADE_WINDOW) when one is set and closed now."""
    from dbupgrade import clock
    from dbupgrade.rollouts.summary import next_opening

    kinds = sorted({e or "immediate" for e in effective})
    text = " and ".join(
        "in each instance's maintenance window" if kind == "maintenance_window" else "immediate"
        for kind in kinds
    )
    window = upgrader.config.window
    if window is not None and not window.contains(clock.utcnow()):
        opening = next_opening(window, clock.utcnow()).strftime("%Y-%m-%d %H:%M %Z")
        text += (
            f" (outside DBUPGRADE_WINDOW {window.text} now: {upgrader.config.window_policy}; "
            f"it opens {opening})"
        )
    return text


def prod_text(count: int | None, total: int) -> str:
    if count is None:
        return "tags unread (the list call failed): treat them as production"
    return f"{count} of {total} tagged prod-like ({'/'.join(sorted(PROD_TAG_KEYS))}=prod...)"


def confirm(summary: str, question: str, refusal: str) -> None:
    """The summary on stderr and a yes/no (no by default; no input is a no)."""
    click.echo(summary, err=True)
    try:
        agreed = click.confirm(question, default=False, err=True)
    except click.Abort:  # stdin closed (a script without --yes) or Ctrl-C
        agreed = False
        click.echo("", err=True)
    if not agreed:
        raise click.ClickException(refusal)
