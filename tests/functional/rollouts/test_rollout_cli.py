"""The operator's `dbupgrade rollout start / status --watch` on a localcloud fleet: what is printed,
what is released (the window), and the bad option named before anything is recorded."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

import pytest
from click.testing import CliRunner
from dbupgrade.cli.commands import cli

from tests.functional.rollouts.conftest import Fleet, redis_instance


def manifest(path: Path, instance_ids: list[str]) -> Path:
    path.write_text("\n".join(f"- {{instance_id: {i}, target_version: '7.0'}}" for i in instance_ids) + "\n")
    return path


def rollout_cli(fleet: Fleet, monkeypatch: pytest.MonkeyPatch, *args: str) -> tuple[int, str, str]:
    for key, value in fleet.env.items():
        monkeypatch.setenv(key, value)
    if args[0] == "start":
        args = (*args, "--yes")  # the prompt is tested on its own
    result = CliRunner().invoke(cli, ["rollout", *args])
    return result.exit_code, result.stdout, result.stderr


def test_start_prints_the_id_and_status_watch_follows_the_rollout_to_its_end(
    make_fleet: Callable[..., Fleet], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    ids = [f"r-cli{n:05d}" for n in range(6)]
    fleet = make_fleet([redis_instance(i) for i in ids])
    fleet_yaml = manifest(tmp_path / "fleet.yaml", ids)

    code, out, err = rollout_cli(
        fleet, monkeypatch, "start", str(fleet_yaml), "--id", "cli-1", "--waves", "1,100%"
    )

    assert (code, out) == (0, "cli-1\n"), err
    assert "cli-1: running, wave 1/2, 0/6 done" in err
    listed = rollout_cli(fleet, monkeypatch, "list")[1]
    assert listed.startswith("cli-1: running, wave 1/2, 0/6 done") and listed.count("\n") == 1
    watch = subprocess.Popen(  # noqa: S603 -- our own CLI
        [
            sys.executable,
            "-m",
            "dbupgrade.cli",
            "rollout",
            "status",
            "cli-1",
            "--watch",
            "--json",
            "--interval",
            "0.5",
        ],
        env={**os.environ, **fleet.env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    # The rounds start once the watcher drew its first frame: two rounds end the rollout, sooner
    # than a busy machine may start a Python process.
    assert watch.stdout is not None
    first = watch.stdout.readline()
    for _ in range(10):
        time.sleep(0.6)  # the watcher redraws between the tracker's rounds
        if fleet.tick()[0]["ended"]:
            break
    rest, err = watch.communicate(timeout=60)
    out = first + rest

    assert watch.returncode == 0, err
    frames = [json.loads(line) for line in out.splitlines()]
    assert len(frames) >= 2 and not frames[0]["ended"]
    assert (frames[-1]["status"], frames[-1]["counts"], frames[-1]["ended"]) == (
        "completed",
        {"completed": 6},
        True,
    )
    done = [frame["done"] for frame in frames]
    assert done == sorted(done)
    assert fleet.upgrade_calls() == dict.fromkeys(ids, 1)
    assert rollout_cli(fleet, monkeypatch, "list")[1] == "no active rollouts\n"  # ended: off the list


def test_start_outside_its_window_records_the_rollout_but_releases_nothing(
    make_fleet: Callable[..., Fleet], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    later, now = [f"r-night{n:05d}" for n in range(3)], [f"r-now{n:05d}" for n in range(3)]
    fleet = make_fleet([redis_instance(i) for i in later + now])
    hour = datetime.now(timezone.utc).hour
    closed = f"{(hour + 6) % 24:02d}:00-{(hour + 7) % 24:02d}:00 UTC"
    open_ = f"{(hour - 1) % 24:02d}:00-{(hour + 2) % 24:02d}:00 UTC"

    code, _, err = rollout_cli(
        fleet,
        monkeypatch,
        "start",
        str(manifest(tmp_path / "a.yaml", later)),
        "--id",
        "night",
        "--window",
        closed,
    )
    assert code == 0, err
    fleet.tick()
    code, out, _ = rollout_cli(fleet, monkeypatch, "status", "night", "--json")
    status = json.loads(out)
    assert (code, status["counts"], status["in_flight"], status["window"]) == (0, {"pending": 3}, 0, closed)
    assert fleet.calls(action="PublishMessage") == [] and fleet.upgrade_calls() == {}
    assert f"released only inside {closed}" in rollout_cli(fleet, monkeypatch, "status", "night")[1]

    code, _, err = rollout_cli(
        fleet, monkeypatch, "start", str(manifest(tmp_path / "b.yaml", now)), "--id", "now", "--window", open_
    )
    assert code == 0, err
    assert fleet.run_until_ended("now")["counts"] == {"completed": 3}
    assert fleet.upgrade_calls() == dict.fromkeys(now, 1)
    assert fleet.rollouts.status("night")["counts"] == {"pending": 3}


@pytest.mark.parametrize(
    ("options", "named"),
    [
        (["--waves", "0,100%"], "--waves"),
        (["--waves", "50%,10%"], "--waves"),
        (["--window", "25:00-26:00 UTC"], "--window"),
        (["--window", "02:00-05:00 Mars/Olympus"], "--window"),
        (["--id", "no spaces"], "--id"),
        (["--max-errors", "-1"], "--max-errors"),
    ],
)
def test_start_names_the_bad_option_and_records_nothing(
    make_fleet: Callable[..., Fleet],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    options: list[str],
    named: str,
) -> None:
    ids = [f"r-opt{n:05d}" for n in range(10)]
    fleet = make_fleet([redis_instance(i) for i in ids])
    fleet_yaml = manifest(tmp_path / "fleet.yaml", ids)

    code, out, err = rollout_cli(fleet, monkeypatch, "start", str(fleet_yaml), "--id", "bad", *options)

    assert code == 2 and named in err, err
    assert "Traceback" not in out + err
    assert fleet.rollouts.repo.spec("bad") is None
    assert fleet.calls(action="PublishMessage") == []


def test_start_refuses_a_used_id_and_a_missing_queue(
    make_fleet: Callable[..., Fleet], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    fleet = make_fleet([redis_instance("r-twice0001")])
    fleet_yaml = manifest(tmp_path / "fleet.yaml", ["r-twice0001"])
    assert rollout_cli(fleet, monkeypatch, "start", str(fleet_yaml), "--id", "once")[0] == 0

    code, _, err = rollout_cli(fleet, monkeypatch, "start", str(fleet_yaml), "--id", "once")
    assert code == 1 and "rollout once already exists" in err
    monkeypatch.delenv("DBUPGRADE_ROLLOUT_QUEUE")
    fleet.env.pop("DBUPGRADE_ROLLOUT_QUEUE")
    code, _, err = rollout_cli(fleet, monkeypatch, "start", str(fleet_yaml), "--id", "noqueue")
    assert code == 1 and "DBUPGRADE_ROLLOUT_QUEUE" in err
    assert len(fleet.calls(action="PublishMessage")) == 1  # the first start's one message


def test_start_asks_before_it_records_anything_and_no_answer_is_a_no(
    make_fleet: Callable[..., Fleet], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    ids = [f"r-ask{n:05d}" for n in range(3)]
    fleet = make_fleet([redis_instance(i) for i in ids])
    for key, value in fleet.env.items():
        monkeypatch.setenv(key, value)
    fleet_yaml = str(manifest(tmp_path / "fleet.yaml", ids))

    declined = CliRunner().invoke(cli, ["rollout", "start", fleet_yaml, "--id", "asked"], input="\n")
    assert declined.exit_code == 1 and declined.stdout == ""
    assert "rollout asked: 3 instances in default region, 3 of 3 tagged prod-like" in declined.stderr
    assert "waves [1, 3] (cumulative)" in declined.stderr and "when: immediate" in declined.stderr
    assert "not started" in declined.stderr
    assert fleet.rollouts.repo.spec("asked") is None and fleet.calls(action="PublishMessage") == []

    accepted = CliRunner().invoke(cli, ["rollout", "start", fleet_yaml, "--id", "asked"], input="y\n")
    assert (accepted.exit_code, accepted.stdout) == (0, "asked\n"), accepted.stderr

    code, _, err = rollout_cli(
        fleet, monkeypatch, "start", fleet_yaml, "--id", "shrinks", "--waves", "10%,5%"
    )
    assert code == 2 and "--waves" in err and "larger than the one before" in err
