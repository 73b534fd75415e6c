"""The worker side of an emulated FC instance: ``python .../localcloud/fc/runtime.py HANDLER MODE``.

One process is one warm instance of one function. It imports the handler (``index.handler``:
module ``index`` from the code dir, which is the cwd and first on ``sys.path``, as FC's ``/code``
is) on the first invocation, then serves invocations one at a time, as FC's Python runtime
does (Python functions have no instance concurrency).

Frames travel over the original stdin/stdout pipes, which the worker moves to private file
descriptors before any user code runs: fd 0 becomes ``/dev/null`` and fd 1 becomes a copy of
stderr, so whatever the function prints (even from C code) lands in the log stream and can never
corrupt a frame. A frame is ``>II`` (meta length, body length), then the meta JSON, then the raw
body.

Request meta: ``{"request_id", "kind": "event"|"wsgi", "context": {...}, "http": {...}}``.
Reply meta: ``{"ok": true}`` with the result bytes, ``{"ok": true, "status", "headers"}`` with the
WSGI body, or ``{"ok": false, "error": {"errorMessage", "errorType", "stackTrace"}}``; plus
``"retire": true`` when the instance exits after this reply (a failed cold start).

Only the standard library is imported here: the function must see its own ``sys.modules``.
"""

from __future__ import annotations

import importlib
import io
import json
import os
import struct
import sys
import traceback
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import IO, Any

HEADER = struct.Struct(">II")
START_MARK = "FC Invoke Start RequestId: "
END_MARK = "FC Invoke End RequestId: "


def encode_frame(meta: dict[str, Any], body: bytes = b"") -> bytes:
    raw = json.dumps(meta, separators=(",", ":")).encode()
    return HEADER.pack(len(raw), len(body)) + raw + body


def read_exact(stream: IO[bytes], size: int) -> bytes | None:
    """``size`` bytes from a blocking stream, or None at end of stream."""
    chunks = []
    while size:
        chunk = stream.read(size)
        if not chunk:
            return None
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def read_frame(stream: IO[bytes]) -> tuple[dict[str, Any], bytes] | None:
    head = read_exact(stream, HEADER.size)
    if head is None:
        return None
    meta_len, body_len = HEADER.unpack(head)
    meta = read_exact(stream, meta_len)
    body = read_exact(stream, body_len) if body_len else b""
    if meta is None or body is None:
        return None
    return json.loads(meta), body


class Credentials:
    def __init__(self, access_key_id: str, access_key_secret: str, security_token: str) -> None:
        self.access_key_id = access_key_id
        self.access_key_secret = access_key_secret
        self.security_token = security_token


class ServiceMeta:
    def __init__(self, name: str, log_project: str, log_store: str, qualifier: str, version_id: str) -> None:
        self.name = name
        self.log_project = log_project
        self.log_store = log_store
        self.qualifier = qualifier
        self.version_id = version_id


class FunctionMeta:
    def __init__(self, name: str, handler: str, memory: int, timeout: float, **fc3_fields: str) -> None:
        self.name = name
        self.handler = handler
        self.memory = memory
        self.timeout = timeout
        for key, value in fc3_fields.items():  # FC 3.0 adds version_id and qualifier here
            setattr(self, key, value)


class Tracing:
    """FC 2.0 fills these only when Tracing Analysis is enabled on the service."""

    def __init__(self) -> None:
        self.span_context = None
        self.jaeger_endpoint = None
        self.span_baggages: dict[str, str] = {}


class FCContext:
    """The FC 2.0 ``context``: request_id, credentials, function, service, region, account_id, tracing."""

    def __init__(self, raw: dict[str, Any]) -> None:
        self.request_id: str = raw["request_id"]
        self.credentials = Credentials(**raw["credentials"])
        self.function = FunctionMeta(**raw["function"])
        self.service = ServiceMeta(**raw["service"])
        self.region: str = raw["region"]
        self.account_id: str = raw["account_id"]
        self.tracing = Tracing()


class FC3Context:
    """The FC 3.0 python3.12 ``context``: no ``credentials`` and no ``service`` (credentials are in
    the ALIBABA_CLOUD_* environment), ``log_project``/``log_store`` at the top level."""

    def __init__(self, raw: dict[str, Any]) -> None:
        self.request_id: str = raw["request_id"]
        self.function = FunctionMeta(
            **raw["function"], version_id=raw["service"]["version_id"], qualifier=raw["service"]["qualifier"]
        )
        self.region: str = raw["region"]
        self.account_id: str = raw["account_id"]
        self.log_project: str = raw["service"]["log_project"]
        self.log_store: str = raw["service"]["log_store"]
        self.logger = None

    def getLogger(self) -> Any:  # noqa: N802 - FC's own name
        import logging

        return logging.getLogger(f"fc.{self.function.name}")


