"""What the contract tests share: reaching a running localcloud as the official clients do.

A tea-openapi ``Config`` for the test account, a raw ``call_api`` RPC call, the emulated clock and
fault controls (``/_localcloud/clock`` and ``/_localcloud/faults``), maintenance-window times, and
a refusal's ``(code, status, message)``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import pytest
import requests
from alibabacloud_tea_openapi import utils_models as api
from alibabacloud_tea_openapi.client import Client as OpenApiClient
from alibabacloud_tea_openapi.exceptions import ClientException
from alibabacloud_tea_openapi.models import Config
from darabonba.runtime import RuntimeOptions

from localcloud.server import RunningServer
from tests.conftest import AK_ID, AK_SECRET


def openapi_config(lc: RunningServer, **overrides: Any) -> Config:
    """A tea-openapi Config for the test account against ``lc`` over plain HTTP (product clients too)."""
    options = {
        "endpoint": lc.url.removeprefix("http://"),
        "protocol": "http",
        "access_key_id": AK_ID,
        "access_key_secret": AK_SECRET,
        "region_id": "cn-hangzhou",
    } | overrides
    return Config(**options)


KVSTORE_VERSION = "2015-01-01"


def call_api(
    client: OpenApiClient,
    action: str,
    query: dict[str, str],
    method: str = "POST",
    body: dict[str, str] | None = None,
    version: str = KVSTORE_VERSION,
) -> dict[str, Any]:
    """One RPC call through tea-openapi's generic ``call_api`` (what dbupgrade's cloudapi does)."""
    params = api.Params(
        action=action,
        version=version,
        protocol="HTTP",
        pathname="/",
        method=method,
        auth_type="AK",
        style="RPC",
        req_body_type="formData",
        body_type="json",
    )
    return client.call_api(params, api.OpenApiRequest(query=query, body=body), RuntimeOptions())


def advance(lc: RunningServer, seconds: float) -> None:
    """Move localcloud's emulated clock forward."""
    requests.post(f"{lc.url}/_localcloud/clock", json={"advance": seconds}, timeout=5).raise_for_status()


def set_faults(lc: RunningServer, **config: Any) -> None:
    """Replace localcloud's fault rules (``seed``, ``rules``: see localcloud/faults.py)."""
    requests.post(f"{lc.url}/_localcloud/faults", json=config, timeout=5).raise_for_status()


def hhmm(offset_seconds: float) -> str:
    """A ``HH:MMZ`` bound ``offset_seconds`` from now, for a window that is surely not open yet."""
    return time.strftime("%H:%MZ", time.gmtime(time.time() + offset_seconds))


def seconds_until(lc: RunningServer, bound: str) -> float:
    """Emulated seconds from localcloud's now to the next ``HH:MMZ`` ``bound``."""
    now = datetime.fromisoformat(requests.get(f"{lc.url}/_localcloud/clock", timeout=5).json()["now"])
    opening = now.replace(hour=int(bound[:2]), minute=int(bound[3:5]), second=0, microsecond=0)
    if opening <= now:
        opening += timedelta(days=1)
    return (opening - now).total_seconds()


def refused(fn: Callable[..., object], *args: Any) -> tuple[str, int, str]:
    """``fn(*args)`` must raise the client's ClientException: its code, HTTP status and message."""
    with pytest.raises(ClientException) as caught:
        fn(*args)
    return caught.value.code, caught.value.status_code, caught.value.message
