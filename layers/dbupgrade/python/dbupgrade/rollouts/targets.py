"""Where a rollout's targets come from: a manifest file (CSV, JSON or YAML) or a fleet selector.

Every target is validated with the same ``parse_request`` the functions use, so a bad row stops
the rollout before anything is released, with an error naming the row and the field.

Manifest rows: ``instance_id``, ``target_version``, optional ``engine``, ``region``, ``effective``,
``ticket_id``, ``account_id`` (a member account, reached through its role). JSON / YAML: a list of
rows, or ``{"targets": [...]}``.

``select_locations`` selects across accounts and regions (the locations): a location whose fleet
cannot be listed because of its configuration (the member's role missing or untrusting) is reported
as unreachable, and the other locations go on.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dbupgrade.cloudapi import CloudError
from dbupgrade.engines import ENGINES
from dbupgrade.model import InvalidRequest
from dbupgrade.request import parse_request
from dbupgrade.rollouts.model import TARGET_FIELDS
from dbupgrade.usecase import Upgrader


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


def _select_rows(
    upgrader: Upgrader, selector: Mapping[str, Any], targets_by_engine: Mapping[str, str], context: Any
) -> list[dict[str, Any]]:
    if not targets_by_engine:
        raise InvalidRequest("target", "name a target version per engine, e.g. redis=7.0")
    unknown = sorted(set(targets_by_engine) - set(ENGINES))
    if unknown:
        raise InvalidRequest("target", f"unknown engine {unknown[0]!r}; allowed", allowed=sorted(ENGINES))
    engine = selector.get("engine")
    engines = [engine] if engine else sorted(targets_by_engine)
    rows: list[dict[str, Any]] = []
    for name in engines:
        if name not in targets_by_engine:
            raise InvalidRequest("target", f"no target version for the selected engine {name}")
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


def select_locations(
    upgrader: Upgrader,
    selector: Mapping[str, Any],
    targets_by_engine: Mapping[str, str],
    accounts: Sequence[str | None],
    *,
    effective: str | None = None,
    context: Any = None,
    label: str | None = None,
) -> Selection:
    """``select_targets`` in each account (None: the own one) and each of the selector's regions.

    A location whose listing fails on configuration (``CloudError.configuration``: the member's role
    cannot be assumed, or its policy refuses the list call) is unreachable - reported with its one
    line - and the others go on; any other failure raises (a rollout must not act on a partial
    fleet). ``label`` names the role sessions (the rollout).
    """
    regions = [str(r) for r in selector.get("regions") or [upgrader.config.region] if r]
    if not regions:
        raise InvalidRequest("regions", "no region: list them (--region) or set DBUPGRADE_REGION")
    rows: list[dict[str, Any]] = []
    locations: list[dict[str, Any]] = []
    for account in accounts:
        for region in regions:
            location: dict[str, Any] = {"account_id": account, "region": region, "found": 0}
            location.update(code=None, message=None)
            part = {**selector, "regions": [region], "account_id": account, "label": label}
            try:
                found = _select_rows(upgrader, part, targets_by_engine, context)
            except CloudError as error:
                if not error.configuration:
                    raise
                location.update(code=error.code, message=error.explain())
                locations.append(location)
                continue
            for row in found:
                if account is not None:
                    row["account_id"] = account
            location["found"] = len(found)
            locations.append(location)
            rows.extend(found)
    if not rows:
        unreachable = "; ".join(str(loc["message"]) for loc in locations if loc["message"])
        raise InvalidRequest("select", "matches no instance" + (f" ({unreachable})" if unreachable else ""))
    return Selection(validate_targets(rows, effective=effective), locations)
