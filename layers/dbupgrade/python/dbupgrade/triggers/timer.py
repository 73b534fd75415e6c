"""Timer trigger: ``{"triggerTime", "triggerName", "payload"}`` where ``payload`` is the JSON string
configured on the trigger (template.yml ``Events.<name>.Properties.Payload``).

Payload::

    {"upgrades": [{"instance_id": "r-bp1...", "target_version": "7.0", ...}],   # explicit targets
     "select": {"engine": "redis", "tags": {"env": "prod"}, "regions": ["cn-hangzhou"],
                "from_versions": ["5.0", "6.0"],                                 # or a fleet selector
                "accounts": ["2000000000000002"]},       # or "all_accounts": true (default: own account)
     "target_version": "7.0",                 # or per engine: {"redis": "7.0", "mongodb": "7.0"}
     "effective": "maintenance_window", "window": "02:00-05:00 Asia/Shanghai",
     "inline_limit": 5,                       # more targets than this fan out, one message each
     "fanout": "function",                    # "function" (FC async invoke) or "topic" (MNS)
     "rollout_id": "redis-7-wave-1"}          # default: trigger name + trigger time

A selector without ``regions`` scans every region the product serves (its DescribeRegions). With
``accounts`` (member account IDs, reached through DBUPGRADE_MEMBER_ROLE) or ``all_accounts`` (the
Resource Directory's ListAccounts, the own account included) it selects in each account as the CLI's
``--account`` / ``--all-accounts`` do; a member whose role is missing is reported, the rest go on.

A payload invoked by hand (no ``triggerTime`` envelope) is accepted as the payload itself.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, NamedTuple

from dbupgrade.config import ACCOUNT_ID_PATTERN, Window
from dbupgrade.errors import ConfigError
from dbupgrade.model import InvalidRequest
from dbupgrade.triggers._json import as_text, loads, loads_object

PAYLOAD_KEYS = (
    "upgrades",
    "select",
    "target_version",
    "effective",
    "window",
    "inline_limit",
    "fanout",
    "rollout_id",
)
SELECT_KEYS = ("engine", "tags", "regions", "from_versions", "accounts", "all_accounts")
FANOUT_MODES = ("function", "topic")
DEFAULT_INLINE_LIMIT = 5
MAX_INLINE_LIMIT = 100  # an FC invocation has minutes, not hours: past this, fan out
MAX_UPGRADES = 10_000
_ROLLOUT_ID_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


class Selector(NamedTuple):
    """Which instances of the fleet a timer upgrades (all given criteria must match).

    A ``NamedTuple`` (immutable, compared by value): a frozen dataclass execs its generated methods
    at import, ~0.5-1 ms of every cold start (bench/NOTES.md).
    """

    engine: str | None = None
    tags: Mapping[str, str] = MappingProxyType({})
    regions: tuple[str, ...] = ()
    from_versions: tuple[str, ...] = ()
    accounts: tuple[str, ...] = ()  # member accounts (none: the own account alone)
    all_accounts: bool = False  # every account of the Resource Directory

    def to_dict(self) -> dict[str, Any]:
        return {
            "engine": self.engine,
            "tags": dict(self.tags),
            "regions": list(self.regions),
            "from_versions": list(self.from_versions),
        }


class TimerPlan(NamedTuple):
    """What a timer trigger's payload asks for: a rollout of listed upgrades or of a selection.

    A ``NamedTuple`` (immutable, compared by value): a frozen dataclass execs its generated methods
    at import, ~0.5-1 ms of every cold start (bench/NOTES.md).
    """

    trigger_name: str
    trigger_time: str | None
    rollout_id: str
    upgrades: tuple[dict[str, Any], ...] = ()
    select: Selector | None = None
    target_version: str | None = None
    targets_by_engine: Mapping[str, str] = MappingProxyType({})
    effective: str | None = None
    window: str | None = None
    inline_limit: int = DEFAULT_INLINE_LIMIT
    fanout: str = "function"

    def target_for(self, engine: str | None) -> str | None:
        """The payload's target version for an engine (per-engine map first, then the single one)."""
        if engine is not None and engine in self.targets_by_engine:
            return self.targets_by_engine[engine]
        return self.target_version

    def defaults(self) -> dict[str, Any]:
        """Fields every request of this plan inherits unless the entry sets its own."""
        defaults: dict[str, Any] = {"rollout_id": self.rollout_id}
        if self.effective is not None:
            defaults["effective"] = self.effective
        return defaults


def parse_timer_event(event: bytes | bytearray | str) -> TimerPlan:
    """Decode a Timer trigger event (or a bare payload); raises ``InvalidRequest`` naming the field."""
    envelope = loads_object(as_text(event, "event"), "event")
    if "payload" in envelope or "triggerName" in envelope or "triggerTime" in envelope:
        trigger_name = _optional_str(envelope, "triggerName") or "timer"
        trigger_time = _optional_str(envelope, "triggerTime")
        raw_payload = envelope.get("payload")
        if isinstance(raw_payload, str):
            if not raw_payload.strip():
                raise InvalidRequest("payload", "is empty: set the timer's Payload to upgrades or select")
            payload = loads(raw_payload, "payload")
        else:
            payload = raw_payload
        if not isinstance(payload, dict):
            raise InvalidRequest("payload", "must be a JSON object with upgrades or select")
    else:
        trigger_name, trigger_time, payload = "manual", None, envelope
    return _plan(payload, trigger_name, trigger_time)


