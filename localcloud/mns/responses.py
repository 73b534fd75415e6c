"""localcloud mns protocol layer (placeholder until it lands)."""

from __future__ import annotations

from typing import Any

from aiohttp import web


async def handle(cloud: Any, request: web.Request) -> web.StreamResponse:
    return web.Response(status=501, text="not implemented")
