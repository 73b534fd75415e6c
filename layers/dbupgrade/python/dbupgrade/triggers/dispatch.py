"""Sending the scheduler's fan-out: one async invocation of the rollout function per target
(aliyun-fc2), or one message per target on the rollout topic (aliyun-mns-sdk).

Both SDKs are imported only when a timer actually fans out, so they cost the other functions nothing.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import NamedTuple

from dbupgrade.config import Config
from dbupgrade.context import Credentials, InvocationContext
from dbupgrade.errors import ConfigError
from dbupgrade.logging import logger, mask, register_secret

FC_TIMEOUT_SECONDS = 10  # an async invoke is accepted (202) in milliseconds; don't wait the SDK's 60 s
MNS_TIMEOUT_SECONDS = 5
ROLLOUT_FUNCTION_VARIABLE = "DBUPGRADE_ROLLOUT_FUNCTION"  # "service/function"; default <this service>/rollout
ROLLOUT_MESSAGE_TAG = "rollout"


class Dispatch(NamedTuple):
    """One fan-out message: where it was sent and the id the platform gave it (or why it failed).

    A ``NamedTuple`` (immutable, compared by value): a frozen dataclass execs its generated methods
    at import, ~0.5-1 ms of every cold start (bench/NOTES.md).
    """

    delivery_id: str
    instance_id: str
    sent: bool
    id: str | None = None  # FC request id of the async invocation, or MNS message id
    error: str | None = None


def rollout_function(context: InvocationContext, env: dict[str, str] | None = None) -> tuple[str, str]:
    """The (service, function) the scheduler fans out to."""
    raw = (env if env is not None else os.environ).get(ROLLOUT_FUNCTION_VARIABLE, "").strip()
    if raw:
        service, _, function = raw.partition("/")
        if not service or not function:
            raise ConfigError(ROLLOUT_FUNCTION_VARIABLE, f"expected service/function, got {raw!r}")
        return service, function
    # FC 3.0 has no services: a function name alone is addressed under the default service name.
    return context.service_name or "dbupgrade", "rollout"


def send_to_function(
    payloads: Sequence[tuple[str, str, bytes]],
    *,
    config: Config,
    context: InvocationContext,
    credentials: Credentials,
) -> list[Dispatch]:
    """Invoke the rollout function asynchronously once per ``(delivery_id, instance_id, payload)``."""
    import fc2  # only on the fan-out path

    endpoint = config.fc_endpoint or _default_fc_endpoint(context)
    service, function = rollout_function(context)
    register_secret(credentials.access_key_secret)
    register_secret(credentials.security_token)
    client = fc2.Client(
        endpoint=endpoint,
        accessKeyID=credentials.access_key_id,
        accessKeySecret=credentials.access_key_secret,
        securityToken=credentials.security_token or "",
        Timeout=FC_TIMEOUT_SECONDS,
    )
    results = []
    for delivery_id, instance_id, payload in payloads:
        try:
            headers = {"x-fc-invocation-type": "Async"}
            reply = client.invoke_function(service, function, payload=payload, headers=headers)
            request_id = reply.headers.get("X-Fc-Request-Id") or reply.headers.get("x-fc-request-id")
            results.append(Dispatch(delivery_id, instance_id, True, id=request_id))
        except Exception as exc:  # fc2 raises FcError, requests' errors, and JSONDecodeError on odd bodies
            results.append(Dispatch(delivery_id, instance_id, False, error=_describe(exc)))
    return results


def send_to_topic(
    payloads: Sequence[tuple[str, str, bytes]],
    *,
    config: Config,
    context: InvocationContext,
    credentials: Credentials,
    mns_endpoint: str | None,
) -> list[Dispatch]:
    """Publish one message per target on DBUPGRADE_ROLLOUT_QUEUE (the topic pushing to rollout)."""
    if not config.rollout_queue:
        raise ConfigError("DBUPGRADE_ROLLOUT_QUEUE", "is required for a topic fan-out")
    if not mns_endpoint:
        raise ConfigError("DBUPGRADE_MNS_ENDPOINT", "is required for a topic fan-out outside FC")
    from mns.account import Account
    from mns.topic import TopicMessage

    register_secret(credentials.access_key_secret)
    register_secret(credentials.security_token)
    account = Account(
        mns_endpoint,
        credentials.access_key_id,
        credentials.access_key_secret,
        credentials.security_token or "",
    )
    account.get_client().set_connection_timeout(MNS_TIMEOUT_SECONDS)
    topic = account.get_topic(config.rollout_queue)
    results = []
    for delivery_id, instance_id, payload in payloads:
        try:
            reply = topic.publish_message(TopicMessage(payload.decode(), ROLLOUT_MESSAGE_TAG))
            results.append(Dispatch(delivery_id, instance_id, True, id=getattr(reply, "message_id", None)))
        except Exception as exc:  # the MNS SDK raises its own exceptions and socket errors alike
            results.append(Dispatch(delivery_id, instance_id, False, error=_describe(exc)))
    return results


def _default_fc_endpoint(context: InvocationContext) -> str:
    if not (context.account_id and context.region):
        raise ConfigError(
            "DBUPGRADE_FC_ENDPOINT", "is required outside FC (no account or region to derive it)"
        )
    return f"https://{context.account_id}.{context.region}.fc.aliyuncs.com"


def _describe(exc: Exception) -> str:
    code = getattr(exc, "err_code", None)  # FcError carries the platform's error code
    detail = f"{type(exc).__name__}{f' {code}' if code else ''}: {mask(str(exc))[:300]}"
    logger.warning("fan-out send failed", extra={"error": detail})
    return detail
