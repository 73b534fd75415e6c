"""Parse and validate one upgrade request from any trigger's decoded data.

Every trigger (timer config, webhook body, queue message, CLI flags) ends up here, so every trigger
refuses the same bad input with the same ``InvalidRequest`` naming the field. Hostile values (a
400-digit number, a 60 KB string) are refused the same way, and an error message quotes at most
``ECHO_CHARS`` of what it refuses, so the rejected outcome, its reply and its notification stay small.

Example::

    request = parse_request({"instance_id": "r-bp1abc", "target_version": "7.0"}, source="webhook",
                            delivery_id="msg_2b1c")
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

from dbupgrade.config import ACCOUNT_ID_PATTERN, REGION_PATTERN
from dbupgrade.engines import ENGINES, engine_for_instance
from dbupgrade.model import EFFECTIVE_VALUES, SOURCES, Effective, InvalidRequest, Source, UpgradeRequest

FIELDS = (
    "instance_id",
    "target_version",
    "engine",
    "region",
    "effective",
    "ticket_id",
    "rollout_id",
    "dry_run",
    "account_id",
)
TICKET_MAX = 128
ECHO_CHARS = 64
REGION_MAX = 64  # the longest region ID today is under 20 characters (cn-shanghai-finance-1)
# A number given as target_version is a major version (7, 7.0): anything this large is not one,
# and turning a 400-digit integer into a float would raise OverflowError instead of naming the field.
VERSION_NUMBER_MAX = 1000

# hub-sha256 senders sign only the body and send no delivery id: a request without a ticket is
# recognised by the body's digest, for a short window. Jira Cloud retries a failed delivery for
# up to 30 minutes (developer.atlassian.com/cloud/jira/platform/webhooks/#retry-policy; "up to 30
# minutes" in Atlassian's announcement of the retry policy), GitHub never redelivers by itself:
# 30 minutes covers every automatic retry, and a person sending the same body again later (after
# fixing what refused it) is a new request.
BODY_DIGEST_PREFIX = "body-sha256:"
BODY_DEDUPE_SECONDS = 30 * 60


def shown(value: Any) -> str:
    """``value`` as an error message quotes it: its repr, cut to ``ECHO_CHARS``.

    >>> shown("cn-" + "x" * 100)
    "'cn-xxxxxxxx'... (103 characters)"
    """
    if isinstance(value, str) and len(value) > ECHO_CHARS:
        return f"{value[:11]!r}... ({len(value)} characters)"
    return repr(value)[:ECHO_CHARS]


def _text(data: Mapping[str, Any], name: str, *, required: bool = False) -> str | None:
    value = data.get(name)
    if value is None:
        if required:
            raise InvalidRequest(name, "is required")
        return None
    if not isinstance(value, str):
        raise InvalidRequest(name, f"must be a string, got {type(value).__name__}")
    value = value.strip()
    if not value:
        if required:
            raise InvalidRequest(name, "is required")
        return None
    return value


def _version(data: Mapping[str, Any]) -> str:
    value = data.get("target_version")
    # JSON and YAML authors write 7.0 or 7; both mean "7.0".
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if not -VERSION_NUMBER_MAX < value < VERSION_NUMBER_MAX:
            raise InvalidRequest("target_version", "is not a major version number")
        return f"{float(value):.1f}"
    text = _text(data, "target_version", required=True)
    assert text is not None
    return text


def parse_request(
    data: Mapping[str, Any],
    *,
    source: str,
    correlation_id: str | None = None,
    delivery_id: str | None = None,
    defaults: Mapping[str, Any] | None = None,
) -> UpgradeRequest:
    """Build a valid ``UpgradeRequest`` or raise ``InvalidRequest`` naming the first bad field.

    ``defaults`` fill fields ``data`` leaves out (e.g. a timer's configured effective).
    """
    if source not in SOURCES:
        raise InvalidRequest("source", "must be one of", allowed=SOURCES)
    if not isinstance(data, Mapping):
        raise InvalidRequest("body", "must be a JSON object")
    unknown = sorted(str(k) for k in data if k not in FIELDS)
    if unknown:
        raise InvalidRequest(unknown[0], f"unknown field(s) {', '.join(unknown)}; allowed", allowed=FIELDS)
    merged: dict[str, Any] = {k: v for k, v in (defaults or {}).items() if k in FIELDS}
    merged.update({k: v for k, v in data.items() if v is not None})

    instance_id = _text(merged, "instance_id", required=True)
    assert instance_id is not None
    engine_name = _text(merged, "engine")
    by_prefix = engine_for_instance(instance_id)
    if engine_name is not None:
        engine_name = engine_name.lower()
        if engine_name not in ENGINES:
            raise InvalidRequest("engine", "unknown engine; allowed", allowed=sorted(ENGINES))
        if by_prefix is not None and by_prefix.name != engine_name:
            raise InvalidRequest(
                "engine", f"{shown(engine_name)} does not match instance_id prefix {by_prefix.id_prefix!r}"
            )
    engine = ENGINES[engine_name] if engine_name else by_prefix
    if engine is None:
        prefixes = [f"{e.id_prefix}... ({e.name})" for e in ENGINES.values()]
        raise InvalidRequest("instance_id", "unrecognised instance ID; expected", allowed=prefixes)
    if not engine.id_pattern.match(instance_id):
        raise InvalidRequest(
            "instance_id", f"not a valid {engine.name} instance ID (pattern {engine.id_pattern.pattern})"
        )

    target_version = _version(merged)
    if target_version not in engine.versions:
        raise InvalidRequest(
            "target_version", f"not a {engine.name} major version; allowed", allowed=engine.versions
        )

    region = _text(merged, "region")
    if region is not None and (len(region) > REGION_MAX or not REGION_PATTERN.match(region)):
        raise InvalidRequest("region", f"expected a region ID like cn-hangzhou, got {shown(region)}")

    effective = _text(merged, "effective")
    if effective is not None and effective not in EFFECTIVE_VALUES:
        raise InvalidRequest("effective", "must be one of", allowed=EFFECTIVE_VALUES)

    ticket_id = merged.get("ticket_id")
    if isinstance(ticket_id, int) and not isinstance(ticket_id, bool):
        if not -(10**TICKET_MAX) < ticket_id < 10**TICKET_MAX:
            raise InvalidRequest("ticket_id", f"must be 1-{TICKET_MAX} printable characters")
        ticket_id = str(ticket_id)  # ticketing systems often number their tickets
    ticket_id = _text({"ticket_id": ticket_id}, "ticket_id")
    if ticket_id is not None and (len(ticket_id) > TICKET_MAX or not ticket_id.isprintable()):
        raise InvalidRequest("ticket_id", f"must be 1-{TICKET_MAX} printable characters")

    rollout_id = _text(merged, "rollout_id")
    if rollout_id is not None and (len(rollout_id) > TICKET_MAX or not rollout_id.isprintable()):
        raise InvalidRequest("rollout_id", f"must be 1-{TICKET_MAX} printable characters")

    account_id = merged.get("account_id")
    if isinstance(account_id, int) and not isinstance(account_id, bool):
        account_id = str(account_id)  # a JSON author may write the 16-digit ID as a number
    account_id = _text({"account_id": account_id}, "account_id")
    if account_id is not None and not ACCOUNT_ID_PATTERN.match(account_id):
        raise InvalidRequest(
            "account_id", f"expected a numeric Alibaba Cloud account ID, got {shown(account_id)}"
        )

    dry_run = merged.get("dry_run", False)
    if not isinstance(dry_run, bool):
        raise InvalidRequest("dry_run", "must be true or false")

    return UpgradeRequest(
        instance_id=instance_id,
        target_version=target_version,
        engine=engine.name,
        region=region,
        effective=cast("Effective | None", effective),
        ticket_id=ticket_id,
        rollout_id=rollout_id,
        dry_run=dry_run,
        source=cast(Source, source),
        correlation_id=correlation_id,
        delivery_id=delivery_id,
        account_id=account_id,
    )
