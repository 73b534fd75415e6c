"""The HTTP entry point for change tickets (the ``webhook`` function).

- ``dbupgrade.webhook.handler.handler``: the FC handler, for both FC 2.0 WSGI
  (``handler(environ, start_response)``) and the FC 3.0 HTTP event (``handler(event, context)``).
- ``dbupgrade.webhook.app.WebhookApp``: the app underneath (routes, auth, replies).
- ``dbupgrade.webhook.serve.serve``: the same handler behind a local HTTP server (the CLI's
  ``dbupgrade local serve webhook``).

Sample events (``events/``): ``webhook-upgrade.json`` is a request body as a sender POSTs it (sign
it at send time); ``webhook-jira.json`` is a Jira issue webhook for ``DBUPGRADE_WEBHOOK_MAPPING``;
``webhook-fc3-http.json`` is an FC 3.0 HTTP event whose Standard Webhooks signature was made with
the documented test secret ``whsec_ZGJ1cGdyYWRlLWV4YW1wbGUtd2ViaG9vay1zZWNyZXQ=`` at its
``webhook-timestamp`` (2026-11-23T10:00:00Z), so it verifies only within 5 minutes of that time:
re-sign it (``dbupgrade.webhook.auth.standard_webhook_headers``) to send it later.

Submodules are imported on demand so that, e.g., the auth helpers load without the cloud clients.
"""
