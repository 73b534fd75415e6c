"""Known secret values (AccessKey secret, STS secret and token, webhook secret) never appear in
logs, notifications, replies or exception messages: in the demo as a user runs it, and in a fault
run where errors, retries and outbox paths all print something."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from dbupgrade.cli.demo import DEMO_WEBHOOK_SECRET
from dbupgrade.logging import logger

from tests.conftest import DEFAULT_SEED, ROOT
from tests.reliability.faultrun import SECRETS, Run, Scenario


def leaks(text: str, secrets: tuple[str, ...]) -> list[str]:
    return [secret for secret in secrets if secret in text]


def demo_secrets() -> tuple[str, ...]:
    [account] = DEFAULT_SEED["accounts"]
    [sts] = account["sts"]
    webhook_key = DEMO_WEBHOOK_SECRET.removeprefix("whsec_")
    return (
        account["access_key_secret"],
        sts["access_key_secret"],
        sts["security_token"],
        DEMO_WEBHOOK_SECRET,
        webhook_key,
    )


def test_the_demo_prints_no_secret_even_with_the_functions_own_logs(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DBUPGRADE_", "ALIBABA_CLOUD_"))}
    env["TMPDIR"] = str(tmp_path)
    done = subprocess.run(
        [sys.executable, "-m", "dbupgrade.cli", "demo", "--verbose"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert '"level"' in done.stdout + done.stderr  # the functions' JSON logs were in the output
    assert leaks(done.stdout + done.stderr, demo_secrets()) == []


def test_a_fault_run_leaks_no_secret_in_logs_notifications_replies_or_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    logs = io.StringIO()  # the functions' own log handler and formatter, writing here
    monkeypatch.setattr(logger.registered_handler, "stream", logs)
    scenario = Scenario(
        "secrets",
        "rollout",
        12,
        throttle_rate=0.3,
        error_rate=0.2,
        drop_rate=0.05,
        lost_reply_rate=0.05,
        mns_outage=True,
    )
    report = Run(scenario, tmp_path).execute()
    webhook = Run(
        Scenario("secrets", "webhook", 12, throttle_rate=0.3, error_rate=0.2, mns_outage=True), tmp_path
    ).execute()
    logged = logs.getvalue()

    assert '"cloud call failed"' in logged and '"publish failed"' in logged  # the error paths did log
    for text in (
        *logged.splitlines(),
        *report.notification_texts,
        *report.reply_texts,
        *webhook.notification_texts,
        *webhook.reply_texts,
    ):
        assert leaks(text, SECRETS) == [], text[:500]
    for outcome_text in report.notification_texts:
        assert json.loads(outcome_text)["instance_id"]
