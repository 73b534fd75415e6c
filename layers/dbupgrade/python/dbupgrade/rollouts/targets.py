"""Where a rollout's targets come from: a manifest file (CSV, JSON or YAML) or a fleet selector.

Every target is validated with the same ``parse_request`` the functions use, so a bad row stops
the rollout before anything is released, with an error naming the row and the field.

Manifest rows: ``instance_id``, ``target_version``, optional ``engine``, ``region``, ``effective``,
``ticket_id``, ``account_id`` (a member account, reached through its role). JSON / YAML: a list of
rows, or ``{"targets": [...]}``.

``select_locations`` selects across accounts and regions (the locations): a location whose fleet
cannot be listed because of its configuration (the member's role missing or untrusting) is reported
as unreachable, and the other locations go on. A selector that names no region scans every region
the product serves, asked per account with the product's own ``DescribeRegions``.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dbupgrade.cloudapi import CloudError
from dbupgrade.context import adapt_context
from dbupgrade.engines import ENGINES, dig
from dbupgrade.model import InvalidRequest
from dbupgrade.request import parse_request
from dbupgrade.rollouts.model import TARGET_FIELDS
from dbupgrade.usecase import Upgrader

# Where DescribeRegions is asked when neither DBUPGRADE_REGION nor the function's region is known
# (the products' central endpoint serves it: their SDKs' endpoint maps).
DEFAULT_REGION = "cn-hangzhou"
# The region of an unreachable location whose regions could not even be asked: all of them.
ALL_REGIONS = "*"


def load_manifest(path: Path) -> list[dict[str, Any]]:
    """The rows of a manifest file, validated; the format follows the file's suffix."""
    text = path.read_text(encoding="utf-8-sig")  # Excel's "CSV UTF-8" starts with a BOM
    suffix = path.suffix.lower()
    if suffix == ".csv":
        reader = csv.DictReader(io.StringIO(text))
        header = [name.strip() for name in reader.fieldnames or []]
        if header and not {"instance_id", "target_version"} <= set(header):
            raise InvalidRequest(
                "manifest",
                f"the CSV's first line must be its header, e.g. 'instance_id,target_version' (columns: "
                f"{','.join(TARGET_FIELDS)}); it is {','.join(header)!r}: add the header line",
            )
        rows: Any = [dict(row) for row in reader]
    elif suffix == ".json":
        try:
            rows = json.loads(text)
        except ValueError as exc:
            raise InvalidRequest("manifest", f"is not valid JSON ({exc})") from None
    elif suffix in (".yaml", ".yml"):
        try:
            import yaml  # PyYAML: only for YAML manifests
        except ImportError:
            raise InvalidRequest(
                "manifest", "YAML needs PyYAML (pip install PyYAML); or use CSV/JSON"
            ) from None
        try:
            rows = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise InvalidRequest("manifest", f"is not valid YAML ({type(exc).__name__})") from None
    else:
        raise InvalidRequest("manifest", "must end in", allowed=[".csv", ".json", ".yaml", ".yml"])
    if isinstance(rows, Mapping):
        rows = rows.get("targets")
    if not isinstance(rows, list):
        raise InvalidRequest("manifest", "must be a list of targets (or an object with a targets list)")
    return validate_targets(rows)


def validate_targets(rows: Sequence[Any], *, effective: str | None = None) -> list[dict[str, Any]]:
    """Each row checked as an upgrade request (``effective`` fills rows that leave it out)."""
    if not rows:
        raise InvalidRequest("manifest", "has no targets")
    targets: list[dict[str, Any]] = []
    seen: set[str] = set()
    for number, row in enumerate(rows, start=1):
        if not isinstance(row, Mapping):
            raise InvalidRequest(f"row {number}", "must be an object with instance_id and target_version")
        # CSV leaves optional columns as empty strings; they mean "not set".
        data = {str(k).strip(): v for k, v in row.items() if k is not None and v not in ("", None)}
        unknown = sorted(set(data) - set(TARGET_FIELDS))
        if unknown:
            raise InvalidRequest(
                f"row {number}.{unknown[0]}", "is not a manifest column; allowed", TARGET_FIELDS
            )
        defaults = {"effective": effective} if effective else None
        try:
            request = parse_request(data, source="cli", defaults=defaults)
        except InvalidRequest as error:
            raise InvalidRequest(f"row {number}.{error.field}", error.reason, error.allowed) from None
        if request.instance_id in seen:
            raise InvalidRequest(f"row {number}.instance_id", f"{request.instance_id} is listed twice")
        seen.add(request.instance_id)
        fields = {name: getattr(request, name) for name in TARGET_FIELDS}
        targets.append({k: v for k, v in fields.items() if v is not None})
    return targets


def select_targets(
    upgrader: Upgrader,
    selector: Mapping[str, Any],
    targets_by_engine: Mapping[str, str],
    *,
    effective: str | None = None,
    context: Any = None,
) -> list[dict[str, Any]]:
    """The fleet slice a selector names (``Upgrader.select``), each with its engine's target version.

    ``selector``: ``{"engine", "tags", "regions", "from_versions"}``; ``targets_by_engine``:
    ``{"redis": "7.0", "mongodb": "7.0"}`` - only engines with a target are listed.
    """
    rows = _select_rows(upgrader, selector, targets_by_engine, context)
    if not rows:
        raise InvalidRequest("select", "matches no instance")
    return validate_targets(rows, effective=effective)


