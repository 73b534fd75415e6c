"""Who may POST a change ticket, and who may read an instance's status.

``DBUPGRADE_WEBHOOK_AUTH`` picks how a POST is authenticated:

- ``standard`` (default): Standard Webhooks (``webhook-id``, ``webhook-timestamp``,
  ``webhook-signature``; 5-minute tolerance; several space-separated signatures, any one may match;
  constant-time compare) with ``DBUPGRADE_WEBHOOK_SECRET`` = ``whsec_<base64>``. The verified
  ``webhook-id`` becomes the delivery id, so a redelivery is recognised as the same request.
- ``hub-sha256``: for senders that can only sign the body (Jira Cloud, GitHub):
  ``X-Hub-Signature-256: sha256=<hex>`` (Jira Cloud sends it as ``X-Hub-Signature``) = HMAC-SHA256
  of the raw body keyed with the secret as UTF-8. There is no timestamp, so no replay window:
  redeliveries are recognised by the ticket id instead, or, for a request without one, by the
  body's SHA-256 for ``BODY_DEDUPE_SECONDS`` (``dbupgrade.request``).
- ``none``: no check, for an HTTP trigger whose own auth (FC ``FUNCTION`` auth) already did it.
  Logged as a WARNING when the webhook starts, so an accidental ``none`` is seen.

The variable takes exactly one of those words (unset means ``standard``): a near miss such as
``None`` or ``hub`` is a configuration error, never guessed at.

A secret shorter than ``SECRET_MIN_BYTES`` is refused when the webhook starts: Standard Webhooks
asks for a random secret "between 24 bytes (192 bits) and 64 bytes (512 bits)" (standard-webhooks
spec, "Signature scheme"), counted on the key ``whsec_`` decodes to; hub-sha256 keys HMAC with the
secret's UTF-8 bytes, so those are counted. The status token is a bearer secret: the same floor.

With ``standard`` or ``hub-sha256`` and no secret, every POST is refused ("not configured") rather
than accepted unsigned. ``GET /upgrades/{id}`` is not signed (a signature over an empty GET body
would be awkward for an operator or a ticketing system): it takes
``Authorization: Bearer <DBUPGRADE_WEBHOOK_STATUS_TOKEN>``; unset, status reads are refused,
except under ``none``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from datetime import datetime, timezone
from typing import Literal, NamedTuple, Protocol

from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from dbupgrade.errors import ConfigError
from dbupgrade.webhook.http import HttpRequest

AUTH_VARIABLE = "DBUPGRADE_WEBHOOK_AUTH"
SECRET_VARIABLE = "DBUPGRADE_WEBHOOK_SECRET"  # noqa: S105 (a variable name, not a secret)
STATUS_TOKEN_VARIABLE = "DBUPGRADE_WEBHOOK_STATUS_TOKEN"  # noqa: S105
AUTH_MODES = ("standard", "hub-sha256", "none")
AuthMode = Literal["standard", "hub-sha256", "none"]
SECRET_MIN_BYTES = 24

STANDARD_HEADERS = ("webhook-id", "webhook-timestamp", "webhook-signature")
HUB_HEADERS = ("x-hub-signature-256", "x-hub-signature")
# One entry of a webhook-signature header: a version, a comma, base64 (the standard's own grammar).
_SIGNATURE_ENTRY = re.compile(r"^v1,[A-Za-z0-9+/]+={0,2}$")


class Unauthorized(Exception):
    """The request's credentials are missing or wrong; the message is safe to send back."""


class Verified(NamedTuple):
    """What authentication proved about a request.

    A ``NamedTuple`` (immutable, compared by value): a frozen dataclass execs its generated methods
    at import, ~0.5 ms of every cold start (bench/NOTES.md).
    """

    delivery_id: str | None  # the sender's delivery id, when the scheme carries a signed one
    # SHA-256 of the signed body, when the scheme signs only the body (hub-sha256): what
    # recognises a redelivery that carries no ticket.
    body_digest: str | None = None


class Authenticator(Protocol):
    mode: AuthMode

    def verify(self, request: HttpRequest) -> Verified:
        """Return what the request proved, or raise ``Unauthorized``."""
        ...


class StandardWebhooksAuth:
    """Standard Webhooks verification through the reference ``standardwebhooks`` package."""

    mode: AuthMode = "standard"

    def __init__(self, secret: str) -> None:
        encoded = secret.removeprefix("whsec_")
        try:
            key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
        except (binascii.Error, ValueError):
            raise ConfigError(SECRET_VARIABLE, "must be whsec_ followed by base64") from None
        if len(key) < SECRET_MIN_BYTES:
            raise ConfigError(
                SECRET_VARIABLE,
                f"decodes to {len(key)} bytes; use at least {SECRET_MIN_BYTES} random bytes "
                "(whsec_ + base64 of 32 random bytes, for example)",
            )
        self._webhook = Webhook(key)

    def verify(self, request: HttpRequest) -> Verified:
        headers = {name: request.header(name) or "" for name in STANDARD_HEADERS}
        missing = [name for name, value in headers.items() if not value]
        if missing:
            raise Unauthorized(f"missing header: {', '.join(missing)}")
        # The reference verifier raises ValueError on an entry without a comma; drop malformed
        # entries instead, so one bad entry cannot hide a good one next to it.
        entries = [e for e in headers["webhook-signature"].split() if _SIGNATURE_ENTRY.match(e)]
        if not entries:
            raise Unauthorized("webhook-signature has no v1,<base64> signature")
        headers["webhook-signature"] = " ".join(entries)
        try:
            self._webhook.verify(request.body, headers, json_parse=False)
        except WebhookVerificationError as error:
            raise Unauthorized(_standard_reason(str(error))) from None
        except (UnicodeDecodeError, ValueError, binascii.Error):
            raise Unauthorized("no signature matches") from None
        return Verified(delivery_id=headers["webhook-id"])


