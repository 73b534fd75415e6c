"""The webhook function's handler: one ``WebhookApp`` per instance, reused while warm.

Example (``functions/webhook/index.py``)::

    from dbupgrade.webhook.handler import handler
"""

from __future__ import annotations

from typing import Any

from dbupgrade.webhook.app import WebhookApp

# Cheap to build: settings and the Upgrader are read on the first request, then kept.
app = WebhookApp()


def handler(first: Any, second: Any) -> Any:
    """FC 2.0 ``(environ, start_response)`` -> body iterable; FC 3.0 ``(event, context)`` -> reply dict."""
    return app(first, second)
