"""Parse and verify OpenAPI RPC signatures: ACS3-HMAC-SHA256 (V3) and HMAC-SHA1 SignatureVersion 1.0.

Canonicalisation is research/alibaba-apis.md §1c, checked against tea-openapi 0.4.x (both
algorithms) and aliyun-python-sdk-core. The server never trusts the client's encoding: it decodes
the query (``+`` is a space) and re-encodes every key and value with RFC 3986 (``quote(safe='~')``),
so ``*`` becomes ``%2A``, space ``%20`` and ``~`` stays as is.

Example::

    signed = parse_request("POST", "/?InstanceId=r-1", headers, b"")
    signed.verify(secret)        # raises SignatureDoesNotMatch
"""

from __future__ import annotations

import base64
import calendar
import hashlib
import hmac
import json
import re
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from urllib.parse import quote, unquote_plus

from localcloud.openapi.errors import (
    IncompleteSignature,
    InvalidTimeStampExpired,
    InvalidTimeStampFormat,
    MissingParameter,
    SignatureDoesNotMatch,
    SignatureNonceUsed,
)

ACS3 = "ACS3-HMAC-SHA256"
MAX_SKEW_SECONDS = 15 * 60
FORM = "application/x-www-form-urlencoded"

# Protocol parameters of the V1 signature: never handed to a product, never logged.
V1_PROTOCOL_KEYS = frozenset(
    {
        "Action",
        "Version",
        "Format",
        "Timestamp",
        "SignatureNonce",
        "SignatureMethod",
        "SignatureVersion",
        "SignatureType",
        "AccessKeyId",
        "SecurityToken",
        "Signature",
    }
)


_UNRESERVED = re.compile(r"[A-Za-z0-9_.~-]*")


@lru_cache(maxsize=8192)
def _enc(value: str) -> str:
    # Most keys and values are unreserved already; urllib's quote is the hot spot otherwise.
    if _UNRESERVED.fullmatch(value):
        return value
    return quote(value, safe="~")


def _unquote(value: str) -> str:
    if "%" in value or "+" in value:
        return unquote_plus(value)
    return value


def _form(data: str) -> list[tuple[str, str]]:
    """``application/x-www-form-urlencoded`` pairs, blank values kept (``parse_qsl``, but faster)."""
    pairs = []
    for item in data.split("&"):
        if item:
            key, _, value = item.partition("=")
            pairs.append((_unquote(key), _unquote(value)))
    return pairs


def _body_params(body: bytes, content_type: str) -> dict[str, str]:
    if not body:
        return {}
    if content_type.startswith(FORM):
        return dict(_form(body.decode("utf-8", "replace")))
    if content_type.startswith("application/json"):
        try:
            decoded = json.loads(body)
        except ValueError:
            return {}
        if isinstance(decoded, dict):
            return {str(k): v if isinstance(v, str) else json.dumps(v) for k, v in decoded.items()}
    return {}


@dataclass
class SignedRequest:
    """One parsed OpenAPI request: what it asks, who claims to ask, and how to check the claim."""

    style: str  # "acs3" | "v1"
    action: str | None
    version: str | None
    access_key_id: str
    params: dict[str, str]  # the product's parameters (protocol keys removed)
    security_token: str | None
    timestamp: str | None
    nonce: str | None
    _string_to_sign: str = field(repr=False, default="")
    _signature: str = field(repr=False, default="")

    def verify(self, secret: str) -> None:
        """Raise SignatureDoesNotMatch unless the request was signed with ``secret``."""
        if self.style == "acs3":
            expected = hmac.new(secret.encode(), self._string_to_sign.encode(), hashlib.sha256).hexdigest()
            if not hmac.compare_digest(expected, self._signature):
                shown = self._string_to_sign.replace("\n", "\\n")
                raise SignatureDoesNotMatch(
                    f"Specified signature does not match our calculation. server StringToSign is [{shown}]"
                )
            return
        digest = hmac.new((secret + "&").encode(), self._string_to_sign.encode(), hashlib.sha1).digest()
        if not hmac.compare_digest(base64.b64encode(digest).decode(), self._signature):
            raise SignatureDoesNotMatch(
                "Specified signature is not matched with our calculation. "
                f"server string to sign is:{self._string_to_sign}"
            )

    def check_timestamp(self, now: float) -> None:
        """InvalidTimeStamp.Expired when the signing time is more than 15 minutes from ``now``."""
        if not self.timestamp:
            raise MissingParameter("x-acs-date" if self.style == "acs3" else "Timestamp")
        if abs(now - parse_timestamp(self.timestamp)) > MAX_SKEW_SECONDS:
            raise InvalidTimeStampExpired()


