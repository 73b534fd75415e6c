"""The store's password (in ``DBUPGRADE_REDIS_URL``) never appears in a log line, a problem reply,
a notification, the CLI's output or an exception message — and the set of masked values stays
bounded while rotating credentials keep arriving."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from dbupgrade import logging as dblogging
from dbupgrade.config import Config
from dbupgrade.context import Credentials
from dbupgrade.errors import ConfigError
from dbupgrade.logging import logger, mask, register_secret
from dbupgrade.notify import Delivery, Notifier
from dbupgrade.webhook.app import WebhookApp

from tests.conftest import ROOT
from tests.reliability.faultrun import (
    FAST_RETRY,
    STS_ID,
    STS_SECRET,
    STS_TOKEN,
    TOPIC,
    World,
    fc_context,
    notifications,
    post_wsgi,
)

PASSWORD = "p@ss-store-9f3e1c"  # noqa: S105 -- the secret under test
ENCODED = "p%40ss-store-9f3e1c"  # as written in a URL
UNREACHABLE = f"redis://:{ENCODED}@127.0.0.1:1/0"  # nothing listens on port 1


@pytest.fixture
def logs(monkeypatch: pytest.MonkeyPatch) -> io.StringIO:
    stream = io.StringIO()  # the functions' own handler and formatter, writing here
    monkeypatch.setattr(logger.registered_handler, "stream", stream)
    return stream


def leaked(text: str) -> bool:
    return PASSWORD in text or ENCODED in text


def test_a_log_line_quoting_the_url_is_masked_as_soon_as_the_configuration_is_read(logs: io.StringIO) -> None:
    Config.from_env({"DBUPGRADE_REDIS_URL": UNREACHABLE})
    logger.warning(f"could not reach {UNREACHABLE} (password {PASSWORD})")
    assert "could not reach" in logs.getvalue()
    assert not leaked(logs.getvalue())


def test_a_bad_store_url_is_a_configuration_error_that_does_not_quote_it() -> None:
    with pytest.raises(ConfigError) as raised:
        Config.from_env({"DBUPGRADE_REDIS_URL": f"redis://:{ENCODED}@127.0.0.1:notaport/0"})
    assert raised.value.variable == "DBUPGRADE_REDIS_URL"
    assert not leaked(str(raised.value))


@pytest.mark.parametrize(
    "url", [UNREACHABLE, f"redis://:{ENCODED}@127.0.0.1:notaport/0"], ids=["unreachable", "bad-port"]
)
def test_the_webhook_reply_and_its_logs_never_carry_the_password(
    world: World, logs: io.StringIO, url: str
) -> None:
    env = {**world.env, "DBUPGRADE_REDIS_URL": url, "DBUPGRADE_WEBHOOK_AUTH": "none"}
    app = WebhookApp(env, upgrader_options={"retry": FAST_RETRY})
    body = json.dumps({"instance_id": "r-bp1chaos000000", "target_version": "7.0"}).encode()
    status, headers, text = post_wsgi(app, body, {}, fc_context("webhook", 60))

    assert status in (500, 503), text  # the store is down or misconfigured: refused, not run
    assert not leaked(text + json.dumps(headers))
    assert not leaked(logs.getvalue())
    assert world.cloud_calls() == []


def test_a_notification_quoting_the_password_is_masked(world: World) -> None:
    config = Config.from_env({**world.env, "DBUPGRADE_REDIS_URL": f"redis://:{ENCODED}@127.0.0.1:6379/0"})
    message = {"version": 1, "event": "upgrade.failed", "instance_id": "r-bp1chaos000000"}
    message["message"] = f"the store at redis://:{ENCODED}@127.0.0.1:6379/0 said no ({PASSWORD})"

    delivered = Notifier(config).publish(
        message, credentials=Credentials(STS_ID, STS_SECRET, STS_TOKEN), context=None
    )

    assert delivered is Delivery.DELIVERED
    [notified] = list(notifications(world.lc))
    assert notified["instance_id"] == "r-bp1chaos000000"
    assert not leaked(json.dumps(notified))
    assert config.topic == TOPIC


def test_the_cli_prints_no_password_when_the_store_is_down_or_misconfigured(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DBUPGRADE_", "ALIBABA_CLOUD_"))}
    for url in (UNREACHABLE, f"redis://:{ENCODED}@127.0.0.1:notaport/0"):
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "dbupgrade.cli",
                "upgrade",
                "r-bp1chaos000000",
                "7.0",
                "--region",
                "cn-hangzhou",
                "--yes",
            ],
            cwd=ROOT,
            env={
                **env,
                "TMPDIR": str(tmp_path),
                "DBUPGRADE_REDIS_URL": url,
                # Keys, so the CLI gets as far as the store (it checks credentials first).
                "ALIBABA_CLOUD_ACCESS_KEY_ID": "LTAI5tStorePasswordTest",
                "ALIBABA_CLOUD_ACCESS_KEY_SECRET": "store-password-test-key-secret",
            },
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode != 0
        assert "DBUPGRADE_REDIS_URL" in done.stderr or "store" in done.stderr, done.stderr[-1000:]
        assert not leaked(done.stdout + done.stderr), done.stderr[-1000:]


def test_the_mask_set_is_bounded_and_forgets_the_oldest_rotating_secret() -> None:
    register_secret("pinned-config-secret-41", pinned=True)
    tokens = [f"sts-token-rotation-{n:04d}" for n in range(dblogging.ROTATING_SECRETS_MAX + 10)]
    for token in tokens:
        register_secret(token)

    assert dblogging.registered_secrets() <= dblogging.ROTATING_SECRETS_MAX + len(dblogging._pinned)
    assert mask(tokens[0]) == tokens[0]  # the oldest rotated out, long expired
    assert mask(tokens[-1]) == "***"  # the newest still masked
    assert mask("pinned-config-secret-41") == "***"  # configuration secrets stay, whatever rotates


def test_a_rotating_secret_registered_again_is_kept() -> None:
    register_secret("sts-token-in-use-all-day")
    for n in range(dblogging.ROTATING_SECRETS_MAX - 1):
        register_secret(f"sts-token-other-{n:04d}")
    register_secret("sts-token-in-use-all-day")  # every new client registers its credentials again
    for n in range(dblogging.ROTATING_SECRETS_MAX - 1):
        register_secret(f"sts-token-later-{n:04d}")
    assert mask("sts-token-in-use-all-day") == "***"
