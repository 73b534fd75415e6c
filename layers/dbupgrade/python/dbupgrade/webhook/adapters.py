"""Entry shapes to ``HttpRequest`` and back: FC 2.0 WSGI and the FC 3.0 HTTP event.

FC 2.0 calls ``handler(environ, start_response)`` (PEP 3333); FC 3.0 calls ``handler(event, context)``
with a JSON event (``rawPath``, ``headers``, ``body``, ``isBase64Encoded``, ``requestContext``) and
takes ``{statusCode, headers, body, isBase64Encoded}`` back (research function-compute.md §1).
The body is read here, bounded: an oversized or unreadable body becomes ``HttpRequest.body_error``.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any
from urllib.parse import unquote, urlencode

from dbupgrade.webhook.http import MAX_BODY_BYTES, HttpRequest, HttpResponse, problem

# FC 2.0's default trigger URL puts the function behind this prefix; routes are matched without it.
_FC2_PROXY_PREFIX = re.compile(r"^/2016-08-15/proxy/[^/]+/[^/]+")

StartResponse = Callable[[str, list[tuple[str, str]]], Any]


def too_large(size: int | None = None) -> HttpResponse:
    seen = f" ({size} bytes)" if size is not None else ""
    return problem(413, "body-too-large", f"the body{seen} is larger than {MAX_BODY_BYTES} bytes")


def route_path(path: str) -> str:
    """The path routes are matched on: no FC 2.0 proxy prefix, no trailing slash.

    >>> route_path("/2016-08-15/proxy/dbupgrade/webhook/upgrades/")
    '/upgrades'
    """
    path = _FC2_PROXY_PREFIX.sub("", path) or "/"
    return path.rstrip("/") or "/"


def request_from_environ(environ: Mapping[str, Any]) -> HttpRequest:
    """A WSGI environ as an ``HttpRequest``; reads at most ``MAX_BODY_BYTES + 1`` bytes of the body."""
    headers: dict[str, str] = {}
    for key, value in environ.items():
        if key.startswith("HTTP_"):
            headers[key[5:].replace("_", "-").lower()] = str(value)
    for key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
        if environ.get(key):
            headers[key.replace("_", "-").lower()] = str(environ[key])
    # PEP 3333: PATH_INFO carries the raw bytes as latin-1 code points.
    raw_path = str(environ.get("PATH_INFO") or "/")
    path = raw_path.encode("latin-1", "replace").decode("utf-8", "replace")
    body, body_error = _read_wsgi_body(environ, headers.get("content-length"))
    return HttpRequest(
        method=str(environ.get("REQUEST_METHOD", "GET")).upper(),
        path=route_path(path),
        headers=headers,
        body=body,
        query=str(environ.get("QUERY_STRING") or ""),
        body_error=body_error,
    )


def _read_wsgi_body(
    environ: Mapping[str, Any], content_length: str | None
) -> tuple[bytes, HttpResponse | None]:
    stream = environ.get("wsgi.input")
    if content_length is not None:
        try:
            length = int(content_length)
        except ValueError:
            return b"", problem(400, "bad-content-length", "Content-Length is not a number")
        if length < 0:
            return b"", problem(400, "bad-content-length", "Content-Length is negative")
        if length > MAX_BODY_BYTES:
            return b"", too_large(length)
        body = stream.read(length) if stream is not None and length else b""
    else:
        # Chunked or unknown length: read one byte past the limit to tell "at the limit" from "over".
        body = stream.read(MAX_BODY_BYTES + 1) if stream is not None else b""
    body = bytes(body or b"")
    if len(body) > MAX_BODY_BYTES:
        return b"", too_large()
    return body, None


def wsgi_reply(response: HttpResponse, start_response: StartResponse) -> Iterable[bytes]:
    headers = [*response.headers.items(), ("content-length", str(len(response.body)))]
    start_response(response.status_line, headers)
    return [response.body]


def request_from_fc3_event(event: bytes | bytearray | str | Mapping[str, Any]) -> HttpRequest:
    """An FC 3.0 HTTP trigger event as an ``HttpRequest``; a malformed event is a 400 body_error."""
    try:
        data = event if isinstance(event, Mapping) else json.loads(event)
    except (ValueError, RecursionError):
        return _broken_event("the HTTP event is not JSON")
    if not isinstance(data, Mapping):
        return _broken_event("the HTTP event is not a JSON object")
    http = _member(_member(data, "requestContext"), "http")
    method = str(http.get("method") or "GET").upper()
    # requestContext.http.path is decoded; rawPath is URL-encoded.
    path = str(http.get("path") or unquote(str(data.get("rawPath") or "/")))
    headers = {str(name).lower(): _header_value(value) for name, value in _member(data, "headers").items()}
    query_parameters = data.get("queryParameters")
    query = urlencode(query_parameters, doseq=True) if isinstance(query_parameters, Mapping) else ""
    body, body_error = _fc3_body(data.get("body"), bool(data.get("isBase64Encoded")))
    return HttpRequest(method, route_path(path), headers, body, query, body_error)


def _member(data: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    value = data.get(name)
    return value if isinstance(value, Mapping) else {}


def _header_value(value: Any) -> str:
    if isinstance(value, list):
        return ",".join(str(item) for item in value)
    return str(value)


def _fc3_body(body: Any, is_base64: bool) -> tuple[bytes, HttpResponse | None]:
    if body is None:
        return b"", None
    if not isinstance(body, str):
        return b"", problem(400, "bad-event", "the HTTP event's body is not a string")
    if is_base64:
        if len(body) > (MAX_BODY_BYTES + 2) // 3 * 4 + 4:
            return b"", too_large()
        try:
            raw = base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError):
            return b"", problem(400, "bad-event", "the HTTP event's body is not valid base64")
    else:
        # Text body: "surrogatepass" turns a lone surrogate (a JSON "\ud800" in the event) into
        # bytes that are not UTF-8, so the app's UTF-8 check answers 400 instead of this crashing.
        raw = body.encode("utf-8", "surrogatepass")
    if len(raw) > MAX_BODY_BYTES:
        return b"", too_large(len(raw))
    return raw, None


def _broken_event(detail: str) -> HttpRequest:
    return HttpRequest("POST", "/", body_error=problem(400, "bad-event", detail))


def fc3_reply(response: HttpResponse) -> dict[str, Any]:
    return {
        "statusCode": response.status,
        "headers": dict(response.headers),
        "body": response.body.decode("utf-8"),
        "isBase64Encoded": False,
    }
