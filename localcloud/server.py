"""The one HTTP server: routes each request by its own shape to a product's protocol layer.

- ``/_localcloud/...``             introspection (calls, clock, faults, timers, state, reset)
- ``/topics/...``, ``/queues/...`` MNS XML API (``Authorization: MNS ak:sig``; ``mns/urls.py``)
- ``/2016-08-15/...``              FC 2.0 API (``Authorization: FC ak:sig``; ``fc/urls.py``)
- anything else                    the OpenAPI RPC gateway (openapi/responses.py), which routes to
                                   R-kvstore and Dds by API version (``kvstore/urls.py``, ``dds/urls.py``)

Built on aiohttp (already in the dependency closure of alibabacloud-tea-openapi, so it costs the
project nothing): asyncio sets TCP_NODELAY and aiohttp writes a small reply's headers and body in one
send, which avoids the 40 ms Nagle stalls of ``http.server``.
"""

from __future__ import annotations

import asyncio
import json
import threading
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from localcloud.cloud import Cloud
from localcloud.fc import urls as fc_urls
from localcloud.mns import urls as mns_urls
from localcloud.openapi import responses as openapi_responses

CLOUD_KEY = web.AppKey("cloud", Cloud)
# The products routed by path, from their urls.py: (path prefix, handler).
PATH_ROUTES = [(prefix, urls.handler) for urls in (mns_urls, fc_urls) for prefix in urls.url_paths]


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(
        body=json.dumps(data, default=str).encode(), status=status, content_type="application/json"
    )


async def _introspect(cloud: Cloud, request: web.Request) -> web.StreamResponse:
    what = request.path[len("/_localcloud/") :].strip("/")
    if what == "calls":
        if request.method == "DELETE":
            cloud.calls.clear()
            return _json({"cleared": True})
        if request.query.get("count", "0") not in ("0", "false", ""):
            return _json({"counts": cloud.calls.counts(request.query)})
        return _json({"calls": cloud.calls.query(request.query)})
    if what == "clock":
        if request.method == "POST":
            body = await request.json() if request.can_read_body else {}
            try:
                cloud.clock.advance(float(body.get("advance", 0)))
            except (TypeError, ValueError) as exc:
                return _json({"error": f"advance: {exc}"}, 400)
            cloud.timers.fire_due()  # before replying: the caller sees the firings it caused
            cloud.save()
        return _json({"now": cloud.clock.utcnow().isoformat(), "offset": cloud.clock.offset})
    if what == "faults":
        if request.method == "POST":
            body = await request.json()
            try:
                if "rules" in body or "seed" in body:
                    cloud.faults.configure({k: body[k] for k in ("seed", "rules") if k in body})
                if "rate_limits" in body:
                    cloud.faults.set_rate_limits(body["rate_limits"])
                if "published_quotas" in body:
                    cloud.faults.set_published_quotas(body["published_quotas"])
            except (TypeError, ValueError) as exc:
                return _json({"error": str(exc)}, 400)
        return _json(cloud.faults.describe())
    if what == "timers":
        return _json({"timers": cloud.timers.describe()})
    if what == "state":
        return _json(cloud.snapshot())
    if what == "reset" and request.method == "POST":
        cloud.reset()
        cloud.save()
        return _json({"reset": True})
    if what in ("", "health"):
        return _json({"ok": True, "accounts": cloud.accounts.account_ids})
    return _json({"error": f"unknown introspection path /_localcloud/{what}"}, 404)


def create_app(cloud: Cloud) -> web.Application:
    async def dispatch(request: web.Request) -> web.StreamResponse:
        path = request.path
        if path.startswith("/_localcloud/") or path == "/_localcloud":
            return await _introspect(cloud, request)
        for prefix, handler in PATH_ROUTES:
            if path.startswith(prefix):
                return await handler(cloud, request)
        return await openapi_responses.handle(cloud, request)

    app = web.Application(client_max_size=64 * 1024 * 1024)
    app[CLOUD_KEY] = cloud
    app.router.add_route("*", "/{tail:.*}", dispatch)
    return app


@dataclass
class RunningServer:
    """A localcloud serving on a background thread (tests, the demo, ``local invoke``)."""

    cloud: Cloud
    url: str
    port: int
    _loop: asyncio.AbstractEventLoop
    _runner: web.AppRunner
    _thread: threading.Thread

    def stop(self) -> None:
        fut = asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop)
        fut.result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self.cloud.close()

    def __enter__(self) -> RunningServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_in_thread(cloud: Cloud, host: str = "127.0.0.1", port: int = 0) -> RunningServer:
    """Serve ``cloud`` on a daemon thread; returns once the socket is listening."""
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(create_app(cloud), access_log=None, handle_signals=False)
    ready: dict[str, Any] = {}
    started = threading.Event()

    def run() -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(runner.setup())
            site = web.TCPSite(runner, host, port, reuse_address=True)
            loop.run_until_complete(site.start())
            ready["port"] = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        except BaseException as exc:  # surfaced to the caller below
            ready["error"] = exc
            started.set()
            return
        started.set()
        loop.run_forever()

    thread = threading.Thread(target=run, name="localcloud", daemon=True)
    thread.start()
    started.wait(timeout=30)
    if "error" in ready:
        raise RuntimeError(f"localcloud could not start: {ready['error']}") from ready["error"]
    bound = ready["port"]
    url = f"http://{host}:{bound}"
    cloud.fc.bind(url)  # functions' ${LOCALCLOUD_URL} needs it before the first direct invoke
    return RunningServer(cloud, url, bound, loop, runner, thread)


async def serve_forever(cloud: Cloud, host: str = "127.0.0.1", port: int = 9000) -> None:
    """Foreground serving for ``python -m localcloud``: prints the URL once ready, stops on SIGINT/SIGTERM."""
    import signal

    runner = web.AppRunner(create_app(cloud), access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, host, port, reuse_address=True)
    await site.start()
    bound = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    cloud.fc.bind(f"http://{host}:{bound}")
    print(f"localcloud listening on http://{host}:{bound}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()
        cloud.close()
        print("localcloud stopped", flush=True)
