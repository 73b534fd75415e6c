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

UNKNOWN_KEY = {"ALIBABA_CLOUD_ACCESS_KEY_ID": "LTAI5tNobodyKnowsThisKey"}
UNKNOWN_KEY_LINE = (
    "Error: the AccessKey ID is not known to Alibaba Cloud: check ALIBABA_CLOUD_ACCESS_KEY_ID or the "
    "function's role (InvalidAccessKeyId.NotFound)"
)


def run_cli(
    lc: RunningServer, state_dir: Path, *args: str, command: str = "upgrade", **env_vars: str
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DBUPGRADE_", "ALIBABA_CLOUD_"))}
    env |= {"DBUPGRADE_LOCAL": lc.url, "DBUPGRADE_STATE_DIR": str(state_dir), **env_vars}
    return subprocess.run(
        [sys.executable, "-m", "dbupgrade.cli", *command.split(), *args],
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
    first = run_cli(lc, tmp_path, "dds-bp1demo000000001", "5.0", "--ticket", "CHG-7", "--yes")
    assert first.returncode == 0, first.stderr
    outcome = json.loads(first.stdout)  # stdout is the outcome alone
    assert (outcome["status"], outcome["from_version"], outcome["to_version"]) == ("submitted", "4.4", "5.0")
    assert outcome["request_id"]
    again = run_cli(lc, tmp_path, "dds-bp1demo000000001", "5.0", "--ticket", "CHG-7", "--yes")
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
    result = run_cli(lc, tmp_path, "dds-bp1demo000000001", "9.9", "--yes")
    assert result.returncode != 0
    assert "target_version" in result.stderr
    assert "Traceback" not in result.stderr


def last_line(stderr: str) -> str:
    """The CLI's own message: the last stderr line."""
    return stderr.strip().splitlines()[-1]


def test_an_unknown_access_key_is_one_line_saying_what_to_fix(
    make_localcloud: Callable[..., RunningServer], tmp_path: Path
) -> None:
    lc = make_localcloud()
    result = run_cli(lc, tmp_path, "dds-bp1demo000000001", "5.0", "--yes", **UNKNOWN_KEY)

    assert result.returncode == 1
    assert last_line(result.stderr) == UNKNOWN_KEY_LINE
    assert "Traceback" not in result.stderr and "not found" not in result.stderr
    assert json.loads(result.stdout)["reason"] == "configuration"  # recorded, as every outcome


def test_rollout_plan_and_start_by_selector_with_an_unknown_key_say_so_in_one_line(
    make_localcloud: Callable[..., RunningServer], tmp_path: Path
) -> None:
    lc = make_localcloud()
    selector = ("--engine", "redis", "--tag", "env=prod", "--target", "7.0")
    for command in ("rollout plan", "rollout start --yes"):
        result = run_cli(lc, tmp_path, *selector, command=command, **UNKNOWN_KEY)
        assert result.returncode == 1, result.stdout
        assert last_line(result.stderr) == (
            "Error: cloud API call failed: the AccessKey ID is not known to Alibaba Cloud: check "
            "ALIBABA_CLOUD_ACCESS_KEY_ID or the function's role (InvalidAccessKeyId.NotFound)"
        )
        assert "Traceback" not in result.stderr


def test_rollout_plan_of_a_manifest_with_an_unknown_key_says_so_in_one_line(
    make_localcloud: Callable[..., RunningServer], tmp_path: Path
) -> None:
    lc = make_localcloud()
    manifest = tmp_path / "fleet.csv"
    manifest.write_text("instance_id,target_version\ndds-bp1demo000000001,5.0\nr-bp1demo0000000003,7.0\n")
    result = run_cli(lc, tmp_path, str(manifest), command="rollout plan", **UNKNOWN_KEY)

    assert result.returncode == 1
    assert last_line(result.stderr) == UNKNOWN_KEY_LINE
    assert "Traceback" not in result.stderr
