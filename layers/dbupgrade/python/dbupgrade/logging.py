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

import json
import logging as std_logging
import os
import threading
import time
from collections import OrderedDict
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.logging.formatter import (
    RESERVED_LOG_ATTRS,
    LambdaPowertoolsFormatter,
    _get_context,
)
from aws_lambda_powertools.shared.constants import XRAY_TRACE_ID_ENV

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


# The first characters a JSON document can start with (CPython's scanner: string, object, array,
# null, true, false, NaN, Infinity, a number or -Infinity), after the whitespace it skips.
_JSON_STARTS = frozenset('"{[ntfNI-0123456789')
_JSON_WHITESPACE = " \t\n\r"
# Powertools' reserved record attributes (a tuple there, looked up per key of every line).
_RESERVED = frozenset(RESERVED_LOG_ATTRS)


class MaskingFormatter(LambdaPowertoolsFormatter):
    """Powertools' JSON line, byte for byte, then masked.

    A plain line (a str message with no %-args and no exception: every line on a request's path)
    is built here with Powertools' own keys, order and values but less work per line: no JSON-decode
    attempt of a message that cannot be JSON (Powertools tries ``json.loads`` on every str message
    and catches the error), the timestamp's second formatted once per second, and one encoder made
    once instead of one per ``json.dumps`` call. Any other line (args, an exception, a dict or JSON
    message, a non-default time format or serializer) goes to Powertools' ``format`` as is.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        # The very encoder Powertools' default serializer builds on each call (json.dumps with
        # these arguments), made once.
        self._encode = json.JSONEncoder(
            default=self.json_default, separators=(",", ":"), indent=self.json_indent, ensure_ascii=False
        ).encode
        self._plain_lines = not kwargs and not self.use_rfc3339_iso8601 and self.datefmt is None
        self._second: tuple[int, str, str] = (-1, "", "")

    def format(self, record: std_logging.LogRecord) -> str:
        if self._plain_lines and record.exc_info is None and not record.args and type(record.msg) is str:
            first = record.msg.lstrip(_JSON_WHITESPACE)[:1]
            if first and first not in _JSON_STARTS:
                return mask(self._plain_line(record))
        return mask(super().format(record))

    def _plain_line(self, record: std_logging.LogRecord) -> str:
        """``LambdaPowertoolsFormatter.format`` for a record ``format`` let through (same steps,
        same order: the format's keys, the thread's keys, the record's extras; None dropped)."""
        record_dict = record.__dict__.copy()
        record_dict["asctime"] = self._timestamp(record)
        line: dict[str, Any] = {}
        for keys in (self.log_format, _get_context().get()):
            for key, value in keys.items():
                if value and key in _RESERVED:
                    if not isinstance(value, str):  # Powertools refuses it: let it say so
                        return str(super().format(record))
                    line[key] = value % record_dict
                else:
                    line[key] = value
        for key, value in record_dict.items():
            if key not in _RESERVED:
                line[key] = value
        line["message"] = record.msg
        for key in ("exception", "exception_name", "exception_notes"):
            line[key] = line.get(key)
        if self.serialize_stacktrace:
            line["stack_trace"] = None  # no exception on this path
        trace = os.environ.get(XRAY_TRACE_ID_ENV)
        xray_disabled = self.log_format.get("xray_trace_id", "") is None
        line["xray_trace_id"] = (
            None if xray_disabled or not trace else trace.split(";")[0].replace("Root=", "")
        )
        return str(self._encode({k: v for k, v in line.items() if v is not None}))

    def _timestamp(self, record: std_logging.LogRecord) -> str:
        """Powertools' default ``formatTime`` ('2021-04-17 18:19:57,656+0200'): the parts before and
        after the milliseconds formatted once per second of ``record.created``."""
        second = int(record.created)
        cached, before, after = self._second
        if cached != second:
            moment = self.converter(record.created)
            head, tail = self.default_time_format.split(self.custom_ms_time_directive)
            before, after = time.strftime(head, moment), time.strftime(tail, moment)
            self._second = (second, before, after)
        return f"{before}{int(record.msecs):03d}{after}"  # Powertools' '%03d' % msecs


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
