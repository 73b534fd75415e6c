"""Safe by default, as an operator meets it on localcloud: `upgrade` shows what it is about to do
and asks; stdout is the command's output alone (logs only with --verbose / --log-file); selectors
say which regions they scan; a CLI aimed at a deployed stack without its store refuses; no
credentials is one line; an Excel CSV (BOM) is read and a headerless one is told how to fix it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from localcloud.server import RunningServer
from tests.functional.cli.test_upgrade_command import run_cli, upgrade_calls

MONGO = "dds-bp1demo000000001"  # the default seed: env=prod, 4.4, cn-hangzhou
STAGING_REDIS = "r-bp1demo0000000004"  # env=staging, 6.0


def test_upgrade_summarises_and_asks_and_no_answer_submits_nothing(
    make_localcloud: Callable[..., RunningServer], tmp_path: Path
) -> None:
    lc = make_localcloud()
    declined = subprocess.run(
        [sys.executable, "-m", "dbupgrade.cli", "upgrade", MONGO, "5.0"],
        env={**_clean_env(), "DBUPGRADE_LOCAL": lc.url, "DBUPGRADE_STATE_DIR": str(tmp_path)},
        input="",
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert declined.returncode == 1 and declined.stdout == ""
    assert f"upgrade {MONGO} (mongodb, cn-hangzhou) to 5.0: 1 instance, 1 of 1 tagged prod-like" in (
        declined.stderr
    )
    assert "when: immediate" in declined.stderr
    assert "not submitted: nothing was sent, recorded or notified" in declined.stderr
    assert upgrade_calls(lc) == []

    staging = run_cli(lc, tmp_path, STAGING_REDIS, "7.0", "--effective", "maintenance_window")
    assert "0 of 1 tagged prod-like" in staging.stderr
    assert "when: in each instance's maintenance window" in staging.stderr

    accepted = subprocess.run(
        [sys.executable, "-m", "dbupgrade.cli", "upgrade", MONGO, "5.0"],
        env={**_clean_env(), "DBUPGRADE_LOCAL": lc.url, "DBUPGRADE_STATE_DIR": str(tmp_path)},
        input="y\n",
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert accepted.returncode == 0, accepted.stderr
    assert json.loads(accepted.stdout)["status"] == "submitted"
    assert len(upgrade_calls(lc)) == 1


def _clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("DBUPGRADE_", "ALIBABA_CLOUD_"))}


def _json_lines(text: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in text.splitlines() if line.startswith('{"level"')]


def test_logs_appear_only_with_verbose_or_a_log_file_never_on_stdout(
    make_localcloud: Callable[..., RunningServer], tmp_path: Path
) -> None:
    lc = make_localcloud()
    quiet = run_cli(lc, tmp_path, MONGO, "5.0", "--yes")
    assert quiet.returncode == 0, quiet.stderr
    assert json.loads(quiet.stdout)["status"] == "submitted"  # stdout: the outcome, nothing else
    assert quiet.stderr == ""

    verbose = run_cli(
        lc, tmp_path, "--verbose", "upgrade", "dds-bp1demo000000002", "6.0", "--yes", command=""
    )
    assert json.loads(verbose.stdout)["status"] == "submitted"
    assert any(line["message"] == "outcome" for line in _json_lines(verbose.stderr))

    log_file = tmp_path / "dbupgrade.log"
    logged = run_cli(
        lc,
        tmp_path,
        "--log-file",
        str(log_file),
        "upgrade",
        "r-bp1demo0000000002",
        "7.0",
        "--yes",
        command="",
    )
    assert json.loads(logged.stdout)["status"] == "submitted" and logged.stderr == ""
    assert any(line["message"] == "outcome" for line in _json_lines(log_file.read_text()))


def test_a_selector_says_which_regions_it_scans(
    make_localcloud: Callable[..., RunningServer], tmp_path: Path
) -> None:
    lc = make_localcloud()
    default = run_cli(lc, tmp_path, "--engine", "redis", "--target", "7.0", command="rollout plan")
    assert default.returncode == 0, default.stderr
    # No --region: every region R-kvstore serves (its DescribeRegions: the seed's three regions).
    assert default.stderr.splitlines()[:2] == [
        "scanning redis in every region the product serves (DescribeRegions)",
        "  the own account: redis in cn-beijing, cn-hangzhou, cn-shanghai",
    ]
    assert "r-bp1demo0000000008" in default.stdout and "r-bp1demo0000000002" in default.stdout
    named = run_cli(
        lc, tmp_path, "--engine", "redis", "--region", "cn-beijing", "--region", "cn-shanghai",
        "--target", "7.0", command="rollout plan",
    )  # fmt: skip
    assert named.stderr.splitlines()[0] == "scanning redis in cn-beijing, cn-shanghai"
    assert "r-bp1demo0000000008" in named.stdout and "r-bp1demo0000000002" not in named.stdout


def test_a_cli_aimed_at_a_deployed_stack_without_its_store_refuses_in_one_line(tmp_path: Path) -> None:
    env = {
        **_clean_env(),
        "DBUPGRADE_REGION": "cn-hangzhou",
        "DBUPGRADE_TOPIC": "dbupgrade-notifications",
        "DBUPGRADE_ROLLOUT_QUEUE": "dbupgrade-rollout",
        "DBUPGRADE_MNS_ENDPOINT": "https://1234567890.mns.cn-hangzhou.aliyuncs.com",
        "HOME": str(tmp_path),
    }
    for args in (["rollout", "list"], ["rollout", "status", "night"], ["upgrade", MONGO, "5.0", "--yes"]):
        result = subprocess.run(
            [sys.executable, "-m", "dbupgrade.cli", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 1, result.stdout
        assert result.stderr.splitlines() == [
            "Error: pointed at a deployed stack (DBUPGRADE_TOPIC is set) but DBUPGRADE_REDIS_URL is not: "
            "set it to the stack's state store (docs/deploy.md, 'Running the CLI against production')"
        ]


def test_rollout_plan_with_no_credentials_is_one_line(
    make_localcloud: Callable[..., RunningServer], tmp_path: Path
) -> None:
    lc = make_localcloud()
    manifest = tmp_path / "fleet.csv"
    manifest.write_text("instance_id,target_version\ndds-bp1demo000000001,5.0\nr-bp1demo0000000002,7.0\n")
    env = {
        **_clean_env(),
        "DBUPGRADE_REGION": "cn-hangzhou",
        "DBUPGRADE_KVSTORE_ENDPOINT": lc.url,
        "DBUPGRADE_DDS_ENDPOINT": lc.url,
        "DBUPGRADE_STATE_DIR": str(tmp_path),
        "HOME": str(tmp_path),  # no ~/.alibabacloud profile either
    }
    result = subprocess.run(
        [sys.executable, "-m", "dbupgrade.cli", "rollout", "plan", str(manifest)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert len(result.stderr.splitlines()) == 1 and "Traceback" not in result.stderr
    assert result.stderr.startswith("Error: ") and "ALIBABA_CLOUD_ACCESS_KEY_ID" in result.stderr


def test_an_excel_csv_with_a_bom_is_read_and_a_headerless_one_is_told_the_header(
    make_localcloud: Callable[..., RunningServer], tmp_path: Path
) -> None:
    lc = make_localcloud()
    excel = tmp_path / "excel.csv"
    excel.write_bytes("instance_id,target_version\r\nr-bp1demo0000000002,7.0\r\n".encode("utf-8-sig"))
    planned = run_cli(lc, tmp_path, str(excel), "--json", command="rollout plan")
    assert planned.returncode == 0, planned.stderr
    assert [row["instance_id"] for row in json.loads(planned.stdout)["rows"]] == ["r-bp1demo0000000002"]

    bare = tmp_path / "bare.csv"
    bare.write_text("r-bp1demo0000000002,7.0\n")
    refused = run_cli(lc, tmp_path, str(bare), command="rollout plan")
    assert refused.returncode == 2
    assert "the CSV's first line must be its header, e.g. 'instance_id,target_version'" in refused.stderr
    assert "add the header line" in refused.stderr and "Traceback" not in refused.stderr
