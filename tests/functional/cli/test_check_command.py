"""`dbupgrade check` on the default seed, as an operator runs it (a subprocess pointed at localcloud):
a verdict per instance with graded findings naming their sources, nothing submitted, and a read that
fails makes its instance blocked (fails closed)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import requests

from localcloud.server import RunningServer
from tests.functional.cli.test_upgrade_command import run_cli

TARGETS = [
    {"instance_id": "r-bp1demo0000000002", "target_version": "7.0"},  # 6.0, daily backup: go
    {"instance_id": "r-bp1demo0000000006", "target_version": "5.0"},  # 4.0: Bloom data, EOS
    {"instance_id": "dds-bp1demo000000001", "target_version": "5.0"},  # 4.4 -> 5.0: write concern
    {"instance_id": "dds-bp1demo000000005", "target_version": "4.4"},  # Rebooting
]


def check(lc: RunningServer, tmp_path: Path, *args: str) -> tuple[int, dict[str, dict]]:
    manifest = tmp_path / "fleet.json"
    manifest.write_text(json.dumps(TARGETS))
    done = run_cli(lc, tmp_path, str(manifest), "--json", *args, command="check")
    assert done.stdout, done.stderr
    rows = {row["instance_id"]: row for row in json.loads(done.stdout)["rows"]}
    return done.returncode, rows


def findings(row: dict, grade: str) -> list[str]:
    return [f"{f['check']} {f['source']} {f['message']}" for f in row["findings"] if f["grade"] == grade]


def test_check_grades_the_default_seed_and_submits_nothing(
    make_localcloud: Callable[..., RunningServer], tmp_path: Path
) -> None:
    lc = make_localcloud()

    code, rows = check(lc, tmp_path)

    assert code == 1  # one instance is blocked
    verdicts = {iid: row["verdict"] for iid, row in rows.items()}
    assert verdicts == {
        "r-bp1demo0000000002": "go",
        "r-bp1demo0000000006": "warn",
        "dds-bp1demo000000001": "warn",
        "dds-bp1demo000000005": "blocked",
    }
    go = rows["r-bp1demo0000000002"]
    assert {f["check"] for f in go["findings"]} >= {
        "state",
        "mode",
        "offered",
        "operations",
        "tasks",
        "backup",
    }
    assert any(f["source"] == "DescribeEngineVersion.EnableUpgradeMajorVersion" for f in go["findings"])
    assert any(f["source"] == "DescribeBackups" and f["grade"] == "ok" for f in go["findings"])
    bloom = findings(rows["r-bp1demo0000000006"], "warn")
    assert any("bloom_data" in text and "alibabacloud.com" in text for text in bloom)
    assert any("2026-09-25" in f["message"] for f in rows["r-bp1demo0000000006"]["findings"])
    assert any("write_concern" in text for text in findings(rows["dds-bp1demo000000001"], "warn"))
    assert any("Rebooting" in text for text in findings(rows["dds-bp1demo000000005"], "block"))
    calls = requests.get(f"{lc.url}/_localcloud/calls", timeout=10).json()["calls"]
    assert not [
        c
        for c in calls
        if c["action"] in ("CreateBackup", "ModifyInstanceMajorVersion", "UpgradeDBInstanceEngineVersion")
    ]


def test_a_read_that_fails_blocks_the_instance(
    make_localcloud: Callable[..., RunningServer], tmp_path: Path
) -> None:
    lc = make_localcloud()
    rule = {"product": "dds", "action": "DescribeActiveOperationTasks", "error_rate": 1.0}
    requests.post(f"{lc.url}/_localcloud/faults", json={"seed": 1, "rules": [rule]}, timeout=10)

    code, rows = check(lc, tmp_path)

    assert code == 1
    mongo = rows["dds-bp1demo000000001"]
    assert mongo["verdict"] == "blocked"
    assert any(
        "DescribeActiveOperationTasks" in text and "fails closed" in text for text in findings(mongo, "block")
    )
    assert rows["r-bp1demo0000000002"]["verdict"] == "go"  # another product's read still answers


def test_check_prints_the_findings_for_a_person(
    make_localcloud: Callable[..., RunningServer], tmp_path: Path
) -> None:
    lc = make_localcloud()
    manifest = tmp_path / "one.json"
    manifest.write_text(json.dumps(TARGETS[1:2]))

    done = run_cli(lc, tmp_path, str(manifest), command="check")

    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("r-bp1demo0000000006 redis 4.0 -> 5.0: warn\n")
    assert "[warn] caveat (" in done.stdout and "1 targets: 1 warn" in done.stdout