def _engines(selector: Mapping[str, Any], targets_by_engine: Mapping[str, str]) -> list[str]:
    """The engines a selector scans: its engine, else every engine given a target version."""
    if not targets_by_engine:
        raise InvalidRequest("target", "name a target version per engine, e.g. redis=7.0")
    unknown = sorted(set(targets_by_engine) - set(ENGINES))
    if unknown:
        raise InvalidRequest("target", f"unknown engine {unknown[0]!r}; allowed", allowed=sorted(ENGINES))
    engine = selector.get("engine")
    engines = [str(engine)] if engine else sorted(targets_by_engine)
    for name in engines:
        if name not in targets_by_engine:
            raise InvalidRequest("target", f"no target version for the selected engine {name}")
    return engines


def _select_rows(
    upgrader: Upgrader, selector: Mapping[str, Any], targets_by_engine: Mapping[str, str], context: Any
) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for name in _engines(selector, targets_by_engine):
        for item in upgrader.select({**selector, "engine": name}, context):
            rows.append(
                {
                    "instance_id": item["instance_id"],
                    "engine": name,
                    "region": item["region"],
                    "target_version": targets_by_engine[name],
                }
            )
    return rows


def served_regions(
    upgrader: Upgrader, engine: str, account: str | None, context: Any = None, label: str | None = None
) -> list[str]:
    """Every region the engine's product serves, by its own ``DescribeRegions`` in ``account`` (None:
    the own one; a member's through its role, the session named ``label``), cut to
    DBUPGRADE_ALLOWED_REGIONS when that is set. Asked at DBUPGRADE_REGION's (or the function's)
    endpoint, with no RegionId: Dds lists only the region a RegionId names (its SDK request model).
    Raises ``CloudError`` (``MemberAccessError`` when the member's role cannot be assumed)."""
    spec = ENGINES[engine]
    ctx = adapt_context(context)
    where = upgrader.config.region or ctx.region or DEFAULT_REGION
    credentials = upgrader.credentials_for(account, ctx, where, label)
    body = upgrader.cloud.call_with_retries(
        spec, where, spec.regions_action, {}, credentials, deadline=ctx.deadline, regional=False
    )
    regions = [str(item["RegionId"]) for item in dig(body, spec.regions_path) if item.get("RegionId")]
    allowed = upgrader.config.allowed_regions
    return [region for region in regions if allowed is None or region in allowed]


@dataclass
class Selection:
    """What ``select_locations`` found: the targets, and per location what the listing gave."""

    targets: list[dict[str, Any]]
    # {"account_id", "region", "found", "code", "message"}: ``code`` / ``message`` when unreachable.
    locations: list[dict[str, Any]]

    @property
    def unreachable(self) -> list[dict[str, Any]]:
        return [
            {k: loc[k] for k in ("account_id", "region", "code", "message")}
            for loc in self.locations
            if loc["code"] is not None
        ]


def scan_locations(
    upgrader: Upgrader,
    selector: Mapping[str, Any],
    targets_by_engine: Mapping[str, str],
    accounts: Sequence[str | None],
    *,
    context: Any = None,
    label: str | None = None,
    scanning: Callable[[str | None, Mapping[str, list[str]]], None] | None = None,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The rows each location (account x region) gives, and what each gave (``Selection.locations``).

    The selector's regions, or, when it names none, every region each engine's product serves in
    that account (``served_regions``); ``scanning(account, {engine: regions})`` is told which before
    the account is listed. A member account whose role cannot be assumed, or whose policy refuses a
    call (``CloudError.configuration``), is unreachable - one location per region, or one for every
    region (``ALL_REGIONS``) when its regions could not be asked - and the others go on; the own
    account's configuration error, and any other failure, raises (never act on half a fleet).
    """
    engines = _engines(selector, targets_by_engine)
    given = [str(r) for r in selector.get("regions") or [] if r]
    rows: list[dict[str, Any]] = []
    locations: list[dict[str, Any]] = []

    def unreachable(account: str | None, region: str, error: CloudError) -> None:
        if upgrader.accounts.is_own(account) or not error.configuration:
            raise error
        locations.append(
            {
                "account_id": account,
                "region": region,
                "found": 0,
                "code": error.code,
                "message": error.explain(),
            }
        )

    for account in accounts:
        try:
            by_engine = {
                name: given or served_regions(upgrader, name, account, context, label) for name in engines
            }
        except CloudError as error:
            unreachable(account, ALL_REGIONS, error)
            continue
        if scanning is not None:
            scanning(account, by_engine)
        for region in dict.fromkeys(region for name in engines for region in by_engine[name]):
            serving = {name: targets_by_engine[name] for name in engines if region in by_engine[name]}
            part = {**selector, "engine": None, "regions": [region], "account_id": account, "label": label}
            try:
                found = _select_rows(upgrader, part, serving, context)
            except CloudError as error:
                unreachable(account, region, error)
                continue
            for row in found:
                if account is not None:
                    row["account_id"] = account
            locations.append({"account_id": account, "region": region, "found": len(found)})
            locations[-1].update(code=None, message=None)
            rows.extend(found)
    return rows, locations


def select_locations(
    upgrader: Upgrader,
    selector: Mapping[str, Any],
    targets_by_engine: Mapping[str, str],
    accounts: Sequence[str | None],
    *,
    effective: str | None = None,
    context: Any = None,
    label: str | None = None,
    scanning: Callable[[str | None, Mapping[str, list[str]]], None] | None = None,
) -> Selection:
    """``scan_locations``, its rows validated as targets; ``InvalidRequest`` when none matched."""
    rows, locations = scan_locations(
        upgrader, selector, targets_by_engine, accounts, context=context, label=label, scanning=scanning
    )
    if not rows:
        unreachable = "; ".join(str(loc["message"]) for loc in locations if loc["message"])
        raise InvalidRequest("select", "matches no instance" + (f" ({unreachable})" if unreachable else ""))
    return Selection(validate_targets(rows, effective=effective), locations)
