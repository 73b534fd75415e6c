"""Fixtures the contract test modules share; each module's own ``lc`` fixture is the localcloud used."""

from __future__ import annotations

import pytest
from mns.account import Account

from localcloud.server import RunningServer
from tests.conftest import AK_ID, AK_SECRET


@pytest.fixture
def account(lc: RunningServer) -> Account:
    """An aliyun-mns-sdk Account of the test account against the module's localcloud."""
    return Account(lc.url, AK_ID, AK_SECRET)
