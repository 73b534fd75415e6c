"""localcloud FC protocol layer: the ``/2016-08-15/`` paths of the shared server.

- ``POST /2016-08-15/services/{service}[.{qualifier}]/functions/{function}/invocations``:
  InvokeFunction, signed (``Authorization: FC ak:sig``). Sync replies carry the function's bytes;
  a function error is still 200, with ``x-fc-error-type: UnhandledInvocationError`` and the error
  JSON, as FC does. ``x-fc-invocation-type: Async`` answers 202 and queues the invocation.
  ``x-fc-log-type: Tail`` adds ``x-fc-log-result`` (base64 of the last 4 KB of the log).
- ``/2016-08-15/proxy/{service}[.{qualifier}]/{function}/{path...}``: the FC 2.0 HTTP trigger
  (anonymous) of a function seeded with ``"http": true``.

Every call is recorded (product ``fc``, action ``InvokeFunction`` or ``HttpTrigger``) and draws
its injected faults.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import uuid
from typing import Any

from aiohttp import web
from multidict import CIMultiDict

from localcloud.fc import auth, exceptions
from localcloud.fc.models import SYNC_PAYLOAD_LIMIT, FcBackend, FunctionSpec, HttpRequest

INVOKE_PATH = re.compile(
    r"^/2016-08-15/services/(?P<service>[^/]+)/functions/(?P<function>[^/]+)/invocations/?$"
)
PROXY_PATH = re.compile(r"^/2016-08-15/proxy/(?P<service>[^/]+)/(?P<function>[^/]+)(?P<path>/.*)?$")
LOG_TAIL_BYTES = 4096
# Set by FC itself, so a function's own are dropped (FC rejects x-fc-* response headers).
RESERVED_REPLY_HEADERS = {"content-length", "transfer-encoding", "connection", "keep-alive", "date", "server"}


def _split_qualifier(service: str) -> tuple[str, str | None]:
    name, dot, qualifier = service.partition(".")
    return name, (qualifier if dot else None)


def _error(exc: exceptions.FcApiError, request_id: str) -> web.Response:
    return web.Response(
        status=exc.status,
        body=json.dumps(exc.body(request_id)).encode(),
        content_type="application/json",
        headers={"x-fc-request-id": request_id, **exc.headers},
    )


def _hang_up(request: web.Request) -> web.Response:
    """Close the connection without a reply (drop / lost_reply faults)."""
    if request.transport is not None:
        request.transport.close()
    return web.Response(status=503)


async def handle(cloud: Any, request: web.Request) -> web.StreamResponse:
    backend: FcBackend = cloud.fc
    if backend.url is None:
        host, port = (
            request.transport.get_extra_info("sockname")[:2] if request.transport else ("127.0.0.1", 0)
        )
        backend.bind(f"http://{host}:{port}")
    path = request.path
    if match := PROXY_PATH.match(path):
        return await _http_trigger(cloud, backend, request, match)
    if match := INVOKE_PATH.match(path):
        return await _invoke(cloud, backend, request, match)
    return _error(exceptions.path_not_supported(request.method, path), str(uuid.uuid4()))


async def _invoke(
    cloud: Any, backend: FcBackend, request: web.Request, match: re.Match[str]
) -> web.StreamResponse:
    request_id = str(uuid.uuid4())
    service, qualifier = _split_qualifier(match["service"])
    function = match["function"]
    async_invocation = request.headers.get("x-fc-invocation-type", "Sync").lower() == "async"
    params = {
        "service": service,
        "function": function,
        "invocation_type": "Async" if async_invocation else "Sync",
    }
    access_key_id: str | None = None
    fault: str | None = None

    def fail(exc: exceptions.FcApiError) -> web.Response:
        backend.record_call("InvokeFunction", params, exc.status, exc.code, request_id, access_key_id, fault)
        return _error(exc, request_id)

    try:
        if request.method != "POST":
            raise exceptions.path_not_supported(request.method, request.path)
        cred = auth.verify(
            cloud.accounts, request.method, request.path, request.headers, list(request.query.items())
        )
        access_key_id = cred.access_key_id
        auth.authorize_invoke(cred, service, function, backend.region_of(service, function))
        decision = cloud.faults.decide("fc", "InvokeFunction")
        fault = decision.name
        if decision.latency_ms:
            await asyncio.sleep(decision.latency_ms / 1000)
        if decision.drop:
            backend.record_call("InvokeFunction", params, 0, None, request_id, access_key_id, fault)
            return _hang_up(request)
        if decision.throttle:
            raise exceptions.throttled(decision.retry_after_ms)
        if decision.error:
            raise exceptions.service_unavailable()
        spec = backend.function(service, function)
        payload = await request.read()
        if len(payload) > SYNC_PAYLOAD_LIMIT:
            raise exceptions.entity_too_large(SYNC_PAYLOAD_LIMIT)
        if async_invocation:
            backend.submit_async(spec, payload, qualifier=qualifier, request_id=request_id)
            backend.record_call("InvokeFunction", params, 202, None, request_id, access_key_id, fault)
            if decision.lost_reply:
                return _hang_up(request)
            return web.Response(status=202, headers={"x-fc-request-id": request_id})
        result = await asyncio.to_thread(
            backend.execute, spec, payload, qualifier=qualifier, request_id=request_id
        )
    except exceptions.FcApiError as exc:
        return fail(exc)
    backend.record_call("InvokeFunction", params, 200, None, request_id, access_key_id, fault)
    if decision.lost_reply:
        return _hang_up(request)
    headers = {"x-fc-request-id": request_id, "x-fc-invocation-service-version": qualifier or "LATEST"}
    if result.error_type:
        headers["x-fc-error-type"] = result.error_type
    if request.headers.get("x-fc-log-type", "").lower() == "tail":
        headers["x-fc-log-result"] = base64.b64encode(result.log.encode()[-LOG_TAIL_BYTES:]).decode()
    content_type = "application/json" if result.error_type else "application/octet-stream"
    return web.Response(status=200, body=result.body, headers=headers, content_type=content_type)


async def _http_trigger(
    cloud: Any, backend: FcBackend, request: web.Request, match: re.Match[str]
) -> web.StreamResponse:
    service, qualifier = _split_qualifier(match["service"])
    function = match["function"]
    request_id = str(uuid.uuid4())
    params = {
        "service": service,
        "function": function,
        "invocation_type": "Sync",
        "path": match["path"] or "/",
    }
    decision = cloud.faults.decide("fc", "HttpTrigger")
    try:
        spec: FunctionSpec = backend.function(service, function)
        if not spec.http:
            raise exceptions.trigger_not_found(service, function)
        if decision.latency_ms:
            await asyncio.sleep(decision.latency_ms / 1000)
        if decision.drop:
            backend.record_call("HttpTrigger", params, 0, None, request_id, fault=decision.name)
            return _hang_up(request)
        if decision.throttle:
            raise exceptions.throttled(decision.retry_after_ms)
        if decision.error:
            raise exceptions.service_unavailable()
        http = HttpRequest(
            method=request.method,
            path=match["path"] or "/",
            query_string=request.query_string,
            headers=list(request.headers.items()),
            body=await request.read(),
            client_ip=request.remote or "127.0.0.1",
            request_uri=request.raw_path,
        )
        reply = await asyncio.to_thread(backend.invoke_http, spec, http, qualifier)
    except exceptions.FcApiError as exc:
        backend.record_call("HttpTrigger", params, exc.status, exc.code, request_id, fault=decision.name)
        return _error(exc, request_id)
    backend.record_call(
        "HttpTrigger", params, reply.status, reply.error_type, reply.request_id, fault=decision.name
    )
    if decision.lost_reply:
        return _hang_up(request)
    headers: CIMultiDict[str] = CIMultiDict(
        (name, value)
        for name, value in reply.headers
        if name.lower() not in RESERVED_REPLY_HEADERS and not name.lower().startswith("x-fc-")
    )
    headers["x-fc-request-id"] = reply.request_id
    if reply.error_type:
        headers["x-fc-error-type"] = reply.error_type
    return web.Response(status=reply.status, body=reply.body, headers=headers)
