"""The status a rollout reports: a headline that names failures, an ETA that counts waves,
max-in-flight and the release window, and the per-target rows (what `rollout status` prints)."""

from __future__ import annotations

from datetime import datetime, timezone

from dbupgrade.cli.rollout import exit_code, render_status
from dbupgrade.rollouts import RolloutSpec
from dbupgrade.rollouts.model import RolloutMeta, TargetState
from dbupgrade.rollouts.summary import summarize, summary_message

# 2026-01-05 12:00 UTC
NOON = datetime(2026, 1, 5, 12, 0, tzinfo=timezone.utc).timestamp()


def _spec(count: int, waves: tuple[int, ...], **options: object) -> RolloutSpec:
    targets = tuple({"instance_id": f"r-eta{n:04d}", "target_version": "7.0"} for n in range(count))
    return RolloutSpec("eta", targets, waves, ",".join(map(str, waves)), **options)  # type: ignore[arg-type]


def _completed(iid: str, wave: int, took: float) -> TargetState:
    return TargetState(
        iid,
        wave,
        "completed",
        dispatched_at=NOON - took,
        finished_at=NOON,
        from_version="6.0",
        request_id="R1",
    )


def test_a_completed_rollout_with_failures_and_stuck_says_so_and_exits_non_zero() -> None:
    spec = _spec(4, (4,))
    states = {
        "r-eta0000": _completed("r-eta0000", 1, 60),
        "r-eta0001": TargetState("r-eta0001", 1, "failed", code="UpgradeFailed"),
        "r-eta0002": TargetState("r-eta0002", 1, "failed", code="UpgradeFailed"),
        "r-eta0003": TargetState("r-eta0003", 1, "stuck"),
    }
    status = summarize(spec, RolloutMeta(status="completed", wave=1, started_at=NOON - 600), states, NOON)

    assert status["headline"] == "completed with 2 failed / 1 stuck"
    assert render_status(status).startswith("rollout eta: COMPLETED with 2 failed / 1 stuck\n")
    assert exit_code(status) == 3
    clean = summarize(
        _spec(1, (1,)), RolloutMeta(status="completed", wave=1), {"r-eta0000": _completed("r-eta0000", 1, 60)}
    )
    assert (clean["headline"], exit_code(clean)) == ("completed", 0)
    assert "rows" not in summary_message(status) and summary_message(status)["headline"] == status["headline"]


def test_the_eta_counts_the_waves_and_batches_still_to_run() -> None:
    # 1 done in wave 1 (took 10 min); wave 2: 4 targets, wave 3: 5 more, at most 2 in flight.
    spec = _spec(10, (1, 5, 10), max_in_flight=2)
    states = {s.instance_id: s for s in [_completed("r-eta0000", 1, 600)]}
    for n in range(1, 10):
        states[f"r-eta{n:04d}"] = TargetState(f"r-eta{n:04d}", 2 if n < 5 else 3)
    status = summarize(spec, RolloutMeta(wave=1, started_at=NOON - 600), states, NOON)

    # wave 2: ceil(4/2) = 2 batches, wave 3: ceil(5/2) = 3 batches; 5 x 10 min.
    assert status["eta_seconds"] == 5 * 600
    assert "ETA 50m00s" in render_status(status)
    assert exit_code(status) == 0


def test_a_rollout_waiting_for_its_window_says_when_it_resumes() -> None:
    spec = _spec(3, (1, 3), window="02:00-04:00 UTC")
    states = {
        "r-eta0000": _completed("r-eta0000", 1, 1800),
        "r-eta0001": TargetState("r-eta0001", 2),
        "r-eta0002": TargetState("r-eta0002", 2),
    }
    status = summarize(spec, RolloutMeta(wave=1, started_at=NOON - 3600), states, NOON)

    assert status["resumes_at"] == "2026-01-06T02:00:00Z"
    assert status["eta_seconds"] == 14 * 3600 + 1800  # the wait, then one wave of 30 min
    text = render_status(status)
    assert "waiting for its window 02:00-04:00 UTC: resumes at 2026-01-06T02:00:00Z" in text
    pending_row = next(line for line in text.splitlines() if line.startswith("r-eta0001"))
    assert "2026-01-06T02:00:00Z" in pending_row


def test_work_longer_than_one_window_spills_over_to_the_next_nights() -> None:
    # 3 batches of 1 h in a 2 h window that is open now: 2 h tonight, then 1 h the next night.
    spec = _spec(4, (1, 4), max_in_flight=1, window="11:00-13:00 UTC")
    states = {"r-eta0000": _completed("r-eta0000", 1, 3600)}
    for n in range(1, 4):
        states[f"r-eta{n:04d}"] = TargetState(f"r-eta{n:04d}", 2)
    status = summarize(spec, RolloutMeta(wave=1, started_at=NOON - 3600), states, NOON)

    assert status["resumes_at"] is None
    assert status["eta_seconds"] == 3 * 3600 + 22 * 3600


def test_before_the_first_upgrade_finishes_the_eta_says_it_does_not_know() -> None:
    spec = _spec(2, (2,))
    states = {f"r-eta{n:04d}": TargetState(f"r-eta{n:04d}", 1, "submitted") for n in range(2)}
    status = summarize(spec, RolloutMeta(wave=1, started_at=NOON), states, NOON)
    assert status["eta_seconds"] is None
    assert "ETA once the first upgrade finishes" in render_status(status)


def test_rows_carry_state_versions_request_id_when_and_why_and_a_short_screen_shows_in_flight_first() -> None:
    spec = _spec(30, (30,))
    states = {f"r-eta{n:04d}": _completed(f"r-eta{n:04d}", 1, 60) for n in range(29)}
    states["r-eta0029"] = TargetState(
        "r-eta0029", 1, "submitted", dispatched_at=NOON - 30, from_version="6.0", request_id="REQ-29"
    )
    status = summarize(spec, RolloutMeta(wave=1, started_at=NOON - 600), states, NOON)

    assert status["rows"][29] == {
        "instance_id": "r-eta0029",
        "account_id": None,
        "engine": None,
        "region": None,
        "wave": 1,
        "state": "submitted",
        "from_version": "6.0",
        "to_version": "7.0",
        "request_id": "REQ-29",
        "backup_id": None,
        "released_at": "2026-01-05T11:59:30Z",
        "finished_at": None,
        "code": None,
        "reason": None,
        "message": None,
    }
    short = render_status(status, max_lines=12).splitlines()
    assert len(short) == 12
    assert short[6].split()[:5] == ["r-eta0029", "1", "submitted", "6.0", "->"]
    assert short[-1] == "... 25 more (`rollout status eta` lists all)"
    assert len(render_status(status).splitlines()) == 6 + 30