def parse_timestamp(value: str) -> float:
    """Epoch seconds of an ISO 8601 UTC stamp as the SDKs send it (``2025-01-01T00:00:00Z``)."""
    try:
        if len(value) == 20 and value[10] == "T" and value[19] == "Z":
            return float(
                calendar.timegm(
                    (int(value[0:4]), int(value[5:7]), int(value[8:10]),
                     int(value[11:13]), int(value[14:16]), int(value[17:19]), 0, 0, 0)
                )
            )  # fmt: skip
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        raise InvalidTimeStampFormat() from None


def parse_request(method: str, raw_path: str, headers: Mapping[str, str], body: bytes) -> SignedRequest:
    """Parse a request as either signature style; IncompleteSignature if it carries neither.

    ``headers`` must answer case-insensitively and support ``getall`` (aiohttp's CIMultiDict).
    """
    path, _, raw_query = raw_path.partition("?")
    authorization = headers.get("Authorization", "")
    if authorization.startswith("ACS3-"):
        return _parse_acs3(method, path or "/", raw_query, headers, body, authorization)
    return _parse_v1(method, raw_query, headers, body)


def _parse_acs3(
    method: str, path: str, raw_query: str, headers: Mapping[str, str], body: bytes, authorization: str
) -> SignedRequest:
    algorithm, _, rest = authorization.partition(" ")
    if algorithm != ACS3:
        raise IncompleteSignature(f"The signature algorithm {algorithm} is not supported.")
    try:
        parts = dict(item.strip().split("=", 1) for item in rest.split(","))
        credential, signed_headers, signature = (
            parts["Credential"],
            parts["SignedHeaders"],
            parts["Signature"],
        )
    except (KeyError, ValueError):
        raise IncompleteSignature() from None
    query = _form(raw_query)
    canonical_query = "&".join(f"{_enc(k)}={_enc(v)}" for k, v in sorted(query))
    getall = headers.getall  # type: ignore[attr-defined]
    names = signed_headers.split(";")
    canonical_headers = "".join(
        f"{name}:{','.join(sorted(v.strip() for v in getall(name, [])))}\n" for name in names
    )
    canonical_request = (
        f"{method}\n{path}\n{canonical_query}\n{canonical_headers}\n{signed_headers}\n"
        f"{hashlib.sha256(body).hexdigest()}"
    )
    string_to_sign = f"{ACS3}\n{hashlib.sha256(canonical_request.encode()).hexdigest()}"
    params = dict(query)
    params.update(_body_params(body, headers.get("Content-Type", "")))
    # An STS caller names its key in x-acs-accesskey-id as well; Credential is what was signed.
    return SignedRequest(
        style="acs3",
        action=headers.get("x-acs-action"),
        version=headers.get("x-acs-version"),
        access_key_id=credential,
        params=params,
        security_token=headers.get("x-acs-security-token"),
        timestamp=headers.get("x-acs-date"),
        nonce=headers.get("x-acs-signature-nonce"),
        _string_to_sign=string_to_sign,
        _signature=signature,
    )


def _parse_v1(method: str, raw_query: str, headers: Mapping[str, str], body: bytes) -> SignedRequest:
    signed = dict(_form(raw_query))
    if body and headers.get("Content-Type", "").startswith(FORM):
        signed.update(_form(body.decode("utf-8", "replace")))
    signature = signed.pop("Signature", None)
    access_key_id = signed.get("AccessKeyId")
    if not signature or not access_key_id:
        raise IncompleteSignature()
    canonical = "&".join(f"{_enc(k)}={_enc(v)}" for k, v in sorted(signed.items()))
    string_to_sign = f"{method}&%2F&{_enc(canonical)}"
    return SignedRequest(
        style="v1",
        action=signed.get("Action") or headers.get("x-acs-action"),
        version=signed.get("Version") or headers.get("x-acs-version"),
        access_key_id=access_key_id,
        params={k: v for k, v in signed.items() if k not in V1_PROTOCOL_KEYS},
        security_token=signed.get("SecurityToken"),
        timestamp=signed.get("Timestamp"),
        nonce=signed.get("SignatureNonce"),
        _string_to_sign=string_to_sign,
        _signature=signature,
    )


class NonceLedger:
    """Nonces seen in the last ``ttl`` seconds, per access key; a reuse is SignatureNonceUsed.

    Entries expire in arrival order, so a deque prunes them in O(1) amortised per call.
    """

    def __init__(self, ttl: float = 2 * MAX_SKEW_SECONDS) -> None:
        self._ttl = ttl
        self._seen: set[tuple[str, str]] = set()
        self._expiry: deque[tuple[float, tuple[str, str]]] = deque()

    def use(self, access_key_id: str, nonce: str | None, now: float | None = None) -> None:
        if not nonce:
            raise MissingParameter("SignatureNonce")
        now = time.time() if now is None else now
        while self._expiry and self._expiry[0][0] <= now:
            self._seen.discard(self._expiry.popleft()[1])
        key = (access_key_id, nonce)
        if key in self._seen:
            raise SignatureNonceUsed()
        self._seen.add(key)
        self._expiry.append((now + self._ttl, key))
