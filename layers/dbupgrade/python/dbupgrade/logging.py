"""Structured JSON logs (Powertools Logger) with secrets masked at the formatter.

Every line carries the FC request id and function once an invocation is bound, and the
instance_id / ticket_id of the request being processed. Secret values (access key secrets, STS
tokens, the webhook secret, the store's password) are registered with ``register_secret`` and
replaced by ``***`` in the final JSON line, whatever path they took into a message.

The set stays bounded in a long-lived warm instance: configuration secrets are pinned (a handful,
read once), while credentials that rotate (STS tokens every hour or so) go to a least-recently
registered list of ``ROTATING_SECRETS_MAX``; the oldest is forgotten when a new one arrives, long
after it expired.

Example::

    from dbupgrade.logging import logger
    logger.info("submitted", extra={"request_id": rid})
"""

from __future__ import annotations

import logging as std_logging
import os
import threading
from collections import OrderedDict
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.logging.formatter import LambdaPowertoolsFormatter

MASK = "***"
SECRET_MIN_CHARS = 6  # shorter values would mask innocent text (and are not real secrets)
# An STS token lives an hour or more and each brings two values (key secret, token): 64 entries
# cover a day and more of rotations in one warm instance, and cost microseconds per line.
ROTATING_SECRETS_MAX = 64
_pinned: set[str] = set()
_rotating: OrderedDict[str, None] = OrderedDict()
_secrets_lock = threading.Lock()
# Longest first, rebuilt when the set changes (rarely: a rotation) rather than sorted on every line.
_by_length: tuple[str, ...] = ()


def register_secret(value: str | None, *, pinned: bool = False) -> None:
    """Never print ``value``: every later log line has it replaced by ``***``.

    ``pinned``: a configuration secret, kept for the life of the process; otherwise the value is
    a rotating credential, registered again on each use, and forgotten once
    ``ROTATING_SECRETS_MAX`` newer ones were registered.
    """
    global _by_length
    if not value or len(value) < SECRET_MIN_CHARS:
        return
    with _secrets_lock:
        known = value in _pinned or value in _rotating
        if pinned:
            _pinned.add(value)
            _rotating.pop(value, None)
        elif value not in _pinned:
            _rotating[value] = None
            _rotating.move_to_end(value)
            while len(_rotating) > ROTATING_SECRETS_MAX:
                _rotating.popitem(last=False)
        if not known:  # a new value (and perhaps one forgotten): the members changed
            _by_length = tuple(sorted((*_pinned, *_rotating), key=len, reverse=True))


def registered_secrets() -> int:
    """How many values are masked now (pinned and rotating)."""
    with _secrets_lock:
        return len(_pinned) + len(_rotating)


def mask(text: str) -> str:
    """``text`` with every registered secret replaced by ``***``."""
    for secret in _by_length:
        if secret in text:
            text = text.replace(secret, MASK)
    return text


class MaskingFormatter(LambdaPowertoolsFormatter):
    def format(self, record: std_logging.LogRecord) -> str:
        return mask(super().format(record))


logger = Logger(
    service=os.environ.get("POWERTOOLS_SERVICE_NAME", "dbupgrade"),
    logger_formatter=MaskingFormatter(),
)


# Thread-local keys: requests handled concurrently (the local server's thread pool, FC instance
# concurrency) must not tag each other's lines with their ids.
def bind_invocation(context: Any) -> None:
    """Add the invocation's keys (FC request id, function) to every following line of this thread,
    and drop the request keys a previous invocation of this warm instance left bound."""
    logger.thread_safe_append_keys(
        fc_request_id=getattr(context, "aws_request_id", None),
        function=getattr(context, "function_name", None),
        instance_id=None,
        ticket_id=None,
    )


def bind_request(instance_id: str | None, ticket_id: str | None) -> None:
    logger.thread_safe_append_keys(instance_id=instance_id, ticket_id=ticket_id)
