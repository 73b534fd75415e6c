"""The webhook's own HTTP request/response values and RFC 9457 problem bodies.

Both FC entry shapes (WSGI on FC 2.0, the HTTP event on FC 3.0) and the local server are adapted
to ``HttpRequest`` in and ``HttpResponse`` out, so the app sees one shape.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from http import HTTPStatus
from types import MappingProxyType
from typing import Any, NamedTuple

JSON = "application/json"
PROBLEM_JSON = "application/problem+json"
PROBLEM_TYPE_PREFIX = "urn:dbupgrade:problem:"
MAX_BODY_BYTES = 64 * 1024
MAX_BATCH_ITEMS = 50
# Both records are NamedTuples (immutable, compared by value): a frozen dataclass would exec its
# generated methods at import, ~0.6 ms each of every cold start (bench/NOTES.md).
NO_HEADERS: Mapping[str, str] = MappingProxyType({})


class HttpRequest(NamedTuple):
    """One HTTP request; header names are lower-case, several values of one header joined by ``,``."""

    method: str
    path: str
    headers: Mapping[str, str] = NO_HEADERS
    body: bytes = b""
    query: str = ""
    # Set when the entry shape could not read the body (oversized, bad Content-Length): the app
    # answers with this problem before looking at anything else.
    body_error: HttpResponse | None = None

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


class HttpResponse(NamedTuple):
    """A reply as every HTTP adapter renders it (status, body, headers)."""

    status: int
    body: bytes = b""
    headers: Mapping[str, str] = NO_HEADERS

    @property
    def status_line(self) -> str:
        """``"202 Accepted"``: what WSGI's ``start_response`` takes."""
        try:
            phrase = HTTPStatus(self.status).phrase
        except ValueError:
            phrase = "Unknown"
        return f"{self.status} {phrase}"

    def json(self) -> Any:
        return json.loads(self.body)


def json_response(status: int, payload: Any, headers: Mapping[str, str] | None = None) -> HttpResponse:
    body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
    return HttpResponse(status, body, {"content-type": JSON, **(headers or {})})


def problem(
    status: int,
    slug: str,
    detail: str,
    *,
    title: str | None = None,
    headers: Mapping[str, str] | None = None,
    **extensions: Any,
) -> HttpResponse:
    """An ``application/problem+json`` reply (RFC 9457); extension members that are None are left out.

    >>> problem(422, "invalid-field", "target_version: required", field="target_version").json()["field"]
    'target_version'
    """
    payload: dict[str, Any] = {
        "type": PROBLEM_TYPE_PREFIX + slug,
        "title": title or HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
    }
    payload.update({name: value for name, value in extensions.items() if value is not None})
    body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
    return HttpResponse(status, body, {"content-type": PROBLEM_JSON, **(headers or {})})
