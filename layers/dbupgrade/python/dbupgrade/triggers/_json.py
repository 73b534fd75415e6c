"""Defensive JSON decoding shared by the parsers: hostile input becomes ``InvalidRequest``, nothing else."""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from dbupgrade.model import InvalidRequest

# What a rejected message keeps of its raw body: enough to recognise it, never a whole payload.
RAW_EXCERPT_CHARS = 512


def as_text(data: bytes | bytearray | str, field: str) -> str:
    """FC hands Python 3 handlers ``bytes``; local callers may pass ``str``."""
    if isinstance(data, str):
        return data
    try:
        return bytes(data).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidRequest(field, f"is not UTF-8 text (byte {exc.start})") from None


def loads(text: str, field: str) -> Any:
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as exc:  # RecursionError: absurdly nested input
        raise InvalidRequest(field, f"is not valid JSON ({type(exc).__name__})") from None


def loads_object(text: str, field: str) -> dict[str, Any]:
    value = loads(text, field)
    if not isinstance(value, dict):
        raise InvalidRequest(field, f"must be a JSON object, got {type(value).__name__}")
    return value


def loads_body(text: str, field: str) -> dict[str, Any]:
    """A message body: a JSON object, or the same base64-encoded (EventBridge ``IsBase64Decode``,
    ``Base64TopicMessage``): deliveries are seen both ways, so decode defensively."""
    try:
        return loads_object(text, field)
    except InvalidRequest as not_json:
        stripped = text.strip()
        if not stripped or stripped[0] in '{["':
            raise
        try:
            decoded = base64.b64decode(stripped, validate=True).decode("utf-8")
        except (binascii.Error, ValueError):
            raise not_json from None
        return loads_object(decoded, field)


def excerpt(text: str) -> str:
    return text if len(text) <= RAW_EXCERPT_CHARS else text[:RAW_EXCERPT_CHARS] + "..."
