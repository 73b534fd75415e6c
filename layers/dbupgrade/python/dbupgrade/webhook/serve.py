"""Serve the real webhook handler locally, as FC would call it (WSGI, or the FC 3.0 HTTP event).

aiohttp, not ``wsgiref``: ``wsgiref`` writes the headers and the body in separate sends, which costs
~40 ms per reply on loopback (Nagle + delayed ACK); aiohttp sets ``TCP_NODELAY`` and is already
installed with tea-openapi. The handler is synchronous (cloud calls block), so it runs on a thread
pool, one call per request, as FC runs one request per instance.

Example (what ``dbupgrade local serve webhook --port 9000 [--fc3]`` runs)::

    from dbupgrade.webhook.serve import serve
    serve("127.0.0.1", 9000, fc3=True)
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import os
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from types import SimpleNamespace
from typing import Any
from urllib.parse import quote

from aiohttp import web

from dbupgrade.webhook.http import MAX_BODY_BYTES

Handler = Callable[[Any, Any], Any]
FUNCTION_TIMEOUT_SECONDS = 60


def _default_handler() -> Handler:
    from dbupgrade.webhook.handler import handler

    return handler


def local_context(*, fc3: bool) -> SimpleNamespace:
    """An FC-like context for one local invocation (FC 3.0's has no ``service`` or ``credentials``)."""
    context = SimpleNamespace(
        request_id=str(uuid.uuid4()),
        region=os.environ.get("DBUPGRADE_REGION") or None,
        account_id=None,
        function=SimpleNamespace(
            name="webhook", handler="index.handler", memory=512, timeout=FUNCTION_TIMEOUT_SECONDS
        ),
    )
    if not fc3:
        context.service = SimpleNamespace(name="dbupgrade")
        context.credentials = None  # credentials come from ALIBABA_CLOUD_* in the environment
    return context


def _environ(request: web.Request, body: bytes, context: Any) -> dict[str, Any]:
    environ: dict[str, Any] = {
        "REQUEST_METHOD": request.method,
        # PEP 3333: PATH_INFO carries the raw bytes as latin-1 code points.
        "PATH_INFO": request.path.encode("utf-8").decode("latin-1"),
        "QUERY_STRING": request.query_string,
        "SERVER_PROTOCOL": f"HTTP/{request.version.major}.{request.version.minor}",
        "SERVER_NAME": request.host,
        "wsgi.input": io.BytesIO(body),
        "wsgi.url_scheme": request.scheme,
        "fc.context": context,
        "fc.request_uri": str(request.rel_url),
    }
    for name, value in request.headers.items():
        key = name.upper().replace("-", "_")
        if key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
            environ[key] = value
        else:
            environ[f"HTTP_{key}"] = value
    return environ


def _fc3_event(request: web.Request, body: bytes, context: Any) -> bytes:
    try:
        text, is_base64 = body.decode("utf-8"), False
    except UnicodeDecodeError:
        text, is_base64 = base64.b64encode(body).decode("ascii"), True
    now = datetime.now(timezone.utc)
    headers: dict[str, str] = {}
    for name, value in request.headers.items():
        headers[name] = f"{headers[name]},{value}" if name in headers else value
    event = {
        "version": "v1",
        "rawPath": quote(request.path),
        "body": text,
        "isBase64Encoded": is_base64,
        "headers": headers,
        "queryParameters": {key: ",".join(request.query.getall(key)) for key in request.query},
        "requestContext": {
            "accountId": context.account_id or "",
            "domainName": request.host,
            "domainPrefix": request.host.split(".")[0],
            "http": {
                "method": request.method,
                "path": request.path,
                "protocol": f"HTTP/{request.version.major}.{request.version.minor}",
                "sourceIp": request.remote or "",
                "userAgent": request.headers.get("user-agent", ""),
            },
            "requestId": context.request_id,
            "time": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "timeEpoch": str(int(time.time() * 1000)),
        },
    }
    return json.dumps(event).encode()


def _call_wsgi(handler: Handler, environ: dict[str, Any]) -> web.Response:
    started: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]]) -> None:
        started["status"], started["headers"] = status, headers

    body = b"".join(handler(environ, start_response))
    headers = [(k, v) for k, v in started["headers"] if k.lower() != "content-length"]
    return web.Response(status=int(started["status"].split()[0]), body=body, headers=headers)


def _call_fc3(handler: Handler, event: bytes, context: Any) -> web.Response:
    reply = handler(event, context)
    raw = reply.get("body") or ""
    body = base64.b64decode(raw) if reply.get("isBase64Encoded") else str(raw).encode()
    return web.Response(
        status=int(reply.get("statusCode", 200)), body=body, headers=reply.get("headers") or {}
    )


def build_app(*, fc3: bool = False, handler: Handler | None = None) -> web.Application:
    """An aiohttp app that hands every request to ``handler`` in the chosen FC shape."""
    target = handler or _default_handler()

    async def dispatch(request: web.Request) -> web.StreamResponse:
        # One byte past the limit is enough for the handler to answer 413 itself. ``read(n)`` answers
        # what has arrived, up to n bytes: read until n or the end, or a body split across packets
        # reaches the handler cut short (and fails its signature: 401, not 413).
        body = b""
        while len(body) <= MAX_BODY_BYTES:
            chunk = await request.content.read(MAX_BODY_BYTES + 1 - len(body))
            if not chunk:
                break
            body += chunk
        context = local_context(fc3=fc3)
        loop = asyncio.get_running_loop()
        if fc3:
            event = _fc3_event(request, body, context)
            return await loop.run_in_executor(None, _call_fc3, target, event, context)
        environ = _environ(request, body, context)
        return await loop.run_in_executor(None, _call_wsgi, target, environ)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", dispatch)
    return app


def serve(host: str = "127.0.0.1", port: int = 9000, *, fc3: bool = False) -> None:
    """Serve until interrupted (Ctrl-C)."""
    web.run_app(build_app(fc3=fc3), host=host, port=port, print=None)


@dataclass
class RunningWebhook:
    url: str
    stop: Callable[[], None]


def start_in_thread(
    host: str = "127.0.0.1", port: int = 0, *, fc3: bool = False, handler: Handler | None = None
) -> RunningWebhook:
    """Serve on a background thread (tests, ``dbupgrade local up``); ``port=0`` picks a free port."""
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(build_app(fc3=fc3, handler=handler), access_log=None)
    loop.run_until_complete(runner.setup())
    site = web.TCPSite(runner, host, port)
    loop.run_until_complete(site.start())
    bound_port = runner.addresses[0][1]
    thread = threading.Thread(target=loop.run_forever, name="dbupgrade-webhook", daemon=True)
    thread.start()

    def stop() -> None:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()

    return RunningWebhook(url=f"http://{host}:{bound_port}", stop=stop)
