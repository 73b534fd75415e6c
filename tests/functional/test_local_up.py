"""`dbupgrade local up`: the real template.yml running on localcloud, driven as an operator drives it —
a subprocess, its printed URLs, a signed webhook, the emulated clock, a topic publish, Ctrl-C.

Also the two localcloud pieces underneath: FC cron schedules and ROS template -> seed."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
import redis
from dbupgrade.cli.demo import DEMO_WEBHOOK_SECRET
from dbupgrade.store import RedisStore
from dbupgrade.webhook.auth import standard_webhook_headers
from mns.account import Account
from mns.topic import TopicMessage

from localcloud.cloud import Cloud
from localcloud.template import TemplateError, load_template, stack_seed
from localcloud.timers import CronSchedule
from tests.conftest import DEFAULT_SEED, ROOT

READY_LINE = "Ctrl-C stops"
WAIT_SECONDS = 20


def epoch(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=timezone.utc).timestamp()


def utc(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")


class RunningUp:
    """``dbupgrade local up`` as a subprocess, with what it printed."""

    def __init__(self, tmp: Path, *args: str) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("DBUPGRADE_", "ALIBABA_CLOUD_"))}
        env["TMPDIR"] = str(tmp)
        self.tmp = tmp
        self.stderr = (tmp.parent / "up-stderr.log").open("w+")  # the functions' logs, kept for failures
        self.process = subprocess.Popen(
            [sys.executable, "-m", "dbupgrade.cli", "local", "up", "--port", "0", *args],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=self.stderr,
            text=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        self.printed = self.read_until(READY_LINE)
        self.exports = dict(
            line.strip().removeprefix("export ").split("=", 1)
            for line in self.printed
            if line.strip().startswith("export ")
        )
        self.url = self.exports["DBUPGRADE_LOCAL"]
        [self.webhook] = [line.split(": ", 1)[1] for line in self.printed if line.startswith("webhook: ")]

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line.rstrip("\n"))

    def read_until(self, marker: str) -> list[str]:
        seen: list[str] = []
        deadline = time.monotonic() + WAIT_SECONDS
        while not seen or marker not in seen[-1]:
            try:
                seen.append(self.lines.get(timeout=max(0.0, deadline - time.monotonic())))
            except queue.Empty:
                self.stderr.seek(0)
                raise AssertionError(
                    f"no {marker!r} in {seen}; stderr:\n{self.stderr.read()[-3000:]}"
                ) from None
        return seen

    def get(self, path: str) -> Any:
        with urllib.request.urlopen(f"{self.url}{path}", timeout=10) as reply:  # noqa: S310 -- 127.0.0.1
            return json.loads(reply.read())

    def post(self, path: str, body: dict[str, Any]) -> Any:
        request = urllib.request.Request(f"{self.url}{path}", json.dumps(body).encode(), method="POST")  # noqa: S310
        with urllib.request.urlopen(request, timeout=10) as reply:  # noqa: S310 -- 127.0.0.1
            return json.loads(reply.read())

    def calls(self, **filters: str) -> list[dict[str, Any]]:
        query = "&".join(f"{k}={v}" for k, v in filters.items())
        calls: list[dict[str, Any]] = self.get(f"/_localcloud/calls?{query}")["calls"]
        return calls

    def wait_for_call(self, instance_id: str, action: str) -> dict[str, Any]:
        deadline = time.monotonic() + WAIT_SECONDS
        while True:
            found = self.calls(action=action, instance_id=instance_id, status="200")
            if found:
                return found[0]
            assert time.monotonic() < deadline, f"no {action} of {instance_id}: {self.calls()}"
            time.sleep(0.1)

    def stop(self, sig: int = signal.SIGINT) -> list[str]:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            self.process.wait(timeout=WAIT_SECONDS)
        finally:
            if self.process.poll() is None:
                self.process.kill()
            self.stderr.close()
        return [*self._drain()]

    def _drain(self) -> list[str]:
        out = []
        while not self.lines.empty():
            out.append(self.lines.get())
        return out


@pytest.fixture
def up(tmp_path: Path) -> Any:
    workdir = tmp_path / "tmp"
    workdir.mkdir()
    running = RunningUp(workdir, "--enable-timers", "--parameter", "WindowPolicy=allow")
    yield running
    running.stop(signal.SIGKILL)


def test_local_up_runs_the_template_stack_end_to_end_and_stops_cleanly(up: RunningUp) -> None:
    printed = "\n".join(up.printed)
    assert (
        "dbupgrade-webhook/webhook" in printed
        and "dbupgrade-scheduled/scheduled" in printed
        and "dbupgrade/rollout" in printed
    )
    assert "topic dbupgrade-rollout (JSON)" in printed
    assert "dbupgrade-rollout-dlq" in printed
    assert up.webhook == f"{up.url}/2016-08-15/proxy/dbupgrade-webhook/webhook"

    # 1. A change ticket, signed, through the printed HTTP trigger URL. WindowPolicy=allow (a
    #    template parameter given on the command line) makes it immediate at any hour.
    ticket = {"instance_id": "r-bp1demo0000000002", "target_version": "7.0", "ticket_id": "CHG-77"}
    body = json.dumps(ticket).encode()
    headers = {
        "content-type": "application/json",
        **standard_webhook_headers(DEMO_WEBHOOK_SECRET, body, "msg_up_1"),
    }
    request = urllib.request.Request(f"{up.webhook}/upgrades", body, headers, method="POST")  # noqa: S310
    with urllib.request.urlopen(request, timeout=WAIT_SECONDS) as reply:  # noqa: S310 -- 127.0.0.1
        assert reply.status == 202
        assert json.loads(reply.read())["status"] == "submitted"
    call = up.wait_for_call("r-bp1demo0000000002", "ModifyInstanceMajorVersion")
    assert call["params"]["EffectiveTime"] == "Immediately"
    # The printed store is the functions' store: the CLI pointed at it sees the same outcome.
    store = RedisStore(redis.Redis.from_url(up.exports["DBUPGRADE_REDIS_URL"]))
    recorded = store.latest("r-bp1demo0000000002")
    assert recorded is not None and recorded.source == "webhook" and recorded.ticket_id == "CHG-77"

    # 2. The nightly timer (Enable: false in the template, on with --enable-timers) fires when the
    #    emulated clock passes 02:30 Asia/Shanghai; its selector picks the staging Redis on 6.0.
    [nightly] = [t for t in up.get("/_localcloud/timers")["timers"] if t["name"] == "nightly-offpeak"]
    assert nightly["next"].endswith("T18:30:00Z") and nightly["fired"] == 0
    now = epoch(up.get("/_localcloud/clock")["now"].removesuffix("+00:00"))
    up.post("/_localcloud/clock", {"advance": nightly["next_epoch"] - now + 1})
    [fired] = [c for c in up.calls(product="fc") if c["params"]["function"] == "scheduled"]
    assert fired["params"]["trigger"] == "nightly-offpeak"
    assert fired["params"]["triggerTime"] == nightly["next"]
    up.wait_for_call("r-bp1demo0000000004", "ModifyInstanceMajorVersion")
    [nightly] = [t for t in up.get("/_localcloud/timers")["timers"] if t["name"] == "nightly-offpeak"]
    assert nightly["fired"] == 1 and nightly["next_epoch"] - now > 86400 - 60

    # 3. A rollout message on the template's topic is pushed to the rollout function (JSON format).
    accounts = DEFAULT_SEED["accounts"][0]
    topic = Account(up.url, accounts["access_key_id"], accounts["access_key_secret"]).get_topic(
        "dbupgrade-rollout"
    )
    message = {"instance_id": "dds-bp1demo000000003", "target_version": "7.0", "rollout_id": "up-test"}
    topic.publish_message(TopicMessage(json.dumps(message), "rollout"))
    up.wait_for_call("dds-bp1demo000000003", "UpgradeDBInstanceEngineVersion")
    [push] = up.calls(product="mns", action="PushToFunction", status="202")
    assert push["params"]["Function"] == "dbupgrade/rollout"
    assert json.loads(push["params"]["Payload"])["Message"] == json.dumps(message)

    # 4. Ctrl-C: a clean stop, nothing left behind.
    tail = up.stop()
    assert up.process.returncode == 0
    assert tail[-1].startswith("stopped")
    assert list(up.tmp.iterdir()) == []


IDLE_SECONDS = 3.0
IDLE_CPU_SHARE = 0.02  # of one core


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads), from /proc/<pid>/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    # After "pid (comm)": state is field 3, utime 14 and stime 15 (proc(5)); here index = field - 3.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
def test_an_idle_local_up_uses_no_cpu_to_speak_of(up: RunningUp) -> None:
    time.sleep(0.5)  # start-up work (imports, the first timer pass) is done
    before, started = cpu_seconds(up.process.pid), time.monotonic()
    time.sleep(IDLE_SECONDS)
    used = cpu_seconds(up.process.pid) - before
    share = used / (time.monotonic() - started)
    assert share < IDLE_CPU_SHARE, f"idle local up used {share:.1%} of a core"


@pytest.mark.parametrize(
    ("expression", "after", "expected"),
    [
        ("CRON_TZ=Asia/Shanghai 0 30 2 * * *", "2026-11-23T10:00:00", "2026-11-23T18:30:00"),
        ("0 30 2 * * *", "2026-11-23T10:00:00", "2026-11-24T02:30:00"),  # UTC without CRON_TZ
        ("0 */15 9-17 ? * MON-FRI", "2026-11-27T17:50:00", "2026-11-30T09:00:00"),  # Fri -> Mon
        ("0 0 0 13 * 5", "2026-11-23T00:00:00", "2026-11-27T00:00:00"),  # day 13 OR a Friday
        ("0 0 0 1 jan,jul ?", "2026-11-23T00:00:00", "2027-01-01T00:00:00"),
        ("@every 1h30m", "2026-11-23T10:00:00", "2026-11-23T11:30:00"),
        ("@hourly", "2026-11-23T10:00:00", "2026-11-23T11:00:00"),
    ],
)
def test_cron_schedules_fire_as_fc_documents_them(expression: str, after: str, expected: str) -> None:
    start = epoch(after)
    assert utc(CronSchedule.parse(expression).next_after(start, anchor=start)) == expected


@pytest.mark.parametrize(
    ("expression", "complaint"),
    [
        ("0 30 2 *", "6 fields"),
        ("0 60 * * * *", "minute: 60 is outside 0-59"),
        ("0 0 0 * * FUNDAY", "day-of-week"),
        ("0 0 0 30 2 *", "never fires"),
        ("CRON_TZ=Mars/Olympus 0 0 0 * * *", "unknown time zone"),
        ("@every 5 minutes", "not a duration"),
    ],
)
def test_bad_cron_expressions_are_refused_with_the_reason(expression: str, complaint: str) -> None:
    with pytest.raises(ValueError, match=complaint):
        CronSchedule.parse(expression).next_after(0)


def test_template_becomes_a_seed_with_local_endpoints_and_the_given_parameters() -> None:
    stack = stack_seed(
        load_template(ROOT / "template.yml"),
        DEFAULT_SEED,
        parameters={
            "StateRedisUrl": "redis://127.0.0.1:6399/0",
            "WebhookSecret": "whsec_x",
            "WebhookStatusToken": "token",
        },
        template_dir=ROOT,
    )
    functions = {f["name"]: f for f in stack.seed["functions"]}
    env = functions["rollout"]["env"]
    assert (
        env["DBUPGRADE_MNS_ENDPOINT"] == "${LOCALCLOUD_URL}"
    )  # was http://{account}.mns.{region}-internal.aliyuncs.com
    assert env["DBUPGRADE_REDIS_URL"] == "redis://127.0.0.1:6399/0"
    assert env["DBUPGRADE_WINDOW"] == "02:00-05:00 Asia/Shanghai"  # the parameter's Default
    assert functions["webhook"]["http"] is True
    assert functions["rollout"]["on_failure"] == {"queue": "dbupgrade-rollout-dlq"}
    # Each function runs with its own service's role (its inline policy; managed names are reported).
    assert {f["role"]["name"] for f in functions.values()} == {
        f"{f['service']}-default-role" for f in functions.values()
    }
    assert len({f["service"] for f in functions.values()}) == 4
    assert any("AliyunECSNetworkInterfaceManagementAccess" in line for line in stack.skipped)
    assert Path(functions["scheduled"]["code_uri"]) == ROOT / "functions" / "scheduled"
    [nightly] = [t for t in stack.seed["timers"] if t["name"] == "nightly-offpeak"]
    assert nightly["enable"] is False and json.loads(nightly["payload"])["inline_limit"] == 5
    [push] = [s for s in stack.seed["subscriptions"] if s.get("function") == "dbupgrade/rollout"]
    assert push["topic"] == "dbupgrade-rollout"
    assert (push["format"], push["strategy"]) == ("JSON", "EXPONENTIAL_DECAY_RETRY")
    # The seed's own tap survives; its function subscription gave way to the template's trigger.
    assert {"topic": "dbupgrade-notifications", "queue": "dbupgrade-notifications-tap"} in stack.seed[
        "subscriptions"
    ]
    assert len([s for s in stack.seed["subscriptions"] if "function" in s]) == len(
        [
            e
            for service in load_template(ROOT / "template.yml")["Resources"].values()
            if service["Type"] == "Aliyun::Serverless::Service"
            for f in service.values()
            if isinstance(f, dict) and f.get("Type") == "Aliyun::Serverless::Function"
            for e in (f.get("Events") or {}).values()
            if e["Type"] == "MNSTopic"
        ]
    )
    Cloud(stack.seed, root=ROOT).close()  # localcloud accepts the seed as it is


def test_short_form_intrinsics_and_missing_parameters(tmp_path: Path) -> None:
    (tmp_path / "t.yml").write_text(
        "Parameters: {Secret: {Type: String, NoEcho: true}}\n"
        "Resources:\n"
        "  Topic: {Type: 'ALIYUN::MNS::Topic', Properties: {TopicName: !Sub '${ALIYUN::StackName}-events'}}\n"
        "  svc:\n"
        "    Type: 'Aliyun::Serverless::Service'\n"
        "    fn:\n"
        "      Type: 'Aliyun::Serverless::Function'\n"
        "      Properties:\n"
        "        {CodeUri: ./code, Handler: index.handler, Runtime: python3.10,\n"
        "         EnvironmentVariables: {TOPIC: !Ref Topic, SECRET: !Ref Secret, ENDPOINT: !Sub 'https://${ALIYUN::AccountId}.fc.${ALIYUN::Region}.aliyuncs.com/x'}}\n"
        "      Events:\n"
        "        tick: {Type: Timer, Properties: {CronExpression: '@every 1m'}}\n"
        "        logs: {Type: Log, Properties: {}}\n"
    )
    template = load_template(tmp_path / "t.yml")
    with pytest.raises(TemplateError, match="parameter Secret has no default"):
        stack_seed(template, DEFAULT_SEED)
    stack = stack_seed(template, DEFAULT_SEED, parameters={"Secret": "s"}, template_dir=tmp_path)
    [fn] = stack.seed["functions"]
    assert fn["env"] == {"TOPIC": "localcloud-events", "SECRET": "s", "ENDPOINT": "${LOCALCLOUD_URL}/x"}
    assert "localcloud-events" in stack.seed["topics"]
    assert stack.seed["timers"] == [
        {"function": "svc/fn", "name": "tick", "cron": "@every 1m", "payload": "", "enable": True}
    ]
    assert stack.skipped == ["svc/fn event logs: Log triggers are not emulated"]


PROBE = {"service": "probe", "code_uri": "tests/contract/fixtures/fc_probe", "handler": "index.handler"}


def test_seed_timers_fire_on_a_clock_advance_with_fcs_timer_event(make_localcloud: Any) -> None:
    seed = {
        "accounts": DEFAULT_SEED["accounts"],
        "queues": ["ticks"],
        # The probe wants its action at the top level, so a timer event fails it: its failure
        # destination record carries the event FC handed over.
        "functions": [
            {**PROBE, "name": "tick", "max_async_retry_attempts": 0, "on_failure": {"queue": "ticks"}}
        ],
        "timers": [
            {
                "function": "probe/tick",
                "name": "every-minute",
                "cron": "@every 1m",
                "payload": {"action": "echo"},
            },
            {
                "function": "probe/tick",
                "name": "off",
                "cron": "0 * * * * *",
                "payload": "{}",
                "enable": False,
            },
        ],
    }
    lc = make_localcloud(seed)
    [before, _] = lc.cloud.timers.describe()
    request = urllib.request.Request(f"{lc.url}/_localcloud/clock", b'{"advance": 600}', method="POST")  # noqa: S310
    urllib.request.urlopen(request, timeout=10).close()  # noqa: S310 -- 127.0.0.1

    # Ten missed minutes coalesce into one invocation, for the latest of them; the disabled timer stays quiet.
    [fired] = lc.cloud.calls.query({"product": "fc"})
    assert fired["params"]["trigger"] == "every-minute"
    with urllib.request.urlopen(f"{lc.url}/_localcloud/timers", timeout=10) as reply:  # noqa: S310
        every, off = json.loads(reply.read())["timers"]
    assert (every["fired"], every["coalesced"]) == (1, 9)
    assert every["last_fired"] == utc(before["next_epoch"] + 540) + "Z"
    assert every["next_epoch"] == before["next_epoch"] + 600
    assert (off["enable"], off["fired"]) == (False, 0)
    assert lc.cloud.fc.wait_idle(WAIT_SECONDS)
    [delivered] = lc.cloud.fc.destinations
    event = json.loads(delivered["record"]["requestPayload"])
    assert event == {
        "triggerTime": every["last_fired"],
        "triggerName": "every-minute",
        "payload": '{"action": "echo"}',
    }


def test_a_timer_for_a_function_the_seed_lacks_is_refused() -> None:
    seed = {
        "accounts": DEFAULT_SEED["accounts"],
        "timers": [{"function": "probe/gone", "name": "t", "cron": "@daily"}],
    }
    with pytest.raises(ValueError, match="no function 'probe/gone'"):
        Cloud(seed, root=ROOT)
