"""The webhook app: routes, authentication, and the reply for each outcome.

Routes (``/openapi.json`` documents them): ``POST /upgrades``, ``GET /upgrades/{instance_id}``,
``GET /booked``, ``POST /booked/{instance_id}/reschedule``, ``POST /booked/{instance_id}/cancel``
(``dbupgrade.booked``), ``GET /healthz``, ``GET /openapi.json``. The GETs take the status bearer
token; the booked POSTs are signed like ``POST /upgrades``.

Why a small router of our own and not Powertools' ``APIGatewayHttpResolver``: four fixed routes
need no framework, FC hands us neither API Gateway event (so the resolver would sit behind two
adapters: WSGI/FC 3.0 -> API Gateway v2 -> resolver -> back), and its OpenAPI generation needs
pydantic, which the layer does not ship. Measured with ``python -X importtime`` here, on top of the
core (which already loads the Powertools Logger): ``aws_lambda_powertools.event_handler`` adds
~180 ms; this package adds ~25 ms (standardwebhooks and jmespath included, its sources compiled).

How a POST is processed, and what is recorded (every authenticated request ends in exactly one
recorded and notified outcome per item; requests refused before authentication record nothing,
so an anonymous caller cannot fill the store or the topic):

1. body over 64 KiB -> 413; not UTF-8 -> 400          (not recorded: not authenticated yet)
2. signature check -> 401                             (not recorded)
3. not JSON / not an object / nested too deep -> 400  (recorded as rejected, field "body")
4. each request object (or the mapped foreign payload) -> ``parse_request`` -> 422 naming the field
   (recorded as rejected), else ``Upgrader.run`` -> the outcome's reply.

Outcome -> HTTP status:

- submitted 202 (``request_id`` = the upgrade API's RequestId; the same on every redelivery); a dry
  run that would submit 200 (``dry_run`` true, reason ``dry_run``); a dry run is never recorded and
  carries the readiness report (``readiness``: verdict and findings); ``awaiting_backup`` 202 (the
  backup gate took a backup first: the tracker submits the upgrade once it finished, ``backup_id``);
- the same delivery already in flight (``in_progress`` / ``duplicate_in_flight``, not recorded)
  409 + Retry-After: a retry gets the first run's outcome, or runs again once its lock expired;
- noop / in_progress 200; deferred 200 (outside ``DBUPGRADE_WINDOW`` with policy ``reject``:
  nothing was submitted and nothing will be by itself; ``message`` names the window, resend inside it);
- rejected: invalid input (code ``InvalidRequest``) 422 naming ``field``; rejected by the pre-check
  or the scope guard (not found, not ready, downgrade, not offered, out of scope, a ``blocked``
  readiness report) 409, ``reason`` says which;
- failed: a configuration error (reason ``configuration``: a wrong AccessKey, a missing RAM
  permission, a wrong endpoint) 500 ``misconfigured``, ``detail`` saying what to fix and the code;
  the instance busy with another task (reason ``instance_busy``) 503 + Retry-After; a throttling
  code 429 + Retry-After; any other 502 with the API's ``code`` (+ Retry-After when retries were
  exhausted on a transient error). None of these but the last is remembered: a retry runs again;
- the store unavailable: 503 + Retry-After (nothing called, nothing recorded).

A problem's ``detail`` is a sentence for a person with the API's code in it, never an exception's
text: a transport failure's message is a Python repr (``HTTPConnectionPool(...)``), so 5xx details
are written here from the outcome's reason and code (the outcome itself rides along in ``outcome``).
Malformed values anywhere in a body (a 400-digit number, a mapping expression meeting the wrong
type) are rejected item by item naming the field; they never fail the other items of a batch.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Mapping
from typing import Any, NamedTuple
from urllib.parse import parse_qs

from dbupgrade import __version__
from dbupgrade.cloudapi import CloudError
from dbupgrade.context import InvocationContext, adapt_context
from dbupgrade.errors import ConfigError, StoreUnavailable
from dbupgrade.logging import bind_invocation, bind_request, logger, register_secret
from dbupgrade.model import InvalidRequest, Outcome
from dbupgrade.request import BODY_DIGEST_PREFIX, parse_request
from dbupgrade.store import Locked
from dbupgrade.usecase import Upgrader
from dbupgrade.webhook.adapters import (
    fc3_reply,
    request_from_environ,
    request_from_fc3_event,
    wsgi_reply,
)
from dbupgrade.webhook.auth import (
    AUTH_VARIABLE,
    SECRET_VARIABLE,
    STATUS_TOKEN_VARIABLE,
    Authenticator,
    AuthMode,
    StatusReadAuth,
    Unauthorized,
    Verified,
    auth_mode,
    authenticator,
)
from dbupgrade.webhook.http import MAX_BATCH_ITEMS, HttpRequest, HttpResponse, json_response, problem
from dbupgrade.webhook.mapping import PayloadMapping
from dbupgrade.webhook.openapi import openapi_document

MAX_JSON_DEPTH = 32
THROTTLED_RETRY_AFTER_SECONDS = 10
IN_FLIGHT_RETRY_AFTER_SECONDS = 30
BUSY_RETRY_AFTER_SECONDS = 60  # another task (a backup, a spec change) takes minutes


class WebhookSettings(NamedTuple):
    """The webhook's own configuration, read once per instance.

    This and ``ItemReply`` are NamedTuples (immutable, compared by value): a frozen dataclass execs
    its generated methods at import, ~0.5 ms each of every cold start (bench/NOTES.md).
    """

    mode: AuthMode
    authenticator: Authenticator | None  # None: the mode needs a secret and none is set
    status_auth: StatusReadAuth
    mapping: PayloadMapping | None

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> WebhookSettings:
        secret = env.get(SECRET_VARIABLE, "").strip() or None
        status_token = env.get(STATUS_TOKEN_VARIABLE, "").strip() or None
        register_secret(secret, pinned=True)
        register_secret(status_token, pinned=True)
        mode = auth_mode(env.get(AUTH_VARIABLE))
        if mode == "none":
            logger.warning(
                "webhook authentication is OFF (DBUPGRADE_WEBHOOK_AUTH=none): every POST is accepted "
                "unsigned; only safe behind a trigger that authenticates callers (FC FUNCTION auth)",
                extra={"variable": AUTH_VARIABLE},
            )
        return cls(
            mode=mode,
            authenticator=authenticator(mode, secret),
            status_auth=StatusReadAuth(status_token, open_access=mode == "none"),
            mapping=PayloadMapping.from_env(env),
        )


class ItemReply(NamedTuple):
    """The reply for one request object: an HTTP status and its JSON body."""

    status: int
    body: dict[str, Any]
    retry_after: int | None = None

    def response(self) -> HttpResponse:
        headers = {"retry-after": str(self.retry_after)} if self.retry_after is not None else {}
        if self.status >= 400:
            return HttpResponse(
                self.status,
                json.dumps(self.body, separators=(",", ":"), ensure_ascii=False).encode(),
                {"content-type": "application/problem+json", **headers},
            )
        return json_response(self.status, self.body, headers)


class WebhookApp:
    """One app for every entry shape; settings and the Upgrader are built on first use and kept.

    Example::

        app = WebhookApp()
        app(environ, start_response)        # FC 2.0 WSGI
        app(event_bytes, context)           # FC 3.0 HTTP event -> {"statusCode", ...}
    """

    def __init__(
        self, env: Mapping[str, str] | None = None, *, upgrader_options: Mapping[str, Any] | None = None
    ) -> None:
        """``env``: the configuration (default ``os.environ``, read on first use);
        ``upgrader_options``: keyword arguments for ``Upgrader.from_env`` (e.g. ``retry``)."""
        self._env = env
        self._upgrader_options = dict(upgrader_options or {})
        self._settings: WebhookSettings | None = None
        self._upgrader: Upgrader | None = None
        self._lock = threading.Lock()  # the local server runs handlers on a thread pool

    def __call__(self, first: Any, second: Any) -> Any:
        """Dispatch on the entry shape: a WSGI environ dict, else an FC 3.0 HTTP event."""
        if isinstance(first, Mapping) and "REQUEST_METHOD" in first:
            request = request_from_environ(first)
            return wsgi_reply(self.handle(request, first.get("fc.context")), second)
        return fc3_reply(self.handle(request_from_fc3_event(first), second))

    def handle(self, request: HttpRequest, context: Any = None) -> HttpResponse:
        """Answer one request; never raises, never leaks internals."""
        invocation = adapt_context(context)
        bind_invocation(invocation)
        bind_request(None, None)  # a warm instance must not tag this request with the last one's ids
        try:
            response = self._route(request, invocation)
        except ConfigError as error:
            logger.error("webhook misconfigured", extra={"variable": error.variable, "error": str(error)})
            response = problem(
                500,
                "misconfigured",
                f"misconfigured: {error.variable}",
                correlation_id=invocation.aws_request_id,
            )
        except StoreUnavailable as error:
            logger.warning("store unavailable", extra={"error": type(error).__name__})
            response = _store_unavailable(invocation)
        except Exception:
            logger.exception("webhook request failed")
            response = problem(
                500,
                "internal",
                "the request could not be processed; quote the correlation_id when reporting this",
                correlation_id=invocation.aws_request_id,
            )
        logger.info(
            "webhook reply",
            extra={"method": request.method, "path": request.path, "status": response.status},
        )
        return response

    def _route(self, request: HttpRequest, invocation: InvocationContext) -> HttpResponse:
        path, method = request.path, request.method
        if path == "/upgrades":
            if method != "POST":
                return _method_not_allowed("POST")
            return self._post_upgrades(request, invocation)
        if path.startswith("/upgrades/") and path.count("/") == 2:
            if method != "GET":
                return _method_not_allowed("GET")
            return self._get_status(request, path.removeprefix("/upgrades/"), invocation)
        if path == "/booked" or path.startswith("/booked/"):
            return self._booked(request, path, invocation)
        if path == "/healthz":
            if method != "GET":
                return _method_not_allowed("GET")
            settings = self._load_settings()
            return json_response(200, {"status": "ok", "version": __version__, "auth": settings.mode})
        if path == "/openapi.json":
            if method != "GET":
                return _method_not_allowed("GET")
            return json_response(200, openapi_document())
        return problem(404, "not-found", f"no route for {path}")

    # -- configuration, built lazily and kept while the instance is warm --

    def _environment(self) -> Mapping[str, str]:
        return os.environ if self._env is None else self._env

    def _load_settings(self) -> WebhookSettings:
        with self._lock:
            if self._settings is None:
                self._settings = WebhookSettings.from_env(self._environment())
            return self._settings

    def _load_upgrader(self) -> Upgrader:
        with self._lock:
            if self._upgrader is None:
                # The webhook's own variables (secret, status token, mapping) are read by
                # WebhookSettings only; the core's Config never sees them.
                self._upgrader = Upgrader.from_env(self._environment(), **self._upgrader_options)
            return self._upgrader

    # -- routes --

    def _get_status(
        self, request: HttpRequest, instance_id: str, invocation: InvocationContext
    ) -> HttpResponse:
        settings = self._load_settings()
        try:
            settings.status_auth.check(request)
        except Unauthorized as error:
            return _unauthorized(str(error), scheme="Bearer")
        outcome = self._load_upgrader().status(instance_id)
        if outcome is None:
            return problem(
                404,
                "no-outcome",
                f"no upgrade outcome is recorded for {instance_id}",
                instance_id=instance_id,
            )
        return json_response(200, outcome.to_dict())

    def _booked(self, request: HttpRequest, path: str, invocation: InvocationContext) -> HttpResponse:
        """``GET /booked`` (bearer), ``POST /booked/{instance_id}/reschedule|cancel`` (signed)."""
        from dbupgrade.booked import Booked, BookingNotFound, BookingRefused

        parts = path.strip("/").split("/")
        settings = self._load_settings()
        if len(parts) == 1:
            if request.method != "GET":
                return _method_not_allowed("GET")
            try:
                settings.status_auth.check(request)
            except Unauthorized as error:
                return _unauthorized(str(error), scheme="Bearer")
            query = {k: v[-1] for k, v in parse_qs(request.query).items()}
            try:
                rows = Booked(self._load_upgrader(), invocation).bookings(
                    engine=query.get("engine"),
                    region=query.get("region"),
                    instance_id=query.get("instance_id"),
                )
            except InvalidRequest as error:
                return problem(422, "invalid-field", str(error), field=error.field)
            except CloudError as error:
                return _cloud_problem(error)
            return json_response(200, {"booked": rows})
        if len(parts) != 3 or parts[2] not in ("reschedule", "cancel"):
            return problem(404, "not-found", f"no route for {path}")
        if request.method != "POST":
            return _method_not_allowed("POST")
        if request.body_error is not None:
            return request.body_error
        if settings.authenticator is None:
            return problem(503, "not-configured", f"the webhook is not configured: set {SECRET_VARIABLE}")
        try:
            settings.authenticator.verify(request)
        except Unauthorized as error:
            return _unauthorized(str(error), scheme=settings.mode)
        instance_id, action = parts[1], parts[2]
        try:
            body = _parse_body(request.body.decode("utf-8") or "{}")
            booked = Booked(self._load_upgrader(), invocation)
            region = body.get("region") if isinstance(body.get("region"), str) else None
            if action == "reschedule":
                switch_time = body.get("switch_time")
                if not isinstance(switch_time, str):
                    raise InvalidRequest("switch_time", "is required: 2026-12-01T18:00:00Z (UTC)")
                outcome = booked.reschedule(instance_id, switch_time, region=region)
            else:
                outcome = booked.cancel(instance_id, region=region)
        except (InvalidRequest, UnicodeDecodeError) as error:
            field = error.field if isinstance(error, InvalidRequest) else "body"
            return problem(422, "invalid-field", str(error), field=field)
        except BookingNotFound as error:
            return problem(404, "no-booking", str(error), instance_id=instance_id)
        except CloudError as error:
            return _cloud_problem(error)
        except BookingRefused as error:
            # The service's own answer (e.g. SwitchTimeAfterDeadline): nothing changed.
            return problem(
                409,
                "refused",
                f"the service refused it, nothing changed: {error.message} ({error.code})",
                code=error.code,
                instance_id=instance_id,
            )
        except Locked:
            return problem(
                409,
                "in-flight",
                "the tracker is checking this instance; retry",
                headers={"retry-after": "10"},
            )
        return json_response(200, outcome.to_dict())

    def _post_upgrades(self, request: HttpRequest, invocation: InvocationContext) -> HttpResponse:
        if request.body_error is not None:
            return request.body_error
        settings = self._load_settings()
        if settings.authenticator is None:
            return problem(
                503,
                "not-configured",
                f"the webhook is not configured: set {SECRET_VARIABLE} (or DBUPGRADE_WEBHOOK_AUTH=none "
                "behind an authenticating trigger)",
            )
        try:
            text = request.body.decode("utf-8")
        except UnicodeDecodeError as error:
            return problem(400, "malformed-body", f"the body is not UTF-8 (byte {error.start})", field="body")
        try:
            verified = settings.authenticator.verify(request)
        except Unauthorized as error:
            logger.warning("webhook signature refused", extra={"reason": str(error), "auth": settings.mode})
            return _unauthorized(str(error), scheme=settings.mode)

        upgrader = self._load_upgrader()
        correlation_id = invocation.aws_request_id
        try:
            payload = _parse_body(text)
        except InvalidRequest as error:
            upgrader.reject(error, None, source="webhook", context=invocation, correlation_id=correlation_id)
            return problem(
                400, "malformed-body", str(error), field=error.field, correlation_id=correlation_id
            )

        if settings.mapping is None and "upgrades" in payload:
            return self._post_batch(payload, verified, settings, upgrader, invocation)
        reply = self._submit_one(payload, verified, settings, upgrader, invocation)
        return reply.response()

    def _post_batch(
        self,
        payload: Mapping[str, Any],
        verified: Verified,
        settings: WebhookSettings,
        upgrader: Upgrader,
        invocation: InvocationContext,
    ) -> HttpResponse:
        items = payload["upgrades"]
        error: InvalidRequest | None = None
        if set(payload) != {"upgrades"}:
            extra = sorted(str(k) for k in payload if k != "upgrades")
            error = InvalidRequest(extra[0], "a batch body has only the 'upgrades' member")
        elif not isinstance(items, list) or not items:
            error = InvalidRequest("upgrades", "must be a non-empty list of request objects")
        elif len(items) > MAX_BATCH_ITEMS:
            error = InvalidRequest(
                "upgrades", f"has {len(items)} items; at most {MAX_BATCH_ITEMS} per request"
            )
        if error is not None:
            outcome = upgrader.reject(
                error,
                payload,
                source="webhook",
                context=invocation,
                correlation_id=invocation.aws_request_id,
            )
            return _invalid_reply(error, outcome, invocation).response()

        replies: list[ItemReply] = []
        for item in items:
            try:
                # One delivery id for every item: the idempotency key also holds the instance and version.
                replies.append(self._submit_one(item, verified, settings, upgrader, invocation))
            except StoreUnavailable:
                # Items before this one are done (and deduplicated on redelivery); this one and the
                # rest are not: the sender retries the whole delivery after Retry-After.
                replies.extend(_store_unavailable_item(invocation) for _ in range(len(items) - len(replies)))
                break
        statuses = {reply.status for reply in replies}
        status = statuses.pop() if len(statuses) == 1 else 207
        retry_after = max((r.retry_after for r in replies if r.retry_after is not None), default=None)
        headers = {"retry-after": str(retry_after)} if retry_after is not None else {}
        results = [{"index": i, "http_status": r.status, **r.body} for i, r in enumerate(replies)]
        return json_response(status, {"results": results}, headers)

    def _submit_one(
        self,
        data: Any,
        verified: Verified,
        settings: WebhookSettings,
        upgrader: Upgrader,
        invocation: InvocationContext,
    ) -> ItemReply:
        delivery_id, body_digest = verified.delivery_id, verified.body_digest
        correlation_id = invocation.aws_request_id
        try:
            if not isinstance(data, Mapping):
                raise InvalidRequest("body", f"each request must be a JSON object, got {type(data).__name__}")
            try:
                fields = settings.mapping.apply(data) if settings.mapping is not None else data
                request = parse_request(
                    fields, source="webhook", correlation_id=correlation_id, delivery_id=delivery_id
                )
            except (ValueError, TypeError, ArithmeticError, RecursionError) as unexpected:
                # Reading the input is pure: whatever it raises, the input caused. This item is
                # rejected and the batch's other items go on. (InvalidRequest is a ValueError.)
                if isinstance(unexpected, InvalidRequest):
                    raise
                logger.warning("unreadable request item", extra={"error": type(unexpected).__name__})
                raise InvalidRequest("body", "could not be read as an upgrade request") from None
        except InvalidRequest as error:
            outcome = upgrader.reject(
                error,
                data if isinstance(data, Mapping) else None,
                source="webhook",
                context=invocation,
                correlation_id=correlation_id,
            )
            return _invalid_reply(error, outcome, invocation)
        # Without a delivery id (hub-sha256 senders sign only the body) the Upgrader's idempotency
        # key falls back to the ticket id, so a redelivered ticket is still submitted once; without
        # a ticket either, the body's digest recognises a redelivery for BODY_DEDUPE_SECONDS.
        if request.delivery_id is None and request.ticket_id is None and body_digest is not None:
            request = request.with_(delivery_id=BODY_DIGEST_PREFIX + body_digest)
        return outcome_reply(upgrader.run(request, invocation))


def outcome_reply(outcome: Outcome) -> ItemReply:
    """The HTTP status and body for an outcome (the table in the module docstring)."""
    if outcome.status in ("submitted", "awaiting_backup"):
        # A dry run that would submit accepted nothing: 200, so no sender takes it for a submission.
        # Waiting for its backup is accepted too: the tracker submits it once the backup finished.
        return ItemReply(200 if outcome.dry_run else 202, outcome.to_dict())
    if outcome.reason == "duplicate_in_flight":
        # Another invocation holds this delivery's lock, or died holding it with its outcome
        # unrecorded (the store went down mid-request): the sender must come back, not stop here.
        body = _problem_body(409, "in-flight", outcome, title="Request in flight")
        return ItemReply(409, body, retry_after=IN_FLIGHT_RETRY_AFTER_SECONDS)
    if outcome.status in ("noop", "in_progress", "deferred"):
        return ItemReply(200, outcome.to_dict())
    if outcome.status == "rejected":
        if outcome.code == "InvalidRequest":
            body = _problem_body(
                422, "invalid-field", outcome, title="Invalid request field", field=outcome.field
            )
            return ItemReply(422, body)
        return ItemReply(
            409, _problem_body(409, "rejected", outcome, title="Upgrade rejected", field=outcome.field)
        )
    if outcome.reason == "configuration":
        # The function's key, role or endpoint is wrong: the sender cannot fix it, an operator must.
        body = _problem_body(500, "misconfigured", outcome, title="Function misconfigured")
        return ItemReply(500, body)
    if outcome.reason == "instance_busy":
        body = _problem_body(503, "instance-busy", outcome, title="Instance busy")
        return ItemReply(503, body, retry_after=BUSY_RETRY_AFTER_SECONDS)
    if "Throttling" in (outcome.code or ""):
        body = _problem_body(429, "throttled", outcome, title="Cloud API throttled")
        return ItemReply(429, body, retry_after=THROTTLED_RETRY_AFTER_SECONDS)
    # A transient failure (5xx, network) is not remembered as failed: a retry may succeed.
    retry_after = THROTTLED_RETRY_AFTER_SECONDS if outcome.reason == "retries_exhausted" else None
    body = _problem_body(502, "upstream-failed", outcome, title="Cloud API call failed")
    return ItemReply(502, body, retry_after=retry_after)


# Codes ``cloudapi`` gives a failure that never reached the API: their message is the client
# library's exception text (``HTTPConnectionPool(host=...)``), not a sentence for a person.
TRANSPORT_CODES = frozenset({"ConnectionError", "Timeout", "ClientError"})
# Failures whose message we write ourselves (what to fix, what to check): kept as the detail.
OWN_MESSAGE_REASONS = frozenset({"configuration", "instance_busy", "unknown_result"})
API_MESSAGE_CHARS = 300


def problem_detail(outcome: Outcome) -> str:
    """The ``detail`` of an outcome's problem: a sentence for a person, with the code.

    Refusals and the failures we explain ourselves keep their message; a failure carrying a
    client library's exception text gets a sentence written from its reason instead.

    >>> problem_detail(Outcome("failed", "r-1", "7.0", reason="retries_exhausted", code="ConnectionError",
    ...                        message="HTTPConnectionPool(host='x', port=1): Max retries exceeded"))
    'the cloud API could not be reached or kept failing; send the request again later (ConnectionError)'
    """
    message, code = outcome.message, outcome.code
    if outcome.status != "failed" or outcome.reason in OWN_MESSAGE_REASONS:
        text = message or outcome.reason or outcome.status
    elif "Throttling" in (code or ""):
        text = "the cloud API is throttling these calls; send the request again later"
    elif outcome.reason == "api_error" and message and code not in TRANSPORT_CODES:
        # The API's own sentence, from its error body.
        text = f"the cloud API refused the call: {message[:API_MESSAGE_CHARS]}"
    else:
        text = "the cloud API could not be reached or kept failing; send the request again later"
    return f"{text} ({code})" if code and code not in text else text


def _problem_body(status: int, slug: str, outcome: Outcome, *, title: str, **extra: Any) -> dict[str, Any]:
    body = json.loads(
        problem(
            status,
            slug,
            problem_detail(outcome),
            title=title,
            code=outcome.code,
            reason=outcome.reason,
            correlation_id=outcome.correlation_id,
            **extra,
        ).body
    )
    body["outcome"] = outcome.to_dict()
    return body


def _invalid_reply(error: InvalidRequest, outcome: Outcome, invocation: InvocationContext) -> ItemReply:
    body = json.loads(
        problem(
            422,
            "invalid-field",
            str(error),
            title="Invalid request field",
            field=error.field,
            allowed=error.allowed,
            correlation_id=invocation.aws_request_id,
        ).body
    )
    body["outcome"] = outcome.to_dict()
    return ItemReply(422, body)


def _store_unavailable(invocation: InvocationContext) -> HttpResponse:
    return _store_unavailable_item(invocation).response()


def _store_unavailable_item(invocation: InvocationContext) -> ItemReply:
    seconds = StoreUnavailable.retry_after_seconds
    body = json.loads(
        problem(
            503,
            "store-unavailable",
            "the idempotency store is unavailable; nothing was submitted, retry later",
            correlation_id=invocation.aws_request_id,
        ).body
    )
    return ItemReply(503, body, retry_after=seconds)


def _cloud_problem(error: CloudError) -> HttpResponse:
    """A read of the booked upgrades that failed: the API's code, never a client library's text."""
    if error.configuration:
        return problem(500, "misconfigured", error.explain(), code=error.code)
    return problem(502, "upstream-failed", f"the cloud API call failed ({error.code})", code=error.code)


def _unauthorized(detail: str, *, scheme: str) -> HttpResponse:
    challenge = {"standard": "Webhook", "hub-sha256": "HubSignature"}.get(scheme, scheme)
    return problem(401, "unauthorized", detail, headers={"www-authenticate": challenge})


def _method_not_allowed(allowed: str) -> HttpResponse:
    return problem(405, "method-not-allowed", f"use {allowed}", headers={"allow": allowed})


def _parse_body(text: str) -> dict[str, Any]:
    try:
        payload = json.loads(text)
    except RecursionError:
        raise InvalidRequest("body", f"is nested deeper than {MAX_JSON_DEPTH} levels") from None
    except json.JSONDecodeError as error:
        raise InvalidRequest(
            "body", f"is not valid JSON ({error.msg} at line {error.lineno} column {error.colno})"
        ) from None
    except ValueError:
        # Python refuses integers of more than 4300 digits (sys.get_int_max_str_digits).
        raise InvalidRequest("body", "holds a number too long to read") from None
    if not isinstance(payload, dict):
        raise InvalidRequest("body", f"must be a JSON object, got {type(payload).__name__}")
    if _depth(payload) > MAX_JSON_DEPTH:
        raise InvalidRequest("body", f"is nested deeper than {MAX_JSON_DEPTH} levels")
    return payload


def _depth(value: Any) -> int:
    """Nesting depth of parsed JSON, iteratively (deep input must not exhaust the stack here)."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        current, level = stack.pop()
        deepest = max(deepest, level)
        if deepest > MAX_JSON_DEPTH:
            return deepest
        children = (
            current.values() if isinstance(current, dict) else current if isinstance(current, list) else ()
        )
        stack.extend((child, level + 1) for child in children if isinstance(child, (dict, list)))
    return deepest
