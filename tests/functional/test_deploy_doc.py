"""docs/deploy.md as a newcomer follows it: every command complete (a placeholder is a named
``<...>``, never a bare ``...``), and the "first dry run" event really dry on localcloud."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import requests

from localcloud.server import RunningServer

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "docs" / "deploy.md"


def code_blocks(text: str) -> list[str]:
    return re.findall(r"```sh\n(.*?)```", text, flags=re.S)


def test_every_command_in_the_deploy_guide_is_complete() -> None:
    blocks = code_blocks(DEPLOY.read_text())
    assert len(blocks) >= 4
    for block in blocks:
        unnamed = re.sub(
            r"<[^<>]*(<[^<>]*>[^<>]*)*>", "<named>", block
        )  # <...> placeholders say what goes there
        assert "..." not in unnamed, block


def test_the_first_dry_run_submits_nothing(
    make_localcloud: Callable[..., RunningServer], tmp_path: Path
) -> None:
    assert "events/rollout-dry-run.json" in DEPLOY.read_text()
    event = ROOT / "events" / "rollout-dry-run.json"
    assert json.loads(event.read_text())["upgrade"]["dry_run"] is True
    lc = make_localcloud()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DBUPGRADE_", "ALIBABA_CLOUD_"))}
    result = subprocess.run(
        [sys.executable, "-m", "dbupgrade.cli", "local", "invoke", "rollout", "--event", str(event)],
        env={**env, "DBUPGRADE_LOCAL": lc.url, "DBUPGRADE_STATE_DIR": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    calls = requests.get(f"{lc.url}/_localcloud/calls", timeout=10).json()["calls"]
    actions = {call["action"] for call in calls}
    assert "DescribeInstanceAttribute" in actions  # the pre-check ran...
    assert "ModifyInstanceMajorVersion" not in actions  # ...and nothing was submitted
