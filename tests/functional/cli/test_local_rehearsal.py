"""A rehearsal on `dbupgrade local up` with a user's own seed (instances and an account, nothing else),
driven only through what `local up` prints and `dbupgrade local env` gives: the README's signed curl,
a whole rollout through the stack's own functions, and the parameter checks."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from tests.conftest import ROOT
from tests.functional.test_local_up import RunningUp

ACCOUNT = {
    "account_id": "5550001112223334",
    "access_key_id": "LTAI5tMyOwnFleetKey01",
    "access_key_secret": "my-own-fleet-secret",
}
INSTANCES = [
    {
        "InstanceId": f"r-bp1mine00000000{n}",
        "RegionId": "cn-hangzhou",
        "EngineVersion": "6.0",
        "InstanceStatus": "Normal",
        "NodeType": "MASTER_SLAVE",
        "InstanceClass": "redis.shard.small.2.ce",
        "AutomaticBackup": "00:00Z",  # a fresh backup: the default backup gate submits at once
        "Tags": {"env": "qa" if n == 1 else "staging"},  # the first one goes through the webhook
    }
    for n in range(1, 4)
]
BIN = Path(sys.executable).parent


def readme_block(marker: str) -> str:
    blocks = re.findall(r"```sh\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    [block] = [b for b in blocks if marker in b]
    return block


def shell(script: str, tmp: Path) -> subprocess.CompletedProcess[str]:
    """bash with a clean environment (no DBUPGRADE_* / keys of the test's own) and the CLI on PATH."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DBUPGRADE_", "ALIBABA_CLOUD_"))}
    env |= {"PATH": f"{BIN}{os.pathsep}{env['PATH']}", "TMPDIR": str(tmp)}
    return subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True, timeout=120)


@pytest.fixture
def own_fleet(tmp_path: Path) -> Iterator[RunningUp]:
    seed = tmp_path / "fleet.json"
    seed.write_text(json.dumps({"accounts": [ACCOUNT], "redis": INSTANCES, "upgrade_seconds": 30}))
    workdir = tmp_path / "tmp"
    workdir.mkdir()
    running = RunningUp(workdir, "--seed", str(seed), "-p", "WindowPolicy=allow")
    yield running
    running.stop(signal.SIGKILL)


def test_a_users_own_seed_rehearses_end_to_end_with_only_the_printed_exports(own_fleet: RunningUp) -> None:
    up, tmp = own_fleet, own_fleet.tmp
    exports = up.exports
    # The CLI is pointed at this stack with the seed's own account, not the demo's.
    assert exports["ALIBABA_CLOUD_ACCESS_KEY_ID"] == ACCOUNT["access_key_id"]
    assert exports["WEBHOOK_URL"] == up.webhook
    for variable in ("DBUPGRADE_KVSTORE_ENDPOINT", "DBUPGRADE_DDS_ENDPOINT", "DBUPGRADE_MNS_ENDPOINT"):
        assert exports[variable] == up.url
    assert exports["DBUPGRADE_WINDOW_POLICY"] == "allow"  # the functions' policy, -p included

    # `local env` gives the same lines; the README's signed curl works verbatim with them.
    recipe = readme_block("webhook-signature").replace("r-bp1demo0000000002", INSTANCES[0]["InstanceId"])
    curl = shell(f'eval "$(dbupgrade local env)"\n{recipe}', tmp)
    assert curl.returncode == 0, curl.stderr
    assert json.loads(curl.stdout)["status"] == "submitted", curl.stdout
    # The status token reaches GET /upgrades/{id} the same way.
    status = shell(
        'eval "$(dbupgrade local env)"\n'
        f'curl -sS -H "Authorization: Bearer $DBUPGRADE_WEBHOOK_STATUS_TOKEN" "$WEBHOOK_URL/upgrades/{INSTANCES[0]["InstanceId"]}"',
        tmp,
    )
    assert json.loads(status.stdout)["instance_id"] == INSTANCES[0]["InstanceId"], status.stdout

    # A rollout of the rest, started from the CLI with the exports alone; the stack's own tracker
    # (its every-minute timer, on the emulated clock) and rollout function carry it to the end.
    started = shell(
        'eval "$(dbupgrade local env)"\n'
        "dbupgrade rollout start --yes --engine redis --tag env=staging --from-version 6.0 "
        "--target 7.0 --waves 1,100% --id rehearsal",
        tmp,
    )
    assert started.returncode == 0, started.stderr
    final = None
    for _ in range(12):
        up.post("/_localcloud/clock", {"advance": 61})
        time.sleep(1.0)
        shown = shell('eval "$(dbupgrade local env)"\ndbupgrade rollout status rehearsal --json', tmp)
        final = json.loads(shown.stdout)
        if final["ended"]:
            break
    assert final is not None and final["status"] == "completed", final
    assert final["counts"] == {"completed": 2}
    upgraded = {
        c["params"]["InstanceId"] for c in up.calls(action="ModifyInstanceMajorVersion", status="200")
    }
    assert upgraded == {i["InstanceId"] for i in INSTANCES}

    # Stopping removes the env file: `local env` then says nothing runs.
    up.stop()
    gone = shell("dbupgrade local env", tmp)
    assert gone.returncode == 1 and "no `dbupgrade local up` is running" in gone.stderr


