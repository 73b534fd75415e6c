"""`dbupgrade upgrade` as an operator runs it: a subprocess pointed at localcloud by DBUPGRADE_LOCAL."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests

from localcloud.server import RunningServer


def run_cli(lc: RunningServer, state_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DBUPGRADE_", "ALIBABA_CLOUD_"))}
    env |= {"DBUPGRADE_LOCAL": lc.url, "DBUPGRADE_STATE_DIR": str(state_dir)}
    return subprocess.run(
        [sys.executable, "-m", "dbupgrade.cli", "upgrade", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def upgrade_calls(lc: RunningServer) -> list[dict[str, Any]]:
    reply = requests.get(
        f"{lc.url}/_localcloud/calls", params={"action": "UpgradeDBInstanceEngineVersion"}, timeout=10
    )
    return reply.json()["calls"]


def test_upgrade_submits_once_and_prints_the_outcome_json(
    make_localcloud: Callable[..., RunningServer], tmp_path: Path
) -> None:
    lc = make_localcloud()
    first = run_cli(lc, tmp_path, "dds-bp1demo000000001", "5.0", "--ticket", "CHG-7")
    assert first.returncode == 0, first.stderr
    outcome = json.loads(first.stdout)  # stdout is the outcome alone; logs are on stderr
    assert (outcome["status"], outcome["from_version"], outcome["to_version"]) == ("submitted", "4.4", "5.0")
    assert outcome["request_id"]
    again = run_cli(lc, tmp_path, "dds-bp1demo000000001", "5.0", "--ticket", "CHG-7")
    assert json.loads(again.stdout)["request_id"] == outcome["request_id"]
    assert len(upgrade_calls(lc)) == 1


def test_dry_run_calls_no_upgrade_api(make_localcloud: Callable[..., RunningServer], tmp_path: Path) -> None:
    lc = make_localcloud()
    result = run_cli(lc, tmp_path, "dds-bp1demo000000001", "5.0", "--dry-run")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["dry_run"] is True
    assert upgrade_calls(lc) == []


def test_a_bad_target_names_the_field_and_exits_non_zero(
    make_localcloud: Callable[..., RunningServer], tmp_path: Path
) -> None:
    lc = make_localcloud()
    result = run_cli(lc, tmp_path, "dds-bp1demo000000001", "9.9")
    assert result.returncode != 0
    assert "target_version" in result.stderr
    assert "Traceback" not in result.stderr
