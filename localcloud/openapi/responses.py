"""The OpenAPI RPC protocol layer: parse, verify, inject faults, call the product model, render.

One request, in order (each refusal is rendered as the gateway's JSON error and logged):

1. parse the signature (ACS3-HMAC-SHA256 headers, or HMAC-SHA1 ``Signature`` query/form params);
2. route by API version to a product's responses (each product's ``urls.py``: ``2015-01-01``
   R-kvstore, ``2015-12-01`` Dds, ``2015-04-01`` STS, ``2020-03-31`` Resource Manager) and check
   the action exists;
3. authenticate: known key, ±15 min timestamp (real wall clock), signature, STS token, fresh nonce;
4. check the parameters against the official API metadata (``localcloud.apimeta.check_request``):
   required, type, enum, range; documented defaults filled in for the backend;
5. ``cloud.faults.decide(product, action)``: latency, throttle, 5xx, drop or lost reply;
6. ``handler.call(action, params, ctx)`` (the caller's own account, the region it calls), its body
   cut to the metadata's response fields
   (``localcloud.apimeta.shape_response``), and reply ``{"RequestId", ...body}`` in one send.

Example::

    app.router.add_route("*", "/{tail:.*}", lambda request: handle(cloud, request))
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
import weakref
from typing import Any

from aiohttp import web

from localcloud import apimeta
from localcloud.accounts import Accounts, Credential, TokenError
from localcloud.calls import Call, InFlight
from localcloud.dds import urls as dds_urls
from localcloud.faults import FaultDecision
from localcloud.kvstore import urls as kvstore_urls
from localcloud.openapi.auth import V1_PROTOCOL_KEYS, NonceLedger, SignedRequest, parse_request
from localcloud.openapi.errors import (
    ForbiddenRam,
    InternalError,
    InvalidAccessKeyIdNotFound,
    InvalidActionNotFound,
    InvalidSecurityToken,
    InvalidVersion,
    MissingParameter,
    OpenApiError,
    ServiceUnavailable,
    ThrottlingUser,
)
from localcloud.openapi.handler import ActionHandler, CallContext
from localcloud.ram import resources
from localcloud.ram.policy import ALLOW
from localcloud.resourcemanager import urls as resourcemanager_urls
from localcloud.sts import urls as sts_urls

log = logging.getLogger("localcloud.openapi")

JSON_TYPE = "application/json;charset=utf-8"
# Product names as the Recommend link of the real gateway spells them.
RECOMMEND_PRODUCT = {
    "r-kvstore": "R-kvstore",
    "dds": "Dds",
    "sts": "Sts",
    "resourcemanager": "ResourceManager",
}
# What routes where: each product's urls.py, by its API version.
URLS = {urls.api_version: urls for urls in (kvstore_urls, dds_urls, sts_urls, resourcemanager_urls)}
_nonces: weakref.WeakKeyDictionary[Any, NonceLedger] = weakref.WeakKeyDictionary()
_handlers: weakref.WeakKeyDictionary[Any, dict[str, ActionHandler]] = weakref.WeakKeyDictionary()


def _request_id() -> str:
    """A request ID shaped like the real ones (upper-case 8-4-4-4-12 hex); cheaper than uuid4()."""
    h = os.urandom(16).hex().upper()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def _handlers_of(cloud: Any) -> dict[str, ActionHandler]:
    """Each product's responses over this localcloud's state, by API version (made once per cloud)."""
    handlers = _handlers.get(cloud)
    if handlers is None:
        handlers = _handlers[cloud] = {v: urls.response_class(cloud) for v, urls in URLS.items()}
    return handlers


def _region_from_host(version: str, host: str) -> str | None:
    """The region a product host names (``r-kvstore.cn-shanghai.aliyuncs.com`` -> ``cn-shanghai``,
    by the product's ``url_bases``); central or local hosts -> None."""
    name = host.split(":", 1)[0]
    for base in URLS[version].url_bases:
        match = base.fullmatch(name)
        if match:
            return match.group("region")
    return None


class _Exchange:
    """What is known about one request so far; enough to log it whatever happens next."""

    def __init__(self, cloud: Any, request: web.Request) -> None:
        self.cloud = cloud
        self.request = request
        self.request_id = _request_id()
        self.host = request.headers.get("Host", "")
        self.product = "openapi"
        self.action: str = request.headers.get("x-acs-action") or ""
        self.params: dict[str, str] | None = None  # None until the request parses
        self.access_key_id: str | None = None

    def _params_for_log(self) -> dict[str, str]:
        if self.params is not None:
            return self.params
        # An unparseable request: log what its query says, protocol fields left out.
        query = self.request.query
        self.action = self.action or query.get("Action", "")
        return {k: v for k, v in query.items() if k not in V1_PROTOCOL_KEYS}

    def record(self, status: int, code: str | None, fault: str | None) -> None:
        params = self._params_for_log()  # may fill in the action of an unparseable request
        self.cloud.calls.record(
            Call(
                product=self.product,
                action=self.action,
                params=params,
                status=status,
                code=code,
                at=self.cloud.clock.now(),
                request_id=self.request_id,
                access_key_id=self.access_key_id,
                fault=fault,
            )
        )

    def received(self) -> None:
        """Listed by ``GET /_localcloud/calls?in_flight=1`` until answered (``localcloud.calls``)."""
        self.cloud.calls.received(
            InFlight(
                product=self.product,
                action=self.action,
                params=self._params_for_log(),
                at=self.cloud.clock.now(),
                request_id=self.request_id,
                access_key_id=self.access_key_id,
            )
        )

    def reply(self, body: dict[str, Any], fault: str | None = None) -> web.Response:
        self.record(200, None, fault)
        payload = {"RequestId": self.request_id, **body}
        return web.Response(
            body=json.dumps(payload).encode(),
            status=200,
            headers={"Content-Type": JSON_TYPE, "x-acs-request-id": self.request_id},
        )

    def refuse(self, error: OpenApiError, fault: str | None = None) -> web.Response:
        self.record(error.status, error.code, fault)
        product = RECOMMEND_PRODUCT.get(self.product, self.product)
        return web.Response(
            body=error.body(self.request_id, self.host, product),
            status=error.status,
            headers={"Content-Type": JSON_TYPE, "x-acs-request-id": self.request_id, **error.headers},
        )

    def hang_up(self, status: int, code: str | None, fault: str) -> web.Response:
        """Close the connection without a reply.

        The transport is aborted first; aiohttp then fails to write the returned response, treats
        that as a client disconnect (``ConnectionError`` in ``finish_response``) and logs nothing.
        """
        self.record(status, code, fault)
        transport = self.request.transport
        if transport is not None:
            transport.abort()
        return web.Response(status=204)


def _authenticate(cloud: Any, signed: SignedRequest, product: str, region: str | None) -> Credential:
    """Who is calling (key, time, signature, token, nonce), then whether RAM lets them (``localcloud.ram``)."""
    cred = cloud.accounts.lookup(signed.access_key_id)
    if cred is None:
        raise InvalidAccessKeyIdNotFound()
    now = time.time()  # the clients sign with the real clock, never the emulated one
    signed.check_timestamp(now)
    signed.verify(cred.access_key_secret)
    try:
        Accounts.check_token(cred, signed.security_token)
    except TokenError as exc:
        raise InvalidSecurityToken(exc.reason, exc.message) from None
    ledger = _nonces.get(cloud)
    if ledger is None:
        ledger = _nonces[cloud] = NonceLedger()
    # After the signature: a forged request must not be able to burn someone's nonce.
    ledger.use(signed.access_key_id, signed.nonce, now)
    # STS decides sts:AssumeRole itself: it answers its own NoPermission (localcloud/sts/models.py).
    if cred.role is not None and product != "sts":
        action, resource = resources.openapi(
            product, signed.action or "", signed.params, region or resources.DEFAULT_REGION, cred.account_id
        )
        decision = cred.decide(action, resource)
        if decision != ALLOW:
            raise ForbiddenRam(action, cred.account_id, cred.role.name, decision)
    return cred


def _fault_error(decision: FaultDecision) -> OpenApiError | None:
    if decision.throttle:
        headers = {"x-acs-retry-after": str(decision.retry_after_ms)} if decision.retry_after_ms else None
        return ThrottlingUser(headers=headers)
    if decision.error and decision.error_code:
        message = decision.error_message or f"localcloud injected {decision.error_code}."
        return OpenApiError(message, code=decision.error_code, status=decision.error_status)
    if decision.error:
        return ServiceUnavailable()
    return None


async def handle(cloud: Any, request: web.Request) -> web.StreamResponse:
    """Answer one OpenAPI RPC request (see the module docstring for the order of checks)."""
    exchange = _Exchange(cloud, request)
    try:
        return await _answer(cloud, exchange)
    finally:
        cloud.calls.served(exchange.request_id)


async def _answer(cloud: Any, exchange: _Exchange) -> web.StreamResponse:
    request = exchange.request
    body = await request.read()
    try:
        signed = parse_request(request.method, request.raw_path, request.headers, body)
        exchange.params = signed.params
        exchange.access_key_id = signed.access_key_id
        exchange.action = signed.action or ""
        handler = _handlers_of(cloud).get(signed.version or "")
        if handler is None:
            raise InvalidVersion() if signed.version else MissingParameter("Version")
        exchange.product = handler.product
        exchange.received()
        if not signed.action:
            raise MissingParameter("Action")
        if signed.action not in handler.actions:
            raise InvalidActionNotFound()
        region = signed.params.get("RegionId") or _region_from_host(signed.version or "", exchange.host)
        cred = _authenticate(cloud, signed, handler.product, region)
        params = apimeta.check_request(handler.product, exchange.action, signed.params)
    except OpenApiError as error:
        return exchange.refuse(error)

    decision = cloud.faults.decide(handler.product, exchange.action, cred.account_id, region or "")
    if decision.latency_ms:
        await asyncio.sleep(decision.latency_ms / 1000)
    if decision.drop:
        return exchange.hang_up(0, None, "drop")
    injected = _fault_error(decision)
    if injected is not None:
        return exchange.refuse(injected, decision.name)

    ctx = CallContext(
        account_id=cred.account_id,
        access_key_id=signed.access_key_id,
        request_id=exchange.request_id,
        region_id=region,
        host=exchange.host,
    )
    try:
        result = handler.call(exchange.action, params, ctx)
    except OpenApiError as error:
        if decision.lost_reply:
            return exchange.hang_up(error.status, error.code, "lost_reply")
        return exchange.refuse(error)
    except Exception:
        log.exception("%s %s failed (request %s)", handler.product, exchange.action, exchange.request_id)
        return exchange.refuse(InternalError())
    if decision.lost_reply:
        return exchange.hang_up(200, None, "lost_reply")
    return exchange.reply(apimeta.shape_response(handler.product, exchange.action, result), decision.name)
