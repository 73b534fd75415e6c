"""Webhook function: change tickets over HTTP (FC 2.0 WSGI and FC 3.0 HTTP event alike)."""

from dbupgrade import startup

startup.pause_collector()  # for the imports and the first request: dbupgrade.startup says why

from dbupgrade.webhook.handler import handler as serve  # noqa: E402

handler = startup.collector_back_after_first_call(serve)

__all__ = ["handler"]
