"""`dbupgrade demo` (what `make demo` runs), as a user runs it: a subprocess, its output and exit code."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
REQUEST_ID = re.compile(r"^[0-9A-F]{8}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{12}$")


def table_rows(stdout: str, title: str) -> list[list[str]]:
    """The rows of the table under ``title``, split on its two-space column gaps."""
    section = stdout.split(f"\n{title}\n", 1)[1].split("\n\n", 1)[0]
    lines = section.splitlines()[2:]  # header and rule
    return [re.split(r"\s{2,}", line.strip()) for line in lines]


def outcome_rows(stdout: str) -> list[list[str]]:
    return table_rows(stdout, "Outcomes")


def run_demo(tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DBUPGRADE_", "ALIBABA_CLOUD_"))}
    env["TMPDIR"] = str(tmp_path)  # everything the demo creates lands here, so cleanup is visible
    env["DBUPGRADE_WINDOW"] = "03:00-04:00 Asia/Shanghai"  # an operator's setting must not leak in

    return subprocess.run(
        [sys.executable, "-m", "dbupgrade.cli", "demo"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess[str], Path]:
    """One run of the demo for every test here (it takes seconds); its TMPDIR, to see cleanup."""
    tmp_path = tmp_path_factory.mktemp("demo")
    done = run_demo(tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    return done, tmp_path


def test_demo_runs_all_three_triggers_and_reads_every_notification_back(demo) -> None:
    done, tmp_path = demo
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


def test_demo_shows_a_readiness_verdict_with_its_findings_and_their_sources(demo) -> None:
    done, _ = demo
    section = done.stdout.split("0. readiness", 1)[1].split("\n1. ", 1)[0]
    assert "r-bp1demo0000000006 -> 5.0: verdict warn" in section
    assert "warn: caveat: bloom_data:" in section
    assert "dds-bp1demo000000005 -> 4.4: verdict blocked" in section
    assert "block: state: status Rebooting; an upgrade needs Running (DescribeDBInstanceAttribute)" in section


def test_demo_shows_a_backup_gated_upgrade_waiting_for_its_backup_then_reaching_its_target(demo) -> None:
    done, _ = demo
    [waiting] = [r for r in outcome_rows(done.stdout) if r[1] == "r-bp1demo0000000005"]
    assert (waiting[3], waiting[4]) == ("4.0 -> 5.0", "awaiting_backup") and "waiting for backup" in waiting[
        6
    ]
    followed = [
        r for r in table_rows(done.stdout, "Followed by the tracker") if r[0] == "r-bp1demo0000000005"
    ]
    assert [(r[1], r[3]) for r in followed] == [("submitted", "4.0 -> 5.0"), ("completed", "4.0 -> 5.0")]
    backups = {r[4] for r in followed}
    assert len(backups) == 1 and backups != {"-"}  # both name the backup taken first


def test_demo_shows_a_two_hop_mongodb_upgrade_reaching_its_target(demo) -> None:
    done, _ = demo
    [hop1] = [r for r in outcome_rows(done.stdout) if r[1] == "dds-bp1demo000000001"]
    assert (hop1[3], hop1[4]) == ("4.4 -> 6.0", "submitted") and hop1[6].startswith("hop 1/2 (4.4 -> 5.0")
    followed = [
        r for r in table_rows(done.stdout, "Followed by the tracker") if r[0] == "dds-bp1demo000000001"
    ]
    assert [(r[1], r[2], r[3]) for r in followed] == [
        ("submitted", "2/2", "5.0 -> 6.0"),
        ("completed", "2/2", "4.4 -> 6.0"),
    ]
    assert "in 2 hops (4.4 -> 5.0 -> 6.0" in followed[1][5]
