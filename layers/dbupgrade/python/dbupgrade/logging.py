"""Structured JSON logs (Powertools Logger) with secrets masked at the formatter.

Every line carries the FC request id and function once an invocation is bound, and the
instance_id / ticket_id of the request being processed. Secret values (access key secrets, STS
tokens, the webhook secret) are registered with ``register_secret`` and replaced by ``***`` in the
final JSON line, whatever path they took into a message.

Example::

    from dbupgrade.logging import logger
    logger.info("submitted", extra={"request_id": rid})
"""

from __future__ import annotations

import logging as std_logging
import os
import threading
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.logging.formatter import LambdaPowertoolsFormatter

MASK = "***"
_secrets: set[str] = set()
_secrets_lock = threading.Lock()


def register_secret(value: str | None) -> None:
    """Never print ``value``: every later log line has it replaced by ``***``."""
    # Short values would mask innocent text (and are not real secrets); ignore them.
    if value and len(value) >= 6:
        with _secrets_lock:
            _secrets.add(value)


def mask(text: str) -> str:
    """``text`` with every registered secret replaced by ``***``."""
    with _secrets_lock:
        secrets = sorted(_secrets, key=len, reverse=True)
    for secret in secrets:
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
