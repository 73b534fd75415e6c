"""Running a function locally the way FC runs it: the real handler, an FC-like context, FC's env.

``dbupgrade local invoke`` runs the handler in this process rather than in a localcloud FC worker:
a debugger and breakpoints work, nothing has to be started first, and the handler still sees exactly
what FC gives it (event bytes, a context object of FC's shape, configuration only from the
environment). localcloud's workers are for the end-to-end paths (tests, ``dbupgrade demo``).
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import sys
import uuid
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import click

FUNCTION_TIMEOUT_SECONDS = 600
FC_SERVICE = "dbupgrade"


def project_root() -> Path:
    """The checkout holding functions/ and template.yml (the layer lives in layers/dbupgrade/python)."""
    root = Path(__file__).resolve().parents[5]
    if not (root / "functions").is_dir():
        raise click.ClickException(
            f"functions/ not found next to the package ({root}); run from a checkout (pip install -e .)"
        )
    return root


def load_function(name: str) -> ModuleType:
    """Import ``functions/<name>/index.py`` as FC does: the code directory is the module's home."""
    source = project_root() / "functions" / name / "index.py"
    if not source.is_file():
        known = sorted(p.parent.name for p in (project_root() / "functions").glob("*/index.py"))
        raise click.BadParameter(f"no function {name!r}; known: {', '.join(known)}", param_hint="FUNCTION")
    spec = importlib.util.spec_from_file_location(f"fc_function_{name}", source)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def fc_context(function: str, *, fc3: bool, env: dict[str, str] | None = None) -> SimpleNamespace:
    """A context of FC's shape: FC 2.0 carries ``service`` and STS ``credentials``; FC 3.0 has
    neither (credentials are in ALIBABA_CLOUD_* then, as here)."""
    env = dict(os.environ) if env is None else env
    context = SimpleNamespace(
        request_id=str(uuid.uuid4()),
        region=env.get("DBUPGRADE_REGION") or env.get("FC_REGION") or "cn-hangzhou",
        account_id=env.get("FC_ACCOUNT_ID"),
        function=SimpleNamespace(
            name=function, handler="index.handler", memory=256, timeout=FUNCTION_TIMEOUT_SECONDS
        ),
    )
    if not fc3:
        context.service = SimpleNamespace(
            name=FC_SERVICE, log_project="", log_store="", qualifier="LATEST", version_id=""
        )
        key_id = env.get("ALIBABA_CLOUD_ACCESS_KEY_ID")
        secret = env.get("ALIBABA_CLOUD_ACCESS_KEY_SECRET")
        context.credentials = (
            SimpleNamespace(
                access_key_id=key_id,
                access_key_secret=secret,
                security_token=env.get("ALIBABA_CLOUD_SECURITY_TOKEN") or "",
            )
            if key_id and secret
            else None
        )
    return context


def point_at_localcloud(url: str) -> None:
    """``DBUPGRADE_LOCAL=http://127.0.0.1:P``: default every endpoint (and the demo account's keys)
    to that localcloud, leaving whatever the operator set explicitly."""
    from localcloud.cloud import DEFAULT_SEED  # the CLI's local commands may know localcloud

    seed = json.loads(DEFAULT_SEED.read_text())
    defaults = {**seed.get("function_env", {})}
    defaults = {k: v.replace("${LOCALCLOUD_URL}", url) for k, v in defaults.items()}
    account = seed["accounts"][0]
    defaults["ALIBABA_CLOUD_ACCESS_KEY_ID"] = account["access_key_id"]
    defaults["ALIBABA_CLOUD_ACCESS_KEY_SECRET"] = account["access_key_secret"]
    defaults["FC_ACCOUNT_ID"] = str(account["account_id"])
    for key, value in defaults.items():
        os.environ.setdefault(key, value)


def invoke(function: str, event: bytes, *, fc3: bool) -> Any:
    """Run ``functions/<function>/index.py``'s handler on ``event``; returns what it returns."""
    if function == "webhook" and not fc3:
        raise click.UsageError(
            "webhook is an HTTP (WSGI) function on FC 2.0: use --fc3 with an FC 3.0 HTTP event, "
            "or `dbupgrade local serve webhook`"
        )
    # The functions log JSON lines to stdout (FC collects them); here stdout is for the reply alone.
    with contextlib.redirect_stdout(sys.stderr):
        module = load_function(function)
        return module.handler(event, fc_context(function, fc3=fc3))
