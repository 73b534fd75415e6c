"""FC 2.0 request signatures, checked the way the service checks what aliyun-fc2 signs.

``Authorization: FC <AccessKeyId>:<base64(HMAC-SHA256(secret, StringToSign))>`` with
StringToSign = ``METHOD\\nContent-MD5\\nContent-Type\\nDate\\n`` + the lower-cased ``x-fc-*``
headers, sorted, each ``k:v\\n`` + the unescaped path (then ``\\n`` and the sorted ``k=v``
query lines when there is a query). STS callers add ``x-fc-security-token``. ``Date`` is RFC 1123
and must be within 15 minutes of the real clock (clients sign with it, not the emulated one).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Mapping
from email.utils import parsedate_to_datetime

from localcloud.accounts import Accounts, Credential, TokenError
from localcloud.fc.exceptions import FcApiError, access_denied, missing_header
from localcloud.ram import resources
from localcloud.ram.policy import ALLOW

MAX_SKEW_SECONDS = 15 * 60
SIGNATURE_MISMATCH = (
    "The request signature we calculated does not match the signature you provided. "
    "Check your access key and signing method"
)


def string_to_sign(method: str, path: str, headers: Mapping[str, str], query: list[tuple[str, str]]) -> str:
    lowered = {k.lower(): v for k, v in headers.items()}
    fc_headers = sorted((k, v) for k, v in lowered.items() if k.startswith("x-fc-"))
    canonical_headers = "".join(f"{k}:{v}\n" for k, v in fc_headers)
    resource = path
    if query:
        resource += "\n" + "\n".join(sorted(f"{k}={v}" if v != "" else k for k, v in query))
    parts = [
        method.upper(),
        lowered.get("content-md5", ""),
        lowered.get("content-type", ""),
        lowered.get("date", ""),
    ]
    return "\n".join([*parts, canonical_headers + resource])


def verify(
    accounts: Accounts, method: str, path: str, headers: Mapping[str, str], query: list[tuple[str, str]]
) -> Credential:
    """The caller's credential, or FcApiError (400 missing header, 403 bad key / signature / token)."""
    lowered = {k.lower(): v for k, v in headers.items()}
    authorization = lowered.get("authorization")
    if not authorization:
        raise missing_header("Authorization")
    date = lowered.get("date")
    if not date:
        raise missing_header("Date")
    scheme, _, credential_part = authorization.partition(" ")
    access_key_id, _, signature = credential_part.partition(":")
    if scheme != "FC" or not access_key_id or not signature:
        raise FcApiError(403, "SignatureNotMatch", SIGNATURE_MISMATCH)
    try:
        signed_at = parsedate_to_datetime(date).timestamp()
    except (TypeError, ValueError) as exc:
        raise FcApiError(400, "InvalidArgument", f"invalid Date header {date!r}") from exc
    if abs(time.time() - signed_at) > MAX_SKEW_SECONDS:
        raise FcApiError(
            403,
            "RequestTimeTooSkewed",
            "the difference between the request time and the server's time is too large",
        )
    cred = accounts.lookup(access_key_id)
    if cred is None:
        raise FcApiError(403, "InvalidAccessKeyID", f"invalid access key ID '{access_key_id}'")
    digest = hmac.new(
        cred.access_key_secret.encode(), string_to_sign(method, path, headers, query).encode(), hashlib.sha256
    ).digest()
    if not hmac.compare_digest(base64.b64encode(digest).decode(), signature):
        raise FcApiError(403, "SignatureNotMatch", SIGNATURE_MISMATCH)
    try:
        Accounts.check_token(cred, lowered.get("x-fc-security-token"))
    except TokenError as exc:
        raise FcApiError(403, "InvalidSecurityToken", exc.message) from exc
    return cred


def authorize_invoke(cred: Credential, service: str, function: str, region: str) -> None:
    """Raise 403 AccessDenied unless the caller's RAM policy allows ``fc:InvokeFunction`` on the function."""
    action, resource = resources.fc_invoke(service, function, region, cred.account_id)
    if cred.decide(action, resource) != ALLOW:
        raise access_denied(action, resource)