def _standard_reason(library_message: str) -> str:
    if "too old" in library_message or "too new" in library_message:
        return "webhook-timestamp is outside the 5-minute tolerance"
    if "Invalid Signature Headers" in library_message:
        return "webhook-timestamp is not a Unix time in seconds"
    return "no signature matches"


class HubSha256Auth:
    """``X-Hub-Signature-256: sha256=<hex>`` over the raw body (Jira Cloud, GitHub)."""

    mode: AuthMode = "hub-sha256"

    def __init__(self, secret: str) -> None:
        self._key = secret.encode()
        if len(self._key) < SECRET_MIN_BYTES:
            raise ConfigError(
                SECRET_VARIABLE, f"is {len(self._key)} bytes; use at least {SECRET_MIN_BYTES} random bytes"
            )

    def verify(self, request: HttpRequest) -> Verified:
        given = next((v for v in map(request.header, HUB_HEADERS) if v), None)
        if given is None:
            raise Unauthorized("missing header: x-hub-signature-256")
        algorithm, _, digest = given.strip().partition("=")
        if algorithm.lower() != "sha256" or not digest:
            raise Unauthorized("x-hub-signature-256 must be sha256=<hex>")
        expected = hmac.new(self._key, request.body, hashlib.sha256).hexdigest().encode()
        if not hmac.compare_digest(expected, digest.lower().encode("utf-8", "replace")):
            raise Unauthorized("no signature matches")
        return Verified(delivery_id=None, body_digest=hashlib.sha256(request.body).hexdigest())


class NoAuth:
    """No check: the trigger in front (FC ``FUNCTION`` auth) authenticated the caller."""

    mode: AuthMode = "none"

    def verify(self, request: HttpRequest) -> Verified:
        # Unsigned, so only a hint; still lets a sender's retries share one idempotency key.
        return Verified(delivery_id=request.header("webhook-id") or None)


class StatusReadAuth:
    """``GET /upgrades/{id}``: a bearer token, compared in constant time."""

    def __init__(self, token: str | None, *, open_access: bool) -> None:
        self._token = token.encode() if token else None
        if self._token is not None and len(self._token) < SECRET_MIN_BYTES:
            raise ConfigError(
                STATUS_TOKEN_VARIABLE,
                f"is {len(self._token)} bytes; use at least {SECRET_MIN_BYTES} random bytes",
            )
        self._open = open_access

    @property
    def enabled(self) -> bool:
        return self._open or self._token is not None

    def check(self, request: HttpRequest) -> None:
        if self._open:
            return
        if self._token is None:
            raise Unauthorized(f"status reads are disabled: {STATUS_TOKEN_VARIABLE} is not set")
        scheme, _, token = (request.header("authorization") or "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            token.strip().encode("utf-8", "replace"), self._token
        ):
            raise Unauthorized("missing or wrong bearer token")


def standard_webhook_headers(
    secret: str, body: bytes, msg_id: str, at: datetime | None = None
) -> dict[str, str]:
    """The Standard Webhooks headers a sender adds (for the CLI and tests that play the sender).

    >>> sorted(standard_webhook_headers("whsec_c2VjcmV0", b"{}", "msg_1"))
    ['webhook-id', 'webhook-signature', 'webhook-timestamp']
    """
    moment = at or datetime.now(timezone.utc)
    signature = Webhook(secret).sign(msg_id, moment, body.decode("utf-8"))
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(moment.timestamp())),
        "webhook-signature": signature,
    }


def auth_mode(value: str | None) -> AuthMode:
    """The mode ``DBUPGRADE_WEBHOOK_AUTH`` names, exactly (unset or empty: ``standard``).

    >>> auth_mode("hub-sha256")
    'hub-sha256'
    """
    if not value:
        return "standard"
    if value == "standard":
        return "standard"
    if value == "hub-sha256":
        return "hub-sha256"
    if value == "none":
        return "none"
    # The value is not echoed: a secret pasted into the wrong variable must not reach a log.
    raise ConfigError(AUTH_VARIABLE, f"must be exactly one of {', '.join(AUTH_MODES)} (lower case)")


def authenticator(mode: AuthMode, secret: str | None) -> Authenticator | None:
    """The POST authenticator for ``mode``; None when the mode needs a secret and none is set."""
    if mode == "none":
        return NoAuth()
    if not secret:
        return None
    if mode == "hub-sha256":
        return HubSha256Auth(secret)
    return StandardWebhooksAuth(secret)
