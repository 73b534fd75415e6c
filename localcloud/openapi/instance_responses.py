"""What the R-kvstore and Dds responses share: the four instance actions, from params to a body.

A product's ``responses.py`` subclasses ``InstanceResponse`` and declares its action names, the
parameters and body keys of its listing and attribute actions, and renders its two own actions
(versions and upgrade). The caller's backends are its own account's (``CallContext.account_id``)
in the region it calls (``RegionId``, else the host's region); a call naming no region sees every
region of its account.

Example::

    handler = KvstoreResponse(cloud)
    body = handler.call("DescribeInstances", {"RegionId": "cn-hangzhou"}, ctx)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, TypeVar

from localcloud.openapi.errors import InvalidActionNotFound, page, require
from localcloud.openapi.handler import CallContext
from localcloud.openapi.instances import InstanceBackend, InstanceBackends
from localcloud.openapi.lifecycle import Instance, render_tags, tag_filters

_Backend = TypeVar("_Backend", bound=InstanceBackend)


@dataclass(frozen=True)
class InstanceActions:
    """What a product calls the four actions every instance API answers."""

    list: str  # the paged, filtered listing
    attribute: str  # one instance's full attributes
    versions: str  # the versions it may move to
    upgrade: str  # accept an upgrade

    def names(self) -> frozenset[str]:
        return frozenset({self.list, self.attribute, self.versions, self.upgrade})


class InstanceResponse(Generic[_Backend]):
    """The protocol side of an instance product (openapi/handler.py's ``ActionHandler``)."""

    product: ClassVar[str]
    action_names: ClassVar[InstanceActions]
    actions: ClassVar[frozenset[str]]  # action_names.names(): what the gateway routes here
    list_ids_param: ClassVar[str]  # the listing's comma-separated IDs filter
    list_filters: ClassVar[tuple[str, ...]] = ()  # more attributes the listing filters on by name
    max_page_size: ClassVar[int]
    list_keys: ClassVar[tuple[str, ...]]  # the attributes a listing renders
    list_body: ClassVar[tuple[str, str]]  # the keys a listing's instances nest under
    attribute_body: ClassVar[tuple[str, str]]  # the keys the attribute action's instance nests under
    # (region, host): the region DescribeRegions answers with the product's central host; every other
    # region answers its regional host (each product's responses.py cites its source and assumption).
    central_endpoint: ClassVar[tuple[str, str]]

    def __init__(self, backends: InstanceBackends[_Backend]) -> None:
        self.backends = backends
        self.id_param = backends.backend_cls.id_param
        self.status_key = backends.backend_cls.status_key
        names = self.action_names
        self._answers: dict[str, Callable[[dict[str, str], CallContext], dict[str, Any]]] = {
            names.list: self.describe_instances,
            names.attribute: self.describe_attribute,
            names.versions: self.describe_versions_of,
            names.upgrade: self.upgrade_of,
        }

    def region_endpoint(self, region: str) -> str:
        """The endpoint DescribeRegions gives ``region``: the central host, or ``<product>.<region>.aliyuncs.com``."""
        central_region, host = self.central_endpoint
        return host if region == central_region else host.replace(".aliyuncs.com", f".{region}.aliyuncs.com")

    # --- what each product defines --------------------------------------------------------------

    def describe_versions(self, backend: _Backend, inst: Instance) -> dict[str, Any]:
        raise NotImplementedError

    def upgrade(self, backend: _Backend, params: dict[str, str]) -> dict[str, Any]:
        raise NotImplementedError

    # --- dispatch -------------------------------------------------------------------------------

    def call(self, action: str, params: dict[str, str], ctx: CallContext) -> dict[str, Any]:
        answer = self._answers.get(action)
        if answer is None:
            raise InvalidActionNotFound()
        return answer(params, ctx)

    def scope(self, ctx: CallContext) -> list[_Backend]:
        """The caller's backends: its account's, in the region it calls (none named: every region).

        Assumption: another account's instance answers as an unknown ID does (the product's
        not-found error, absent from listings); no public source shows what the real API answers.
        """
        if ctx.region_id:
            return [self.backends.get(ctx.account_id, ctx.region_id)]
        return self.backends.of_account(ctx.account_id)

    def find(self, params: dict[str, str], ctx: CallContext) -> tuple[_Backend, Instance]:
        """The instance the request names, among the caller's own, settled to now."""
        iid = require(params, self.id_param)
        scope = self.scope(ctx)
        for backend in scope:
            inst = backend.find_instance(iid)
            if inst is not None:
                return backend, inst
        raise self.backends.backend_cls.not_found()

    # --- the shared actions ---------------------------------------------------------------------

    def describe_instances(self, params: dict[str, str], ctx: CallContext) -> dict[str, Any]:
        number, size = page(params, default_size=30, max_size=self.max_page_size)
        wanted = {i.strip() for i in params.get(self.list_ids_param, "").split(",") if i.strip()}
        status = params.get(self.status_key)
        wanted_attrs = {name: params[name] for name in self.list_filters if params.get(name)}
        tags = tag_filters(params)
        selected = [
            inst
            for backend in self.scope(ctx)
            for inst in backend.list_instances(wanted, status, wanted_attrs, tags)
        ]
        chunk = selected[(number - 1) * size : number * size]
        outer, inner = self.list_body
        return {
            outer: {inner: [self.render(inst, full=False) for inst in chunk]},
            "TotalCount": len(selected),
            "PageNumber": number,
            "PageSize": size,
        }

    def describe_attribute(self, params: dict[str, str], ctx: CallContext) -> dict[str, Any]:
        outer, inner = self.attribute_body
        return {outer: {inner: [self.render(self.find(params, ctx)[1], full=True)]}}

    def describe_versions_of(self, params: dict[str, str], ctx: CallContext) -> dict[str, Any]:
        return self.describe_versions(*self.find(params, ctx))

    def upgrade_of(self, params: dict[str, str], ctx: CallContext) -> dict[str, Any]:
        backend, _ = self.find(params, ctx)
        return self.upgrade(backend, params)

    def render(self, inst: Instance, full: bool) -> dict[str, Any]:
        attrs = dict(inst.attrs) if full else {k: inst.attrs[k] for k in self.list_keys if k in inst.attrs}
        attrs["Tags"] = render_tags(inst.tags)
        return attrs
