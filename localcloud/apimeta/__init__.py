"""The official API metadata of R-kvstore, Dds, STS and Resource Manager, as localcloud's gateway uses it.

The JSON files beside this module are the facts of Alibaba Cloud's OpenAPI metadata (the data the
official SDKs are generated from), trimmed by ``regenerate.py``: per action the parameters and their
constraints, the response field tree and the documented error codes. Everything is read once, at
import, into per-action specs, so a request costs no JSON parsing.

- ``check_request(product, action, params)``: the params with the documented defaults filled in;
  ``MissingParameter`` for an absent required parameter, ``INVALID_VALUE`` for a value of the wrong
  type, outside the documented enum or outside minimum/maximum. Parameters the metadata does not
  name pass untouched: the real gateway ignores them (Terraform sends RegionId to actions whose SDK
  model lacks it: terraform-provider-alicloud ``service_alicloud_r_kvstore.go`` L249-251).
- ``shape_response(product, action, body)``: the body with only the fields the metadata defines,
  through nested objects and arrays; what it drops is logged once per field and appended to
  ``dropped`` when given.

Example::

    params = check_request("dds", "DescribeDBInstances", {"PageSize": "50"})
    params["DBInstanceType"]                  # "replicate": the documented default
    body = shape_response("dds", "DescribeDBInstances", body, dropped := [])
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from importlib import resources
from typing import Any

from localcloud.openapi.errors import InvalidParameter, MissingParameter

log = logging.getLogger("localcloud.apimeta")

# assumption: the gateway refuses a value of the wrong type (an integer or boolean that does not
# parse) or outside a documented enum with the same 400 InvalidParameter, 'The specified parameter
# "X" is not valid.', that it is seen to give for a value outside a documented range (PageSize above
# its maximum: zhuchao941/canal2sql#5; SystemDisk.Size out of range, source=PopGw:
# aliyun/alibaba-cloud-sdk-go#405). No public source shows the type and enum cases.
INVALID_VALUE = InvalidParameter

_INTEGER = re.compile(r"[+-]?[0-9]+")
# The ranges of the metadata's integer formats (OpenAPI 2.0 data types).
_FORMAT_RANGE = {"int32": (-(2**31), 2**31 - 1), "int64": (-(2**63), 2**63 - 1)}
# Parameters sent flattened (``Tag.1.Key``): named by the metadata, checked by no rule here.
_STRUCTURED = frozenset({"array", "object"})
_SCALAR = frozenset({"string", "integer", "boolean"})
# STS and Resource Manager (only AssumeRole and ListAccounts) and the products' DescribeRegions (absent
# from the research copy regenerate.py reads): transcribed from the same metadata mirror (each file's
# "source" says where); regenerate.py does not write them.
_FILES = (
    "r-kvstore-2015-01-01.json",
    "r-kvstore-2015-01-01-regions.json",
    "dds-2015-12-01.json",
    "dds-2015-12-01-regions.json",
    "sts-2015-04-01.json",
    "resourcemanager-2020-03-31.json",
)


@dataclass(frozen=True)
class Parameter:
    """One scalar request parameter and what a value of it must be."""

    name: str
    type: str  # "string" | "integer" | "boolean"
    required: bool
    default: str | None
    allowed: frozenset[object]  # the enum, as values of ``type``; empty: any value
    lowest: int | None  # minimum, or the format's bound (integers only)
    highest: int | None

    def check(self, raw: str) -> None:
        """Raise INVALID_VALUE naming this parameter unless ``raw`` is a valid value of it."""
        value: object = raw
        if self.type == "integer":
            if not _INTEGER.fullmatch(raw):
                raise INVALID_VALUE(self.name)
            number = int(raw)
            if (self.lowest is not None and number < self.lowest) or (
                self.highest is not None and number > self.highest
            ):
                raise INVALID_VALUE(self.name)
            value = number
        elif self.type == "boolean":
            # assumption: the gateway reads booleans case-insensitively, as Java's Boolean does.
            lowered = raw.lower()
            if lowered not in ("true", "false"):
                raise INVALID_VALUE(self.name)
            value = lowered == "true"
        if self.allowed and value not in self.allowed:
            raise INVALID_VALUE(self.name)


@dataclass(frozen=True, slots=True)
class Field:
    """One node of a response's field tree: an object's fields, an array's items, or a leaf."""

    type: str
    path: str  # where it sits in the body ("" at the top; list items as "[]"), for reports
    properties: dict[str, Field] | None = None  # objects; None also for an object the metadata leaves open
    items: Field | None = None  # arrays
    nested: tuple[tuple[str, Field], ...] = ()  # the fields that are themselves objects or arrays


@dataclass(frozen=True)
class ErrorCode:
    status: int
    code: str
    message: str


