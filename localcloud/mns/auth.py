"""MNS request authentication: ``Authorization: MNS ak:signature`` (doc 27487).

::

    StringToSign = METHOD + "\\n" + Content-MD5 + "\\n" + Content-Type + "\\n" + Date + "\\n"
                   + CanonicalizedMNSHeaders + CanonicalizedResource
    signature    = base64(HMAC-SHA1(secret, StringToSign))

CanonicalizedResource is the raw request target (path and query exactly as sent): the SDK puts
receipt handles into the URL unescaped, so any re-encoding here would break the signature.
Date is checked against the real wall clock (the client signs with it), never the emulated one.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Mapping
from email.utils import parsedate_to_datetime
from functools import lru_cache

from localcloud.accounts import Accounts, Credential, TokenError
from localcloud.mns import exceptions
from localcloud.ram import resources
from localcloud.ram.policy import ALLOW

MAX_CLOCK_SKEW_SECONDS = 15 * 60


def string_to_sign(method: str, headers: Mapping[str, str], raw_target: str) -> str:
    """What the client signed; ``headers`` is case-insensitive (aiohttp's CIMultiDict)."""
    mns_headers = []
    for name, value in headers.items():
        lowered = name.lower()
        if lowered.startswith("x-mns-"):
            mns_headers.append((lowered, value))
    mns_headers.sort()
    canonical_headers = "".join([f"{name}:{value}\n" for name, value in mns_headers])
    return (
        f"{method}\n{headers.get('Content-MD5', '')}\n{headers.get('Content-Type', '')}\n"
        f"{headers.get('Date', '')}\n{canonical_headers}{raw_target}"
    )


def sign(secret: str, text: str) -> str:
    return base64.b64encode(hmac.digest(secret.encode(), text.encode(), "sha1")).decode()


@lru_cache(maxsize=64)
def _signed_at(value: str) -> float:
    """Epoch seconds of a Date header; cached, as a client's requests within a second carry the same one."""
    return parsedate_to_datetime(value).timestamp()


def _check_date(value: str | None) -> None:
    if not value:
        raise exceptions.MissingDateHeader()
    try:
        signed_at = _signed_at(value)
    except (TypeError, ValueError) as exc:
        raise exceptions.InvalidDateHeader() from exc
    if abs(time.time() - signed_at) > MAX_CLOCK_SKEW_SECONDS:
        raise exceptions.TimeExpired()


def _check_content_md5(value: str | None, body: bytes) -> None:
    """The Python SDK sends base64 of the *hex* MD5; base64 of the raw digest (RFC 1864) is also taken."""
    if value is None:
        return
    digest = hashlib.md5(body)  # noqa: S324 - a checksum the protocol defines, not security
    if value == base64.b64encode(digest.hexdigest().encode()).decode():
        return
    if value != base64.b64encode(digest.digest()).decode():
        raise exceptions.InvalidDigest()


def authenticate(
    accounts: Accounts, method: str, headers: Mapping[str, str], raw_target: str, body: bytes
) -> Credential:
    """Return the caller's credential or raise the MNS error a real endpoint answers.

    The STS token is read from ``x-mns-security-token`` (Java/Android SDKs; signed, being an
    x-mns header) or ``security-token`` (the Python SDK; unsigned).
    """
    authorization = headers.get("Authorization")
    if not authorization:
        raise exceptions.MissingAuthorizationHeader()
    scheme, _, credential_part = authorization.partition(" ")
    access_key_id, sep, signature = credential_part.strip().rpartition(":")
    if scheme != "MNS" or not sep or not access_key_id or not signature:
        raise exceptions.InvalidAuthorizationHeader()
    _check_date(headers.get("Date"))
    if not headers.get("x-mns-version"):
        raise exceptions.MissingVersionHeader()
    credential = accounts.lookup(access_key_id)
    if credential is None:
        raise exceptions.InvalidAccessKeyId()
    token = headers.get("x-mns-security-token") or headers.get("security-token")
    try:
        Accounts.check_token(credential, token)
    except TokenError as exc:
        if exc.reason == "Expired":
            raise exceptions.SecurityTokenExpired(exc.message) from exc
        raise exceptions.InvalidSecurityToken(exc.message) from exc
    expected = sign(credential.access_key_secret, string_to_sign(method, headers, raw_target))
    if not hmac.compare_digest(expected, signature):
        raise exceptions.SignatureDoesNotMatch()
    _check_content_md5(headers.get("Content-MD5"), body)
    return credential


def authorize(credential: Credential, action: str, kind: str, name: str, region: str) -> None:
    """Raise 403 AccessDenied unless the caller's RAM policy allows ``action`` on ``/{kind}/{name}``.

    The action and resource come from MNS's RAM table (``localcloud.ram.resources.mns``); a root
    credential, or an operation localcloud does not emulate, is not evaluated.
    """
    if credential.role is None:
        return
    requested = resources.mns(action, kind, name, region, credential.account_id)
    if requested is None:
        return
    ram_action, resource = requested
    if credential.decide(ram_action, resource) != ALLOW:
        raise exceptions.AccessDenied(
            exceptions.AccessDenied.RAM_MESSAGE.format(action=ram_action, resource=resource)
        )
