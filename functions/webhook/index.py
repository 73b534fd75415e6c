"""Webhook function: change tickets over HTTP (FC 2.0 WSGI and FC 3.0 HTTP event alike)."""

from dbupgrade.webhook.handler import handler

__all__ = ["handler"]
