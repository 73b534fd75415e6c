"""The masking formatter's own plain-line path writes Powertools' line byte for byte.

Every line is formatted twice: by ``MaskingFormatter`` and by Powertools' ``LambdaPowertoolsFormatter``
(configured alike, the same record), then compared; a secret in the line is masked either way.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import pytest
from aws_lambda_powertools.logging.formatter import LambdaPowertoolsFormatter
from dbupgrade.logging import MASK, MaskingFormatter, mask, register_secret

SECRET = "plain-line-secret-0123456789"


def _formatters() -> tuple[MaskingFormatter, LambdaPowertoolsFormatter]:
    ours, theirs = MaskingFormatter(), LambdaPowertoolsFormatter()
    for formatter in (ours, theirs):
        formatter.append_keys(service="dbupgrade", sampling_rate=None)
    return ours, theirs


def _record(
    msg: Any, args: tuple[Any, ...] = (), extra: dict[str, Any] | None = None, **kw: Any
) -> logging.LogRecord:
    logger = logging.getLogger("plain-line-test")
    return logger.makeRecord(
        logger.name, logging.INFO, __file__, 42, msg, args, kw.get("exc_info"), "emit", extra
    )


def _exc_info() -> Any:
    try:
        raise ValueError("boom")
    except ValueError:
        return sys.exc_info()


CASES = [
    ("outcome", (), {"outcome": {"event": "upgrade.submitted", "reason": None, "n": [1, 2.5, True]}}),
    ("webhook reply", (), {"method": "POST", "path": "/upgrades", "status": 202, "none": None}),
    ("notification published", (), {"event": "upgrade.submitted", "message_id": "06954939A2CE"}),
    ("naïve ünïcode ✓ line", (), {"set": {1}, "obj": object.__new__(type("Opaque", (), {}))}),
    ("  leading space", (), None),
    ("", (), None),
    ("null", (), None),
    ("true", (), None),
    ("123", (), None),
    ('{"already": "json"}', (), None),
    (" [1, 2]", (), None),
    ("Infinity", (), None),
    ("-5", (), None),
    ("%s and %d", ("args", 3), None),
    (f"quoted {SECRET} in the message", (), {"error": f"was {SECRET}"}),
    ("with exception fields given", (), {"exception": "given", "exception_name": "Given"}),
    ("with a stack_trace extra", (), {"stack_trace": "dropped by Powertools"}),
]


@pytest.mark.parametrize(("msg", "args", "extra"), CASES)
def test_the_line_is_powertools_line(msg: Any, args: tuple[Any, ...], extra: dict[str, Any] | None) -> None:
    register_secret(SECRET, pinned=True)
    ours, theirs = _formatters()
    record = _record(msg, args, extra)
    line = ours.format(record)
    assert line == mask(theirs.format(record))
    assert SECRET not in line
    if SECRET in str(msg):
        assert MASK in line


def test_a_dict_message_and_an_exception_are_powertools_lines() -> None:
    ours, theirs = _formatters()
    for record in (_record({"a": 1}), _record("failed", exc_info=_exc_info())):
        assert ours.format(record) == mask(theirs.format(record))


def test_the_thread_keys_and_the_xray_trace_are_written(monkeypatch: pytest.MonkeyPatch) -> None:
    ours, theirs = _formatters()
    ours.thread_safe_append_keys(fc_request_id="req-1", instance_id="r-bp1", ticket_id=None)
    try:
        monkeypatch.setenv("_X_AMZN_TRACE_ID", "Root=1-abc;Parent=def;Sampled=1")
        record = _record("outcome", extra={"status": 1})
        line = ours.format(record)
        assert line == mask(theirs.format(record))
        assert '"fc_request_id":"req-1"' in line and '"xray_trace_id":"1-abc"' in line
    finally:
        ours.thread_safe_remove_keys(["fc_request_id", "instance_id", "ticket_id"])


def test_the_milliseconds_and_the_second_follow_each_record() -> None:
    ours, theirs = _formatters()
    for created in (1_700_000_000.0005, 1_700_000_000.9999, 1_700_000_001.25, 1_700_000_000.5):
        record = _record("tick")
        record.created, record.msecs = created, (created - int(created)) * 1000
        assert ours.format(record) == mask(theirs.format(record))
