"""What the R-kvstore and Dds models share: seeded instances, lookup, listing, attribute, snapshot.

A product model subclasses ``InstanceBackend`` and declares only what is its own: the names of its
four actions, its ID and status parameters, its statuses, the keys its bodies nest lists under,
its not-found error, its seed defaults, and the rules of its versions and upgrade
(``describe_versions`` and ``upgrade``).

Example::

    class DdsBackend(InstanceBackend):
        action_names = InstanceActions(list="DescribeDBInstances", ...)
        actions = action_names.names()
        id_param, status_key = "DBInstanceId", "DBInstanceStatus"
        ...
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

from localcloud.clock import Clock
from localcloud.openapi.backend import CallContext
from localcloud.openapi.errors import InvalidActionNotFound, OpenApiError, page, require
from localcloud.openapi.lifecycle import (
    Instance,
    failed_status_for,
    matches_tags,
    minute_of_day,
    render_tags,
    running_task_for,
    tag_filters,
)

# Seed keys that drive localcloud only, in every product: never rendered as API attributes.
LOCAL_ONLY_SEED_KEYS = ("FailUpgrade", "RunningTask", "RunningTaskSeconds", "Tags")

_Backend = TypeVar("_Backend", bound="InstanceBackend")


@dataclass(frozen=True)
class InstanceActions:
    """What a product calls the four actions every instance API answers."""

    list: str  # the paged, filtered listing
    attribute: str  # one instance's full attributes
    versions: str  # the versions it may move to
    upgrade: str  # accept an upgrade

    def names(self) -> frozenset[str]:
        return frozenset({self.list, self.attribute, self.versions, self.upgrade})


class InstanceBackend:
    """An OpenAPI product whose resources are ``Instance``s (openapi/backend.py's protocol)."""

    product: str  # the name used in calls, faults and Recommend links
    version: str  # the API version requests are routed by
    action_names: ClassVar[InstanceActions]
    actions: frozenset[str]  # action_names.names(): what the protocol layer routes here
    seed_key: ClassVar[str]  # the seed's list of this product's instances
    id_param: ClassVar[str]  # the instance ID: attribute, seed key and request parameter
    status_key: ClassVar[str]  # the status attribute, also the listing's status filter parameter
    ready_status: ClassVar[str]
    upgrading_status: ClassVar[str]
    failed_status: ClassVar[str]  # what a seed's ``FailUpgrade: true`` ends an upgrade in
    not_found: ClassVar[type[OpenApiError]]
    list_ids_param: ClassVar[str]  # the listing's comma-separated IDs filter
    list_filters: ClassVar[tuple[str, ...]] = ()  # more attributes the listing filters on by name
    max_page_size: ClassVar[int]
    list_keys: ClassVar[tuple[str, ...]]  # the attributes a listing renders
    list_body: ClassVar[tuple[str, str]]  # the keys a listing's instances nest under
    attribute_body: ClassVar[tuple[str, str]]  # the keys the attribute action's instance nests under
    local_only_seed_keys: ClassVar[tuple[str, ...]] = LOCAL_ONLY_SEED_KEYS  # a product may add its own

    def __init__(self, entries: list[dict[str, Any]], clock: Clock, upgrade_seconds: float) -> None:
        self.clock = clock
        self.upgrade_seconds = upgrade_seconds
        self.instances: dict[str, Instance] = {}
        for entry in entries:
            attrs = self.seed_attrs(entry)
            minute_of_day(attrs["MaintainStartTime"])
            minute_of_day(attrs["MaintainEndTime"])
            self.instances[entry[self.id_param]] = Instance(
                attrs=attrs,
                tags={str(k): str(v) for k, v in (entry.get("Tags") or {}).items()},
                status_key=self.status_key,
                ready_status=self.ready_status,
                upgrading_status=self.upgrading_status,
                failed_status=failed_status_for(entry, self.failed_status),
                task=running_task_for(entry, clock.now()),
            )

    @classmethod
    def from_seed(cls: type[_Backend], seed: dict[str, Any], cloud: Any) -> _Backend:
        return cls(seed.get(cls.seed_key, []), cloud.clock, float(seed.get("upgrade_seconds", 2)))

    # --- what each product defines --------------------------------------------------------------

    @staticmethod
    def defaults(entry: dict[str, Any]) -> dict[str, Any]:
        """A plausible full attribute set for a seed entry (the real API's keys)."""
        raise NotImplementedError

    def describe_versions(self, inst: Instance) -> dict[str, Any]:
        raise NotImplementedError

    def upgrade(self, params: dict[str, str]) -> dict[str, Any]:
        raise NotImplementedError

    def seed_attrs(self, entry: dict[str, Any]) -> dict[str, Any]:
        """The defaults overlaid with the seed entry's API keys (seed values win)."""
        attrs = self.defaults(entry)
        attrs.update({k: v for k, v in entry.items() if k not in self.local_only_seed_keys})
        attrs["EngineVersion"] = str(attrs["EngineVersion"])
        return attrs

    # --- protocol -------------------------------------------------------------------------------

    def call(self, action: str, params: dict[str, str], ctx: CallContext) -> dict[str, Any]:
        names = self.action_names
        if action == names.list:
            return self.describe_instances(params)
        if action == names.attribute:
            outer, inner = self.attribute_body
            return {outer: {inner: [self._render(self._find(params), full=True)]}}
        if action == names.versions:
            return self.describe_versions(self._find(params))
        if action == names.upgrade:
            return self.upgrade(params)
        raise InvalidActionNotFound()

    def snapshot(self) -> dict[str, Any]:
        return {"instances": {iid: inst.snapshot() for iid, inst in self.instances.items()}}

    def restore(self, state: dict[str, Any]) -> None:
        for iid, saved in state.get("instances", {}).items():
            if iid in self.instances:
                self.instances[iid].restore(saved)

    def close(self) -> None:
        """Nothing to release: the model holds no files or threads."""

    # --- shared actions and helpers -------------------------------------------------------------

    def describe_instances(self, params: dict[str, str]) -> dict[str, Any]:
        number, size = page(params, default_size=30, max_size=self.max_page_size)
        region = params.get("RegionId")
        wanted = {i.strip() for i in params.get(self.list_ids_param, "").split(",") if i.strip()}
        status = params.get(self.status_key)
        wanted_attrs = {name: params[name] for name in self.list_filters if params.get(name)}
        tags = tag_filters(params)
        now = self.clock.now()
        selected = []
        for iid, inst in self.instances.items():
            inst.settle(now)
            if region and inst.attrs["RegionId"] != region:
                continue
            if wanted and iid not in wanted:
                continue
            if status and inst.status != status:
                continue
            if any(inst.attrs[name] != value for name, value in wanted_attrs.items()):
                continue
            if not matches_tags(inst.tags, tags):
                continue
            selected.append(inst)
        chunk = selected[(number - 1) * size : number * size]
        outer, inner = self.list_body
        return {
            outer: {inner: [self._render(inst, full=False) for inst in chunk]},
            "TotalCount": len(selected),
            "PageNumber": number,
            "PageSize": size,
        }

    def _find(self, params: dict[str, str]) -> Instance:
        """The instance the request names (in its RegionId, if sent), settled to now."""
        iid = require(params, self.id_param)
        inst = self.instances.get(iid)
        region = params.get("RegionId")
        if inst is None or (region and inst.attrs["RegionId"] != region):
            raise self.not_found()
        inst.settle(self.clock.now())
        return inst

    def _render(self, inst: Instance, full: bool) -> dict[str, Any]:
        attrs = dict(inst.attrs) if full else {k: inst.attrs[k] for k in self.list_keys if k in inst.attrs}
        attrs["Tags"] = render_tags(inst.tags)
        return attrs