@pytest.mark.parametrize(
    ("parameter", "complaint"),
    [
        ("WindowPolicyy=allow", "WindowPolicyy is not a parameter of the template"),
        (
            "WindowPolicy=sometimes",
            "WindowPolicy='sometimes' is not one of reject, maintenance_window, allow",
        ),
    ],
)
def test_parameters_are_checked_against_the_template(parameter: str, complaint: str, tmp_path: Path) -> None:
    result = shell(f"dbupgrade local up --port 0 -p {parameter}", tmp_path)
    assert result.returncode == 2
    assert complaint in result.stderr
    assert "Traceback" not in result.stderr


def test_the_emulated_clock_moves_the_functions_window_guard_and_outcome_times(tmp_path: Path) -> None:
    """The template's window is 02:00-05:00 Asia/Shanghai with policy maintenance_window: at 02:30
    on the emulated clock, whatever the wall clock says, a ticket is submitted immediately."""
    workdir = tmp_path / "tmp"
    workdir.mkdir()
    up = RunningUp(workdir)
    try:
        now = datetime.fromisoformat(up.get("/_localcloud/clock")["now"])
        local = now.astimezone(ZoneInfo("Asia/Shanghai"))
        opening = local.replace(hour=2, minute=30, second=0, microsecond=0)
        if opening <= local:
            opening += timedelta(days=1)
        up.post("/_localcloud/clock", {"advance": (opening - local).total_seconds()})
        recipe = readme_block("webhook-signature")
        curl = shell(f'eval "$(dbupgrade local env)"\n{recipe}', workdir)
        assert json.loads(curl.stdout)["status"] == "submitted", curl.stdout
        call = up.wait_for_call("r-bp1demo0000000002", "ModifyInstanceMajorVersion")
        assert call["params"]["EffectiveTime"] == "Immediately"
        # The recorded outcome carries the emulated time, as the CLI (pointed by the exports) sees it.
        shown = shell(
            'eval "$(dbupgrade local env)"\n'
            'curl -sS -H "Authorization: Bearer $DBUPGRADE_WEBHOOK_STATUS_TOKEN" '
            '"$WEBHOOK_URL/upgrades/r-bp1demo0000000002"',
            workdir,
        )
        at = datetime.fromisoformat(json.loads(shown.stdout)["at"].replace("Z", "+00:00"))
        assert abs((at - opening).total_seconds()) < 60
    finally:
        up.stop(signal.SIGKILL)
