"""One context shape for FC 2.0, FC 3.0 and local runs, readable by Powertools as a Lambda context.

Powertools (Logger, idempotency) reads ``function_name``, ``aws_request_id`` and
``get_remaining_time_in_millis()``; FC's context has ``request_id`` and ``function.timeout``
instead, and FC 3.0 dropped ``credentials`` and ``service``. Fields are read with ``getattr``
because the documented shapes disagree between runtimes (research function-compute.md §2).

Example::

    ctx = adapt_context(fc_context)        # in a handler
    ctx.aws_request_id == fc_context.request_id
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any, NamedTuple

# Without a context (CLI, tests) an invocation gets this budget: long enough for retries and a
# reconciling describe, short enough that an orphaned idempotency lock frees itself soon.
LOCAL_TIMEOUT_SECONDS = 300


class Credentials(NamedTuple):
    """The access key (and STS token) an invocation's cloud calls sign with.

    A ``NamedTuple`` (immutable, compared and hashed by value): a frozen dataclass would exec its
    generated methods at import, ~0.6 ms of every cold start (bench/NOTES.md).
    """

    access_key_id: str
    access_key_secret: str
    security_token: str | None = None
    # The account the credentials act in, when it is not the own one (a member's assumed role):
    # its calls are rate-limited in that account's buckets (``dbupgrade.ratelimit``).
    account_id: str | None = None

    def __repr__(self) -> str:
        # The secret and the token never show in a repr (a log line, a traceback's locals).
        return f"Credentials(access_key_id={self.access_key_id!r}, account_id={self.account_id!r})"


# eq=False: one context per invocation, never compared: identity is its equality (and a generated
# __eq__ is cold-start time only).
@dataclass(eq=False)
class InvocationContext:
    """The FC invocation's context as the use case reads it, whichever FC version delivered it."""

    function_name: str
    aws_request_id: str
    region: str | None
    account_id: str | None
    credentials: Credentials | None
    service_name: str | None
    memory_limit_in_mb: int
    deadline: float  # time.monotonic() at which the invocation times out
    invoked_function_arn: str = ""

    @property
    def request_id(self) -> str:
        return self.aws_request_id

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self.deadline - time.monotonic()) * 1000))

    def remaining_seconds(self) -> float:
        return max(0.0, self.deadline - time.monotonic())


def _credentials(raw: Any) -> Credentials | None:
    if raw is None:
        return None
    key_id = getattr(raw, "access_key_id", None) or getattr(raw, "accessKeyId", None)
    secret = getattr(raw, "access_key_secret", None) or getattr(raw, "accessKeySecret", None)
    if not key_id or not secret:
        return None
    token = getattr(raw, "security_token", None) or getattr(raw, "securityToken", None)
    return Credentials(str(key_id), str(secret), str(token) if token else None)


def adapt_context(context: Any = None) -> InvocationContext:
    """Wrap an FC 2.0 / FC 3.0 context (or None) for our code and for Powertools."""
    if isinstance(context, InvocationContext):
        return context
    started = time.monotonic()
    if context is None:
        return InvocationContext(
            function_name="dbupgrade-local",
            aws_request_id=str(uuid.uuid4()),
            region=None,
            account_id=None,
            credentials=None,
            service_name=None,
            memory_limit_in_mb=0,
            deadline=started + LOCAL_TIMEOUT_SECONDS,
        )
    function = getattr(context, "function", None)
    service = getattr(context, "service", None)
    remaining = getattr(context, "get_remaining_time_in_millis", None)
    if callable(remaining):
        deadline = started + remaining() / 1000
    else:
        timeout = getattr(function, "timeout", None) or LOCAL_TIMEOUT_SECONDS
        deadline = started + float(timeout)
    name = getattr(function, "name", None) or getattr(context, "function_name", None) or "dbupgrade"
    service_name = getattr(service, "name", None)
    request_id = getattr(context, "request_id", None) or getattr(context, "aws_request_id", None)
    return InvocationContext(
        function_name=f"{service_name}/{name}" if service_name else str(name),
        aws_request_id=str(request_id or uuid.uuid4()),
        region=getattr(context, "region", None),
        account_id=getattr(context, "account_id", None),
        credentials=_credentials(getattr(context, "credentials", None)),
        service_name=service_name,
        memory_limit_in_mb=int(getattr(function, "memory", 0) or 0),
        deadline=deadline,
    )
