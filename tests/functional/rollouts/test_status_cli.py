"""`rollout status` and `rollout cancel` as an operator sees them on a localcloud fleet: the
per-target rows in text and JSON, halted not counted as done, what a cancel cannot take back, and
`--watch` in a real terminal (tmux) redrawing in place until the rollout halts."""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner
from dbupgrade.cli.commands import cli
from dbupgrade.cli.rollout import EXIT_CANCELLED, EXIT_HALTED
from dbupgrade.rollouts import RolloutSpec, parse_waves, validate_targets

from tests.functional.rollouts.conftest import Fleet, redis_instance


def manifest(path: Path, instance_ids: list[str]) -> Path:
    path.write_text("\n".join(f"- {{instance_id: {i}, target_version: '7.0'}}" for i in instance_ids) + "\n")
    return path


def start_halting(fleet: Fleet, rollout_id: str, ids: list[str], waves: str) -> None:
    """A rollout with no error budget (started as `start` would, past its plan's warning)."""
    targets = tuple(validate_targets([{"instance_id": i, "target_version": "7.0"} for i in ids]))
    fleet.rollouts.start(RolloutSpec(rollout_id, targets, parse_waves(waves, len(ids)), waves, max_errors=0))


def run(fleet: Fleet, monkeypatch: pytest.MonkeyPatch, *args: str) -> tuple[int, str, str]:
    for key, value in fleet.env.items():
        monkeypatch.setenv(key, value)
    result = CliRunner().invoke(cli, ["rollout", *args])
    return result.exit_code, result.stdout, result.stderr