def encode_result(result: Any) -> bytes:
    """The reply bytes for a handler's return value.

    bytes go as they are and str as UTF-8, as FC documents; None is an empty body. FC's rule for
    other types is not documented, so JSON-able values are sent as JSON (what a caller would most
    plausibly parse) and anything else as ``str()``.
    """
    if result is None:
        return b""
    if isinstance(result, bytes | bytearray):
        return bytes(result)
    if isinstance(result, str):
        return result.encode()
    try:
        return json.dumps(result).encode()
    except (TypeError, ValueError):
        return str(result).encode()


def _user_traceback(exc: BaseException) -> TracebackType | None:
    """The traceback from the first frame outside this runtime: what the function's author wrote."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename == __file__:
        tb = tb.tb_next
    return tb


def error_of(exc: BaseException) -> dict[str, Any]:
    frames = traceback.extract_tb(_user_traceback(exc))
    return {
        "errorMessage": str(exc),
        "errorType": type(exc).__name__,
        "stackTrace": [line.rstrip("\n") for line in traceback.format_list(frames)],
    }


def wsgi_environ(http: dict[str, Any], body: bytes, context: Any) -> dict[str, Any]:
    environ: dict[str, Any] = {
        "REQUEST_METHOD": http["method"],
        "SCRIPT_NAME": "",
        "PATH_INFO": http["path"],
        "QUERY_STRING": http["query_string"],
        "SERVER_NAME": http["server_name"],
        "SERVER_PORT": str(http["server_port"]),
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": http["client_ip"],
        "CONTENT_LENGTH": str(len(body)),
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(body),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": False,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
        "fc.context": context,
        "fc.request_uri": http["request_uri"],
    }
    for name, value in http["headers"]:
        key = name.upper().replace("-", "_")
        if key == "CONTENT_TYPE":
            environ["CONTENT_TYPE"] = value
        elif key != "CONTENT_LENGTH":
            key = "HTTP_" + key
            environ[key] = f"{environ[key]},{value}" if key in environ else value
    return environ


def call_wsgi(app: Callable[..., Iterable[bytes]], environ: dict[str, Any]) -> tuple[dict[str, Any], bytes]:
    started: dict[str, Any] = {}
    written: list[bytes] = []

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Callable:
        if exc_info and started:
            raise exc_info[1].with_traceback(exc_info[2])
        started["status"] = int(status.split(" ", 1)[0])
        started["headers"] = [[k, v] for k, v in headers]
        return written.append

    iterable = app(environ, start_response)
    try:
        written.extend(iterable)
    finally:
        close = getattr(iterable, "close", None)
        if close is not None:
            close()
    if not started:
        raise RuntimeError("the WSGI handler returned without calling start_response")
    return {"ok": True, "status": started["status"], "headers": started["headers"]}, b"".join(written)


def load_handler(spec: str) -> Callable[..., Any]:
    module_name, _, attr = spec.rpartition(".")
    if not module_name:
        raise ValueError(f"handler {spec!r} is not of the form file.function")
    return getattr(importlib.import_module(module_name), attr)


def serve(handler_spec: str, mode: str, frames_in: IO[bytes], frames_out: IO[bytes]) -> None:
    handler: Callable[..., Any] | None = None
    while True:
        frame = read_frame(frames_in)
        if frame is None:
            return
        meta, body = frame
        request_id = meta["request_id"]
        print(START_MARK + request_id, file=sys.stderr, flush=True)
        keep_instance = True
        try:
            if handler is None:
                try:
                    handler = load_handler(handler_spec)
                except Exception:
                    keep_instance = False  # FC starts a fresh instance after a failed cold start
                    raise
            context = FC3Context(meta["context"]) if mode == "fc3" else FCContext(meta["context"])
            if meta["kind"] == "wsgi":
                reply, out = call_wsgi(handler, wsgi_environ(meta["http"], body, context))
            else:
                reply, out = {"ok": True}, encode_result(handler(body, context))
        except Exception as exc:
            traceback.print_exception(type(exc), exc, _user_traceback(exc), file=sys.stderr)
            reply, out = {"ok": False, "error": error_of(exc)}, b""
        sys.stdout.flush()
        print(END_MARK + request_id, file=sys.stderr, flush=True)
        if not keep_instance:
            reply["retire"] = True
        frames_out.write(encode_frame(reply, out))
        frames_out.flush()
        if not keep_instance:
            return


def main(argv: list[str]) -> None:
    handler_spec, mode = argv
    # Run as a script, so localcloud need not be importable; the code dir (cwd) replaces this
    # file's folder at the head of sys.path, where FC puts /code.
    sys.path[0] = os.getcwd()
    # Keep the frame pipes for ourselves before user code can touch fds 0 and 1.
    frames_in = os.fdopen(os.dup(0), "rb", buffering=0)
    frames_out = os.fdopen(os.dup(1), "wb", buffering=0)
    null_fd = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null_fd, 0)
    os.close(null_fd)
    os.dup2(2, 1)
    sys.stdin = open(os.devnull)  # noqa: SIM115 - lives as long as the process
    serve(handler_spec, mode, frames_in, frames_out)


if __name__ == "__main__":
    main(sys.argv[1:])
