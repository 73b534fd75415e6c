"""Configuration from environment variables (DESIGN "Configuration"), read and validated once.

A bad value raises ``ConfigError`` naming the variable, so a misconfigured function fails on its
first invocation with a message an operator can act on, not on the first upgrade it tries.

Example::

    config = Config.from_env({"DBUPGRADE_WINDOW": "02:00-05:00 Asia/Shanghai"})
    config.window.contains(datetime.now(timezone.utc))
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, time
from typing import NamedTuple
from urllib.parse import unquote, urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from dbupgrade.engines import ENGINES
from dbupgrade.errors import ConfigError
from dbupgrade.logging import register_secret

REGION_PATTERN = re.compile(r"^[a-z]{2,}(-[a-z0-9]+)+$")
WINDOW_POLICIES = ("reject", "maintenance_window", "allow")
# Endpoint overrides of the services that are not an engine: STS (member accounts' roles) and
# Resource Manager (the directory's accounts), e.g. localcloud's URL (dbupgrade.accounts uses them).
SERVICE_ENDPOINT_VARIABLES = ("DBUPGRADE_STS_ENDPOINT", "DBUPGRADE_RESOURCEMANAGER_ENDPOINT")
ACCOUNT_ID_PATTERN = re.compile(r"^[0-9]{1,32}$")
# The role every member account gives dbupgrade (deploy/member-role.yml creates it).
DEFAULT_MEMBER_ROLE = "dbupgrade-member"
# RAM role names: 1..64 letters, digits, '.' and '-' (RAM CreateRole, help.aliyun.com/document_detail/28710.html).
ROLE_NAME_PATTERN = re.compile(r"^[A-Za-z0-9.-]{1,64}$")
BACKUP_VARIABLE = "DBUPGRADE_BACKUP"
DEFAULT_BACKUP_HOURS = 24  # the automatic backup is daily: yesterday's is enough by default
# FC sets these in every function instance; their absence means "not running in FC".
FC_MARKERS = ("FC_FUNCTION_NAME", "FC_SERVICE_NAME", "FC_FUNC_CODE_PATH", "FC_RUNTIME_VERSION")


class Endpoint(NamedTuple):
    """An endpoint override: host[:port] as tea-openapi wants it, plus the protocol."""

    host: str
    protocol: str  # "http" | "https"

    @property
    def url(self) -> str:
        return f"{self.protocol}://{self.host}"


class Window(NamedTuple):
    """A daily window "HH:MM-HH:MM Zone"; may wrap midnight (22:00-02:00)."""

    start: time
    end: time
    zone: ZoneInfo
    text: str

    @classmethod
    def parse(cls, text: str, variable: str = "DBUPGRADE_WINDOW") -> Window:
        match = re.fullmatch(r"\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s+(\S+)\s*", text)
        if not match:
            raise ConfigError(variable, f"expected 'HH:MM-HH:MM Area/City', got {text!r}")
        h1, m1, h2, m2, zone_name = match.groups()
        try:
            start, end = time(int(h1), int(m1)), time(int(h2), int(m2))
        except ValueError as exc:
            raise ConfigError(variable, f"bad time of day in {text!r}: {exc}") from None
        if start == end:
            raise ConfigError(variable, f"start and end are equal in {text!r}; unset it for 'always'")
        try:
            zone = ZoneInfo(zone_name)
        except (ZoneInfoNotFoundError, ValueError):
            raise ConfigError(variable, f"unknown time zone {zone_name!r}") from None
        return cls(start, end, zone, text.strip())

    def contains(self, moment: datetime) -> bool:
        """Whether the aware datetime ``moment`` falls in the window (start inclusive, end exclusive)."""
        local = moment.astimezone(self.zone).time().replace(tzinfo=None)
        if self.start < self.end:
            return self.start <= local < self.end
        return local >= self.start or local < self.end


class BackupPolicy(NamedTuple):
    """``DBUPGRADE_BACKUP``: which backup an upgrade needs before it is submitted.

    ``fresh:<hours>`` (default ``fresh:24``): a finished backup that recent is enough (the automatic
    daily one), else one is taken first; ``required``: always a new one; ``off``: none (explicit).

    >>> BackupPolicy.parse("fresh:6").max_age_hours, BackupPolicy.parse("required").mode
    (6.0, 'required')
    """

    mode: str = "fresh"  # "fresh" | "required" | "off"
    max_age_hours: float = DEFAULT_BACKUP_HOURS

    @property
    def text(self) -> str:
        return f"fresh:{self.max_age_hours:g}" if self.mode == "fresh" else self.mode

    @classmethod
    def parse(cls, text: str) -> BackupPolicy:
        raw = text.strip().lower()
        if not raw:
            return cls()
        if raw in ("required", "off"):
            return cls(raw)
        kind, sep, hours = raw.partition(":")
        try:
            age = float(hours) if kind == "fresh" and sep else -1.0
        except ValueError:
            age = -1.0
        if not 0 < age <= 24 * 366:
            raise ConfigError(
                BACKUP_VARIABLE, f"expected fresh:<hours> (e.g. fresh:24), required or off, got {text!r}"
            )
        return cls("fresh", age)


def _list(env: Mapping[str, str], variable: str) -> frozenset[str] | None:
    raw = env.get(variable, "").strip()
    if not raw:
        return None
    return frozenset(item.strip() for item in raw.split(",") if item.strip())


def _endpoint(env: Mapping[str, str], variable: str) -> Endpoint | None:
    raw = env.get(variable, "").strip()
    if not raw:
        return None
    if "://" not in raw:
        raw = "https://" + raw
    parts = urlsplit(raw)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(variable, f"expected https://host or http://127.0.0.1:PORT, got {raw!r}")
    if parts.path not in ("", "/") or parts.query:
        raise ConfigError(variable, f"expected no path or query, got {raw!r}")
    try:
        parts.port  # noqa: B018 -- raises ValueError on a bad port
    except ValueError:
        raise ConfigError(variable, f"bad port in {raw!r}") from None
    return Endpoint(parts.netloc, parts.scheme)


# The most hops one multi-hop (MongoDB) upgrade may take (``dbupgrade.hops``): 4.4 -> 7.0 is three.
MAX_HOPS_VARIABLE = "DBUPGRADE_MAX_HOPS"
DEFAULT_MAX_HOPS = 3


# eq=False: a Config is read once per instance and never compared or hashed (its dict fields made it
# unhashable anyway); generating __eq__ and __hash__ over its 21 fields cost cold-start time only.
@dataclass(frozen=True, eq=False)
class Config:
    """The function's settings, read once per instance from its environment (``Config.from_env``)."""

    region: str | None = None
    # Endpoint overrides by their variable (each engine's ``endpoint_variable``), e.g. localcloud's.
    endpoints: Mapping[str, Endpoint] = field(default_factory=dict)
    mns_endpoint: str | None = None
    topic: str | None = None
    rollout_queue: str | None = None
    redis_url: str | None = field(default=None, repr=False)  # may carry the store's password
    state_dir: str | None = None
    allowed_instances: frozenset[str] | None = None
    allowed_regions: frozenset[str] | None = None
    window: Window | None = None
    window_policy: str = "reject"
    idempotency: bool = True
    backup: BackupPolicy = field(default_factory=BackupPolicy)
    fc_endpoint: str | None = None
    in_fc: bool = False
    access_key_id: str | None = field(default=None, repr=False)
    access_key_secret: str | None = field(default=None, repr=False)
    security_token: str | None = field(default=None, repr=False)
    # The account whose credentials run dbupgrade (DBUPGRADE_ACCOUNT_ID, else FC's FC_ACCOUNT_ID):
    # its own instances need no role; every other account's are reached through ``member_role``.
    account_id: str | None = None
    member_role: str = DEFAULT_MEMBER_ROLE
    max_hops: int = DEFAULT_MAX_HOPS

    def endpoint_override(self, variable: str) -> Endpoint | None:
        """The override an engine's ``endpoint_variable`` set, or None (the official endpoint)."""
        return self.endpoints.get(variable)

    def __post_init__(self) -> None:
        # Registered as soon as they are read, so even an error raised while the store or the
        # clients are being built (before any Upgrader exists) is masked wherever it is printed.
        for secret in self.secrets():
            register_secret(secret, pinned=True)

    def secrets(self) -> list[str]:
        """Values that must never appear in a log line, reply or exception message.

        The store's password both as written in the URL (percent-encoded) and decoded, the way
        redis-py and a person would print it.
        """
        store_password = urlsplit(self.redis_url).password if self.redis_url else None
        passwords = (store_password, unquote(store_password)) if store_password else ()
        return [s for s in (self.access_key_secret, self.security_token, *passwords) if s]

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Config:
        env = os.environ if env is None else env
        region = env.get("DBUPGRADE_REGION", "").strip() or None
        if region is not None and not REGION_PATTERN.match(region):
            raise ConfigError("DBUPGRADE_REGION", f"expected a region ID like cn-hangzhou, got {region!r}")
        mns_endpoint = env.get("DBUPGRADE_MNS_ENDPOINT", "").strip() or None
        if mns_endpoint is not None and not mns_endpoint.startswith(("http://", "https://")):
            raise ConfigError(
                "DBUPGRADE_MNS_ENDPOINT", "expected http(s)://{account}.mns.{region}.aliyuncs.com"
            )
        fc_endpoint = env.get("DBUPGRADE_FC_ENDPOINT", "").strip() or None
        if fc_endpoint is not None and not fc_endpoint.startswith(("http://", "https://")):
            raise ConfigError("DBUPGRADE_FC_ENDPOINT", "expected an http(s):// URL")
        redis_url = env.get("DBUPGRADE_REDIS_URL", "").strip() or None
        if redis_url is not None:
            # The URL may carry the store's password: no message here quotes it.
            try:
                store = urlsplit(redis_url)
                store.port  # noqa: B018 -- raises ValueError on a bad port
            except ValueError:
                raise ConfigError("DBUPGRADE_REDIS_URL", "is not a valid URL (host or port)") from None
            if store.scheme not in ("redis", "rediss", "unix"):
                raise ConfigError("DBUPGRADE_REDIS_URL", "expected redis://, rediss:// or unix:// URL")
        window_text = env.get("DBUPGRADE_WINDOW", "").strip()
        window = Window.parse(window_text) if window_text else None
        policy = env.get("DBUPGRADE_WINDOW_POLICY", "").strip() or "reject"
        if policy not in WINDOW_POLICIES:
            raise ConfigError("DBUPGRADE_WINDOW_POLICY", f"must be one of {', '.join(WINDOW_POLICIES)}")
        idempotency_text = env.get("DBUPGRADE_IDEMPOTENCY", "").strip().lower() or "on"
        if idempotency_text not in ("on", "off"):
            raise ConfigError("DBUPGRADE_IDEMPOTENCY", "must be 'on' or 'off' (off must be explicit)")
        regions = _list(env, "DBUPGRADE_ALLOWED_REGIONS")
        for allowed_region in regions or ():
            if not REGION_PATTERN.match(allowed_region):
                raise ConfigError("DBUPGRADE_ALLOWED_REGIONS", f"bad region ID {allowed_region!r}")
        max_hops_text = env.get(MAX_HOPS_VARIABLE, "").strip() or str(DEFAULT_MAX_HOPS)
        if not max_hops_text.isdigit() or int(max_hops_text) < 1:
            raise ConfigError(
                MAX_HOPS_VARIABLE, f"expected a whole number of hops, 1 or more; got {max_hops_text!r}"
            )
        key_id = env.get("ALIBABA_CLOUD_ACCESS_KEY_ID", "").strip() or None
        key_secret = env.get("ALIBABA_CLOUD_ACCESS_KEY_SECRET", "").strip() or None
        if bool(key_id) != bool(key_secret):
            missing = "ALIBABA_CLOUD_ACCESS_KEY_SECRET" if key_id else "ALIBABA_CLOUD_ACCESS_KEY_ID"
            raise ConfigError(missing, "set both the access key ID and secret, or neither")
        account_id = (
            env.get("DBUPGRADE_ACCOUNT_ID", "").strip() or env.get("FC_ACCOUNT_ID", "").strip() or None
        )
        if account_id is not None and not ACCOUNT_ID_PATTERN.match(account_id):
            raise ConfigError(
                "DBUPGRADE_ACCOUNT_ID", f"expected a numeric account ID, got {account_id[:40]!r}"
            )
        member_role = env.get("DBUPGRADE_MEMBER_ROLE", "").strip() or DEFAULT_MEMBER_ROLE
        if not ROLE_NAME_PATTERN.match(member_role):
            raise ConfigError("DBUPGRADE_MEMBER_ROLE", "expected a RAM role name (letters, digits, '.', '-')")
        variables = (*(engine.endpoint_variable for engine in ENGINES.values()), *SERVICE_ENDPOINT_VARIABLES)
        return cls(
            region=region,
            endpoints={
                variable: endpoint
                for variable in variables
                if (endpoint := _endpoint(env, variable)) is not None
            },
            mns_endpoint=mns_endpoint.rstrip("/") if mns_endpoint else None,
            topic=env.get("DBUPGRADE_TOPIC", "").strip() or None,
            rollout_queue=env.get("DBUPGRADE_ROLLOUT_QUEUE", "").strip() or None,
            redis_url=redis_url,
            state_dir=env.get("DBUPGRADE_STATE_DIR", "").strip() or None,
            allowed_instances=_list(env, "DBUPGRADE_ALLOWED_INSTANCES"),
            allowed_regions=regions,
            window=window,
            window_policy=policy,
            idempotency=idempotency_text == "on",
            backup=BackupPolicy.parse(env.get(BACKUP_VARIABLE, "")),
            fc_endpoint=fc_endpoint,
            in_fc=any(env.get(marker) for marker in FC_MARKERS),
            access_key_id=key_id,
            access_key_secret=key_secret,
            security_token=env.get("ALIBABA_CLOUD_SECURITY_TOKEN", "").strip() or None,
            account_id=account_id,
            member_role=member_role,
            max_hops=int(max_hops_text),
        )