def _plan(payload: dict[str, Any], trigger_name: str, trigger_time: str | None) -> TimerPlan:
    unknown = sorted(str(key) for key in payload if key not in PAYLOAD_KEYS)
    if unknown:
        raise InvalidRequest(f"payload.{unknown[0]}", "is not a known field; known fields are", PAYLOAD_KEYS)
    upgrades = _upgrades(payload.get("upgrades"))
    select = _selector(payload.get("select"))
    if not upgrades and select is None:
        raise InvalidRequest("payload", "needs a non-empty upgrades list or a select object")
    target_version, targets_by_engine = _targets(payload.get("target_version"))
    if select is not None and target_version is None and not targets_by_engine:
        raise InvalidRequest("payload.target_version", "is required with select")
    rollout_id = _optional_str(payload, "rollout_id", prefix="payload.") or _default_rollout_id(
        trigger_name, trigger_time
    )
    return TimerPlan(
        trigger_name=trigger_name,
        trigger_time=trigger_time,
        rollout_id=rollout_id,
        upgrades=upgrades,
        select=select,
        target_version=target_version,
        targets_by_engine=targets_by_engine,
        effective=_optional_str(payload, "effective", prefix="payload."),
        window=_window(payload),
        inline_limit=_inline_limit(payload.get("inline_limit", DEFAULT_INLINE_LIMIT)),
        fanout=_fanout(payload.get("fanout", "function")),
    )


def _upgrades(value: Any) -> tuple[dict[str, Any], ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise InvalidRequest("payload.upgrades", "must be a list of objects")
    if len(value) > MAX_UPGRADES:
        raise InvalidRequest("payload.upgrades", f"has {len(value)} entries; at most {MAX_UPGRADES}")
    for index, entry in enumerate(value):
        if not isinstance(entry, dict):
            raise InvalidRequest(f"payload.upgrades[{index}]", "must be an object")
    return tuple(dict(entry) for entry in value)


def _selector(value: Any) -> Selector | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise InvalidRequest("payload.select", "must be an object")
    unknown = sorted(str(key) for key in value if key not in SELECT_KEYS)
    if unknown:
        known = SELECT_KEYS
        raise InvalidRequest(f"payload.select.{unknown[0]}", "is not a known field; known fields are", known)
    engine = _optional_str(value, "engine", prefix="payload.select.")
    tags = value.get("tags") or {}
    if not isinstance(tags, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in tags.items()
    ):
        raise InvalidRequest("payload.select.tags", "must be an object of string keys and string values")
    accounts = _string_list(value.get("accounts"), "payload.select.accounts")
    for account in accounts:
        if not ACCOUNT_ID_PATTERN.match(account):
            raise InvalidRequest(
                "payload.select.accounts", f"expected numeric account IDs, got {account[:40]!r}"
            )
    all_accounts = value.get("all_accounts", False)
    if not isinstance(all_accounts, bool):
        raise InvalidRequest("payload.select.all_accounts", "must be true or false")
    if accounts and all_accounts:
        raise InvalidRequest("payload.select.accounts", "give accounts or all_accounts, not both")
    return Selector(
        engine=engine,
        tags=dict(tags),
        regions=_string_list(value.get("regions"), "payload.select.regions"),
        from_versions=_string_list(value.get("from_versions"), "payload.select.from_versions"),
        accounts=accounts,
        all_accounts=all_accounts,
    )


def _targets(value: Any) -> tuple[str | None, dict[str, str]]:
    if value is None:
        return None, {}
    if isinstance(value, str) and value.strip():
        return value.strip(), {}
    if (
        isinstance(value, dict)
        and value
        and all(isinstance(k, str) and k and isinstance(v, str) and v.strip() for k, v in value.items())
    ):
        return None, {k: v.strip() for k, v in value.items()}
    raise InvalidRequest(
        "payload.target_version", 'must be a version string or an object per engine, e.g. {"redis": "7.0"}'
    )


def _window(payload: dict[str, Any]) -> str | None:
    text = _optional_str(payload, "window", prefix="payload.")
    if text is not None:
        try:
            Window.parse(text, "payload.window")
        except ConfigError as error:
            raise InvalidRequest("payload.window", str(error).split(": ", 1)[1]) from None
    return text


def _inline_limit(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_INLINE_LIMIT:
        raise InvalidRequest("payload.inline_limit", f"must be an integer from 0 to {MAX_INLINE_LIMIT}")
    return value


def _fanout(value: Any) -> str:
    if value not in FANOUT_MODES:
        raise InvalidRequest("payload.fanout", "must be one of", FANOUT_MODES)
    return str(value)


def _string_list(value: Any, name: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(item, str) and item for item in value):
        raise InvalidRequest(name, "must be a list of strings")
    return tuple(value)


def _optional_str(data: Mapping[str, Any], key: str, prefix: str = "") -> str | None:
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise InvalidRequest(prefix + key, "must be a non-empty string")
    return value.strip()


def _default_rollout_id(trigger_name: str, trigger_time: str | None) -> str:
    # Deterministic per firing: FC retries an async (timer) invocation with the same event, and the
    # same rollout id keeps the retry on the same idempotency keys.
    raw = f"{trigger_name}-{trigger_time}" if trigger_time else trigger_name
    return _ROLLOUT_ID_UNSAFE.sub("-", raw)[:128]
