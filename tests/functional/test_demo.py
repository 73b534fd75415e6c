"""`dbupgrade demo` (what `make demo` runs), as a user runs it: a subprocess, its output and exit code."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
REQUEST_ID = re.compile(r"^[0-9A-F]{8}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{12}$")


def outcome_rows(stdout: str) -> list[list[str]]:
    """The rows of the Outcomes table, split on its two-space column gaps."""
    section = stdout.split("\nOutcomes\n", 1)[1].split("\n\n", 1)[0]
    lines = section.splitlines()[2:]  # header and rule
    return [re.split(r"\s{2,}", line.strip()) for line in lines]


def test_demo_runs_all_three_triggers_and_reads_every_notification_back(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DBUPGRADE_", "ALIBABA_CLOUD_"))}
    env["TMPDIR"] = str(tmp_path)  # everything the demo creates lands here, so cleanup is visible
    env["DBUPGRADE_WINDOW"] = "03:00-04:00 Asia/Shanghai"  # an operator's setting must not leak in

    done = subprocess.run(
        [sys.executable, "-m", "dbupgrade.cli", "demo"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
    )

    assert done.returncode == 0, done.stdout + done.stderr
    rows = outcome_rows(done.stdout)
    by_outcome: dict[str, list[list[str]]] = {}
    for row in rows:
        by_outcome.setdefault(row[4], []).append(row)
    submitted = by_outcome["submitted"]
    assert len([r for r in submitted if r[2] == "redis"]) >= 2
    assert len([r for r in submitted if r[2] == "mongodb"]) >= 2
    assert all(REQUEST_ID.match(r[5]) for r in submitted)
    assert {r[0] for r in submitted} == {"timer", "webhook", "queue"}
    [noop] = by_outcome["noop"]
    assert noop[3] == "7.0 -> 7.0"
    [rejected] = by_outcome["rejected"]
    assert "not offered" in rejected[6]
    assert f"(aliyun-mns-sdk): {len(rows)} of {len(rows)}" in done.stdout
    assert list(tmp_path.iterdir()) == []