@dataclass(frozen=True)
class ActionSpec:
    """One action's metadata, ready for per-request use."""

    product: str  # "r-kvstore" | "dds": the backend's name
    action: str
    parameters: tuple[Parameter, ...]  # the scalar ones; array/object ones (sent flattened) go unchecked
    response: Field | None  # None: the metadata defines no response
    errors: tuple[ErrorCode, ...]  # the documented error codes


def _typed(kind: str, raw: str) -> object:
    if kind == "integer":
        return int(raw)
    if kind == "boolean":
        return raw.lower() == "true"
    return raw


def _parameter(product: str, action: str, raw: dict[str, Any]) -> Parameter:
    kind = raw["type"]
    if kind not in _SCALAR:
        raise ValueError(f"{product} {action}: parameter {raw['name']} has unknown type {kind!r}")
    lowest = highest = None
    if kind == "integer":
        lowest, highest = _FORMAT_RANGE.get(raw.get("format", ""), (None, None))
        if "minimum" in raw:
            lowest = int(raw["minimum"])
        if "maximum" in raw:
            highest = int(raw["maximum"])
    default = raw.get("default")
    return Parameter(
        name=raw["name"],
        type=kind,
        required=bool(raw.get("required")),
        default=None if default is None else str(default),
        allowed=frozenset(_typed(kind, str(v)) for v in raw.get("enum") or ()),
        lowest=lowest,
        highest=highest,
    )


def _field(raw: dict[str, Any], path: str = "") -> Field:
    properties = raw.get("properties")
    fields = None
    if properties is not None:
        fields = {
            name: _field(child, f"{path}.{name}" if path else name) for name, child in properties.items()
        }
    items = _field(raw["items"], f"{path}[]") if "items" in raw else None
    nested = tuple(
        (name, child)
        for name, child in (fields or {}).items()
        if child.properties is not None or child.items is not None
    )
    return Field(type=raw.get("type", "object"), path=path, properties=fields, items=items, nested=nested)


def _load(text: str) -> dict[tuple[str, str], ActionSpec]:
    data = json.loads(text)
    product = data["product"].lower()  # "R-kvstore" -> "r-kvstore", as the backends name themselves
    specs = {}
    for action, api in data["apis"].items():
        params = api["parameters"]
        specs[(product, action)] = ActionSpec(
            product=product,
            action=action,
            parameters=tuple(_parameter(product, action, p) for p in params if p["type"] not in _STRUCTURED),
            response=None if api["response"] is None else _field(api["response"]),
            errors=tuple(ErrorCode(e["status"], e["code"], e["message"]) for e in api["errorCodes"]),
        )
    return specs


SPECS: dict[tuple[str, str], ActionSpec] = {
    key: spec
    for name in _FILES
    for key, spec in _load(resources.files(__name__).joinpath(name).read_text(encoding="utf-8")).items()
}


def spec(product: str, action: str) -> ActionSpec:
    """The metadata of ``product``'s ``action``; KeyError if the metadata does not define it."""
    return SPECS[(product, action)]


def check_request(product: str, action: str, params: dict[str, str]) -> dict[str, str]:
    """``params`` checked against the action's metadata, with its documented defaults filled in."""
    action_spec = SPECS[(product, action)]
    checked = dict(params)
    for p in action_spec.parameters:
        value = params.get(p.name)
        # assumption: a parameter sent empty ("Name=") counts as not sent, as the product models'
        # own ``require`` treats it; no source says how the gateway reads an empty value.
        if value is None or value == "":
            if p.required:
                raise MissingParameter(p.name)
            if p.default is not None:
                checked[p.name] = p.default
            continue
        p.check(value)
    return checked


_reported: set[tuple[str, str, str]] = set()


def shape_response(
    product: str, action: str, body: dict[str, Any], dropped: list[str] | None = None
) -> dict[str, Any]:
    """``body`` with only the fields the action's response metadata defines (see the module doc)."""
    response = SPECS[(product, action)].response
    if response is None:
        return body
    found: list[str] = []
    shaped = _shape(body, response, found)
    for path in dict.fromkeys(found):  # each path once, in order
        if (product, action, path) not in _reported:
            _reported.add((product, action, path))
            log.warning("%s %s: dropped %s, a field the API metadata does not define", product, action, path)
    if dropped is not None:
        dropped.extend(found)
    return shaped


def _shape(value: Any, node: Field, dropped: list[str]) -> Any:
    fields = node.properties
    if fields is not None and isinstance(value, dict):
        # Copy whole when nothing is dropped (the common case, at C speed), then recurse into the
        # few fields that are objects or arrays.
        if value.keys() <= fields.keys():
            kept = dict(value)
        else:
            kept = {key: v for key, v in value.items() if key in fields}
            prefix = f"{node.path}." if node.path else ""
            dropped.extend(prefix + key for key in value if key not in fields)
        for name, child in node.nested:
            if name in kept:
                kept[name] = _shape(kept[name], child, dropped)
        return kept
    if node.items is not None and isinstance(value, list):
        items = node.items
        return [_shape(item, items, dropped) for item in value]
    return value