def test_status_json_lists_every_target_with_its_request_id_and_halted_is_not_done(
    make_fleet: Callable[..., Fleet], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    good, busy = ["r-rows00000"], [f"r-rows{n:05d}" for n in range(1, 4)]
    fleet = make_fleet(
        [redis_instance(i) for i in good] + [redis_instance(i, status="Changing") for i in busy]
    )
    start_halting(fleet, "rows", good + busy, "1,2,100%")
    fleet.tick()  # wave 1 upgraded, wave 2 (one busy target) released
    fleet.tick()  # rejected: the budget of 0 is spent, the last two are halted

    code, out, _ = run(fleet, monkeypatch, "status", "rows", "--json")
    status = json.loads(out)
    rows = {row["instance_id"]: row for row in status["rows"]}
    upgrade_call = next(c for c in fleet.calls() if c["action"] == "ModifyInstanceMajorVersion")

    assert code == EXIT_HALTED
    assert (status["done"], status["halted"], status["targets"]) == (2, 2, 4)
    assert [row["state"] for row in status["rows"]] == ["completed", "rejected", "halted", "halted"]
    assert rows["r-rows00000"]["from_version"] == "6.0" and rows["r-rows00000"]["to_version"] == "7.0"
    assert rows["r-rows00000"]["request_id"] == upgrade_call["request_id"]
    assert rows["r-rows00000"]["released_at"] and rows["r-rows00000"]["finished_at"]
    assert rows["r-rows00001"]["reason"] == "not_ready"
    assert rows["r-rows00002"]["reason"] == "error_budget" and rows["r-rows00002"]["released_at"] is None

    code, text, _ = run(fleet, monkeypatch, "status", "rows")
    assert code == EXIT_HALTED
    assert "2/4 done, 2 halted" in text and "4/4" not in text
    line = next(row for row in text.splitlines() if row.startswith("r-rows00000 "))
    assert line.split()[1:6] == ["1", "completed", "6.0", "->", "7.0"]
    assert upgrade_call["request_id"] in line


def test_cancel_lists_what_was_already_submitted_and_says_what_rollback_means(
    make_fleet: Callable[..., Fleet], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    ids = [f"r-recall{n:05d}" for n in range(5)]
    fleet = make_fleet([redis_instance(i) for i in ids])
    code, _, err = run(
        fleet, monkeypatch, "start", str(manifest(tmp_path / "f.yaml", ids)), "--id", "recall",
        "--waves", "2,100%", "--yes",
    )  # fmt: skip
    assert code == 0, err
    fleet.deliver(only={ids[0]})  # the first message runs: its upgrade is submitted to the cloud
    fleet.rollouts.advance("recall")  # ...and recorded; the second message waits in the queue

    code, out, err = run(fleet, monkeypatch, "cancel", "recall")

    assert code == 0, err
    lines = out.splitlines()
    submitted = lines.index("already submitted to the cloud, cannot be recalled (upgrading or booked) (1):")
    assert lines[submitted + 1].startswith("  r-recall00000 6.0 -> 7.0 RequestId ")
    waiting = lines.index("released, not yet run: each ends halted without an upgrade call (1):")
    assert lines[waiting + 1] == "  r-recall00001 ? -> 7.0"
    assert "a major-version upgrade cannot be undone in place" in out
    assert "restore a backup taken before the upgrade into a new instance" in out
    [backup_id] = {row["backup_id"] for row in fleet.rollouts.status("recall")["rows"] if row["backup_id"]}
    assert f"backup {backup_id}" in lines[submitted + 2]  # the upgrade's own backup, named in its rollback

    fleet.tick()  # the second message runs after the cancel: halted, no upgrade call
    assert fleet.upgrade_calls() == {"r-recall00000": 1}
    assert run(fleet, monkeypatch, "status", "recall")[0] == EXIT_CANCELLED


def _pane(session: str) -> list[str]:
    """Everything the terminal shows, its scroll-back included, without trailing blank lines."""
    screen = subprocess.run(
        ["tmux", "capture-pane", "-p", "-S", "-", "-t", session],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return screen.rstrip("\n").splitlines()


@pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux")
def test_watch_redraws_in_place_in_a_terminal_and_exits_when_the_rollout_halts(
    make_fleet: Callable[..., Fleet], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    good, busy = ["r-tty00000"], [f"r-tty{n:05d}" for n in range(1, 5)]
    fleet = make_fleet(
        [redis_instance(i) for i in good] + [redis_instance(i, status="Changing") for i in busy]
    )
    start_halting(fleet, "tty", good + busy, "1,3,100%")
    exit_file = tmp_path / "exit"
    exports = " ".join(f"{k}={shlex.quote(v)}" for k, v in fleet.env.items())
    command = (
        f"env {exports} {shlex.quote(sys.executable)} -m dbupgrade.cli rollout status tty --watch "
        f"--interval 0.5; echo $? > {shlex.quote(str(exit_file))}; sleep 60"
    )
    session = f"dbupgrade-watch-{tmp_path.name}"
    subprocess.run(["tmux", "new-session", "-d", "-x", "120", "-y", "40", "-s", session, command], check=True)
    try:
        deadline = time.monotonic() + 30
        while not any(line.startswith("rollout tty: RUNNING") for line in _pane(session)):
            assert time.monotonic() < deadline, _pane(session)
            time.sleep(0.2)
        first = _pane(session)
        fleet.tick()  # wave 1 upgraded, wave 2 released: the watcher redraws a new frame
        time.sleep(1.5)
        fleet.tick()  # wave 2 rejected: the budget of 0 is spent, the rollout halts
        while not exit_file.exists():
            assert time.monotonic() < deadline, _pane(session)
            time.sleep(0.2)
        last = _pane(session)
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], check=False)

    assert int(exit_file.read_text()) == EXIT_HALTED
    assert "0/5 done" in first[1]
    # One status block on the screen, scroll-back included: each frame replaced the one before.
    headers = [line for line in last if line.startswith("rollout tty:")]
    assert headers == [headers[0]] and headers[0].startswith("rollout tty: HALTED - error budget spent")
    assert sum(line.startswith("[") for line in last) == 1
    assert len(last) == len(first)  # the same block, same height: 6 lines + 5 rows
    assert [line.split()[2] for line in last[6:]] == ["completed", "rejected", "rejected", "halted", "halted"]
