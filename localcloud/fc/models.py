"""localcloud FC: the functions of the seed, run the way FC 2.0 (or 3.0) runs them.

Seed: ``"functions": [{"service", "name", "code_uri", "handler", ...options}]`` plus a shared
``"function_env"``. Options per function (FC's own names where FC has them):

- ``runtime``: ``python3.10`` (FC 2.0 context with ``credentials``; default) or ``python3.12``
  (FC 3.0: no ``credentials``/``service`` in the context, credentials in ALIBABA_CLOUD_* env)
- ``http``: true for a function with an HTTP trigger (WSGI on FC 2.0, the event JSON on FC 3.0)
- ``timeout`` (seconds, default 60), ``memory`` (MB, 256), ``max_instances`` (4)
- ``max_async_retry_attempts`` (3), ``on_failure`` / ``on_success``: ``{"queue": name}``
- ``env``: this function's own variables; ``layers``: paths put on PYTHONPATH after the code
  dir (default ``["layers/dbupgrade/python"]``, the layer FC mounts at /opt/python)
- ``account_id``, ``region``: whose function it is (default: the first seed account, and
  ``DBUPGRADE_REGION`` of the environment, else cn-hangzhou)
- ``role``: ``{"name": ..., "policies": [RAM policy documents]}``, the service role FC passes to the
  function (FC 2.0: the service's ``Role``/``Policies``; FC 3.0: the function's ``role``). Its
  instances get STS credentials of that role, minted here and registered in ``cloud.accounts``, so
  every gateway evaluates their calls against its policies; FC delivers async destinations with it
  too (terraform ``fc_function_async_invoke_config`` docs: the role needs ``mns:SendMessage``).
  Without a role they get the account's first STS credential (or its AccessKey): allowed everything.

Environment of an instance, later entries winning: the seed's ``function_env``, then the
localcloud process's own ``DBUPGRADE_*`` / ``ALIBABA_CLOUD_*`` / ``REDIS*`` variables (operator
overrides), then the function's ``env``; ``${LOCALCLOUD_URL}`` becomes ``http://127.0.0.1:PORT``
and ``${LOCALCLOUD_HOST}`` ``127.0.0.1:PORT``.

Example::

    result = cloud.fc.invoke("dbupgrade", "scheduled", b'{"payload": "{}"}')
    assert result.ok, result.error
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import sys
import threading
import time
import uuid
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, urlsplit

from localcloud.accounts import Credential
from localcloud.calls import Call
from localcloud.faults import FaultDecision
from localcloud.fc import exceptions
from localcloud.fc.instances import InstanceLost, InstancePool, WorkerReply, WorkerSpec
from localcloud.ram import resources
from localcloud.ram.policy import ALLOW, Role

FUNCTION_ERROR = "UnhandledInvocationError"
FC3_RUNTIMES = ("python3.12",)
DEFAULT_LAYERS = ("layers/dbupgrade/python",)
PASSED_PREFIXES = ("DBUPGRADE_", "ALIBABA_CLOUD_", "REDIS")
BASE_VARIABLES = ("PATH", "HOME", "LANG", "LC_ALL", "TZ", "TMPDIR", "SYSTEMROOT")
SYNC_PAYLOAD_LIMIT = 32 * 1024 * 1024
ASYNC_PAYLOAD_LIMIT = 128 * 1024
LOG_LINES_KEPT = 2000
_STDERR_LOCK = threading.Lock()  # localcloud's stderr, shared by every instance's log reader


@dataclass(frozen=True)
class FunctionSpec:
    service: str
    name: str
    code_uri: str
    handler: str
    runtime: str = "python3.10"
    http: bool = False
    timeout: float = 60.0
    memory: int = 256
    max_instances: int = 4
    max_async_retry_attempts: int = 3
    on_failure: dict[str, str] | None = None
    on_success: dict[str, str] | None = None
    env: dict[str, str] = field(default_factory=dict)
    layers: tuple[str, ...] = DEFAULT_LAYERS
    account_id: str | None = None
    region: str | None = None
    role: Role | None = None

    @classmethod
    def parse(cls, raw: dict[str, Any]) -> FunctionSpec:
        unknown = set(raw) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"functions[{raw.get('name')!r}]: unknown keys {sorted(unknown)}")
        missing = {"service", "name", "code_uri", "handler"} - set(raw)
        if missing:
            raise ValueError(f"functions[{raw.get('name')!r}]: missing {sorted(missing)}")
        role = Role.from_seed(raw["role"]) if raw.get("role") else None
        spec = cls(**{**raw, "layers": tuple(raw.get("layers", DEFAULT_LAYERS)), "role": role})
        if not 0 <= spec.max_async_retry_attempts <= 8:
            raise ValueError(f"functions[{spec.name!r}]: max_async_retry_attempts must be within 0..8")
        if spec.timeout <= 0 or spec.max_instances < 1:
            raise ValueError(f"functions[{spec.name!r}]: timeout and max_instances must be positive")
        return spec

    @property
    def mode(self) -> str:
        return "fc3" if self.runtime in FC3_RUNTIMES else "fc2"

    @property
    def label(self) -> str:
        return f"{self.service}/{self.name}"


@dataclass
class InvocationResult:
    """One event invocation: the function's reply bytes, or its error (``error_type`` set)."""

    request_id: str
    body: bytes
    error_type: str | None = None  # "UnhandledInvocationError" when the function failed
    log: str = ""  # what the function printed during this invocation

    @property
    def ok(self) -> bool:
        return self.error_type is None

    @property
    def error(self) -> dict[str, Any] | None:
        """``{"errorMessage", "errorType", "stackTrace"}`` when the function failed."""
        return None if self.ok else json.loads(self.body)


@dataclass
class HttpRequest:
    """An HTTP trigger request, path relative to the trigger (``/upgrades``)."""

    method: str
    path: str
    query_string: str
    headers: list[tuple[str, str]]
    body: bytes
    client_ip: str = "127.0.0.1"
    request_uri: str = ""


@dataclass
class HttpReply:
    request_id: str
    status: int
    headers: list[tuple[str, str]]
    body: bytes
    error_type: str | None = None
    log: str = ""


class FcBackend:
    """The functions, their warm instances and their async invocation queues.

    Each function has its own async queue, served by as many threads as it may have instances
    (FC scales each function on its own: a flood of one function's async invocations never holds
    back another's, e.g. a wave's 10,000 rollout messages and the tracker's next timer tick).

    Other rooms call ``invoke`` (sync), ``invoke_async`` (queued), ``wait_idle`` and ``close``.
    """

    def __init__(self, cloud: Any, functions: list[FunctionSpec], function_env: dict[str, str]) -> None:
        self.cloud = cloud
        self.functions = {(f.service, f.name): f for f in functions}
        self.function_env = dict(function_env)
        self.url: str | None = None
        self.destinations: list[dict[str, Any]] = []  # async destination records, in delivery order
        self._pools: dict[tuple[str, str], InstancePool] = {}
        self._logs: dict[str, deque[str]] = {}
        self._lock = threading.Lock()
        self._pending = 0
        self._idle = threading.Condition()
        self._async: dict[tuple[str, str], ThreadPoolExecutor] = {}
        self._closed = False
        self._role_credentials: dict[tuple[str, str], dict[str, str]] = {}

    @classmethod
    def from_seed(cls, seed: dict[str, Any], cloud: Any) -> FcBackend:
        return cls(
            cloud, [FunctionSpec.parse(f) for f in seed.get("functions", [])], seed.get("function_env", {})
        )

    def snapshot(self) -> dict[str, Any]:
        return {}

    def restore(self, state: dict[str, Any]) -> None:
        """Nothing to restore: instances are warm processes, not state."""

    # -- configuration -------------------------------------------------------------------------

    def bind(self, url: str) -> None:
        """Tell FC where localcloud listens, for ``${LOCALCLOUD_URL}`` in function environments."""
        self.url = url.rstrip("/")

    def function(self, service: str, name: str) -> FunctionSpec:
        spec = self.functions.get((service, name))
        if spec is None:
            if not any(s == service for s, _ in self.functions):
                raise exceptions.service_not_found(service)
            raise exceptions.function_not_found(service, name)
        return spec

    def logs(self, service: str, function: str) -> list[str]:
        """Recent log lines of a function's instances (its prints, tracebacks, FC's marks)."""
        with self._lock:
            return list(self._logs.get(f"{service}/{function}", ()))

    def _log(self, label: str, line: str) -> None:
        with self._lock:
            kept = self._logs.setdefault(label, deque(maxlen=LOG_LINES_KEPT))
        kept.append(line)
        # One write per line under one lock: lines of concurrent instances never merge.
        with _STDERR_LOCK:
            sys.stderr.write(f"[fc {label}] {line}\n")
            sys.stderr.flush()

    def _account(self, spec: FunctionSpec) -> dict[str, Any]:
        accounts = self.cloud.seed.get("accounts", [])
        for account in accounts:
            if spec.account_id in (None, str(account["account_id"])):
                return account
        raise exceptions.FcApiError(500, "InternalServerError", f"no seed account for function {spec.label}")

    def region_of(self, service: str, function: str) -> str:
        """The region a function runs in (its ARN's), also for a function that does not exist."""
        spec = self.functions.get((service, function))
        return self._region(spec) if spec else resources.DEFAULT_REGION

    def _credentials(self, spec: FunctionSpec, account: dict[str, Any]) -> dict[str, str]:
        """The service role's credentials: STS credentials of the function's role, minted once per
        account and role; without a role the account's first STS credential that is no role's (so
        acts as the account), if it has one, else its AK."""
        if spec.role is not None:
            return self._role_credential(str(account["account_id"]), spec.role)
        sts = account.get("sts") or []
        sts = [entry for entry in ([sts] if isinstance(sts, dict) else sts) if not entry.get("role")]
        if sts:
            return {k: sts[0][k] for k in ("access_key_id", "access_key_secret", "security_token")}
        return {
            "access_key_id": account["access_key_id"],
            "access_key_secret": account["access_key_secret"],
            "security_token": "",
        }

    def _role_credential(self, account_id: str, role: Role) -> dict[str, str]:
        with self._lock:
            minted = self._role_credentials.get((account_id, role.name))
            if minted is None:
                # Shaped like AssumeRole's (STS.N... key id, CAIS... token); never expires locally.
                minted = {
                    "access_key_id": f"STS.N{uuid.uuid4().hex[:20].upper()}",
                    "access_key_secret": uuid.uuid4().hex + uuid.uuid4().hex[:12],
                    "security_token": f"CAIS{uuid.uuid4().hex}{uuid.uuid4().hex}",
                }
                self.cloud.accounts.add(
                    Credential(
                        account_id,
                        minted["access_key_id"],
                        minted["access_key_secret"],
                        minted["security_token"],
                        role=role,
                    )
                )
                self._role_credentials[(account_id, role.name)] = minted
            return minted

    def _substitute(self, value: str) -> str:
        if "${LOCALCLOUD_" not in value:
            return value
        if self.url is None:
            raise exceptions.FcApiError(
                500, "InternalServerError", "localcloud's URL is not known yet: call cloud.fc.bind(url)"
            )
        host = urlsplit(self.url).netloc
        return value.replace("${LOCALCLOUD_URL}", self.url).replace("${LOCALCLOUD_HOST}", host)

    def _region(self, spec: FunctionSpec) -> str:
        for source in (spec.env, os.environ, self.function_env):
            if source.get("DBUPGRADE_REGION"):
                return spec.region or source["DBUPGRADE_REGION"]
        return spec.region or "cn-hangzhou"

    def _environment(self, spec: FunctionSpec, code_dir: Path, account: dict[str, Any]) -> dict[str, str]:
        env = {k: os.environ[k] for k in BASE_VARIABLES if k in os.environ}
        env.update(self.function_env)
        env.update({k: v for k, v in os.environ.items() if k.startswith(PASSED_PREFIXES)})
        env.update(spec.env)
        env = {k: self._substitute(str(v)) for k, v in env.items()}
        layers = [str((self.cloud.root / layer).resolve()) for layer in spec.layers]
        env.update(
            {
                "PYTHONPATH": os.pathsep.join([str(code_dir), *layers]),
                "PYTHONUNBUFFERED": "1",
                "FC_FUNC_CODE_PATH": str(code_dir),
                "FC_SERVICE_NAME": spec.service,
                "FC_FUNCTION_NAME": spec.name,
                "FC_FUNCTION_HANDLER": spec.handler,
                "FC_FUNCTION_MEMORY_SIZE": str(spec.memory),
                "FC_REGION": self._region(spec),
                "FC_ACCOUNT_ID": str(account["account_id"]),
                "FC_RUNTIME": spec.runtime,
            }
        )
        if spec.mode == "fc3":
            creds = self._credentials(spec, account)
            env["ALIBABA_CLOUD_ACCESS_KEY_ID"] = creds["access_key_id"]
            env["ALIBABA_CLOUD_ACCESS_KEY_SECRET"] = creds["access_key_secret"]
            env["ALIBABA_CLOUD_SECURITY_TOKEN"] = creds["security_token"]
        return env

    def _pool(self, spec: FunctionSpec) -> InstancePool:
        key = (spec.service, spec.name)
        with self._lock:
            if self._closed:
                raise exceptions.service_unavailable()
            pool = self._pools.get(key)
            if pool is None:
                code_dir = (self.cloud.root / spec.code_uri).resolve()
                if not code_dir.is_dir():
                    raise exceptions.FcApiError(
                        500, "InternalServerError", f"code_uri of {spec.label} is not a directory: {code_dir}"
                    )
                env = self._environment(spec, code_dir, self._account(spec))
                worker = WorkerSpec(spec.label, spec.handler, spec.mode, code_dir, env)
                pool = self._pools[key] = InstancePool(worker, spec.max_instances, self._log)
            return pool

    def _context(self, spec: FunctionSpec, request_id: str, qualifier: str | None) -> dict[str, Any]:
        account = self._account(spec)
        return {
            "request_id": request_id,
            "credentials": self._credentials(spec, account),
            "function": {
                "name": spec.name,
                "handler": spec.handler,
                "memory": spec.memory,
                "timeout": spec.timeout,
            },
            "service": {
                "name": spec.service,
                "log_project": "",
                "log_store": "",
                "qualifier": qualifier or "LATEST",
                "version_id": "",
            },
            "region": self._region(spec),
            "account_id": str(account["account_id"]),
        }

    # -- running -------------------------------------------------------------------------------

    def _run(self, spec: FunctionSpec, meta: dict[str, Any], body: bytes) -> WorkerReply:
        """One invocation on a warm instance; timeouts and crashes become a function error."""
        pool = self._pool(spec)
        try:
            instance = pool.acquire()
        except InstanceLost as exc:
            raise exceptions.service_unavailable() from exc
        try:
            return instance.invoke(meta, body, spec.timeout)
        except InstanceLost as exc:
            return WorkerReply({"ok": False, "error": {"errorMessage": str(exc)}}, b"")
        finally:
            pool.release(instance)

    def execute(
        self,
        spec: FunctionSpec,
        payload: bytes,
        *,
        qualifier: str | None = None,
        request_id: str | None = None,
    ) -> InvocationResult:
        """Run an event invocation now, without faults or a call record (the protocol layer's part)."""
        request_id = request_id or str(uuid.uuid4())
        meta = {
            "request_id": request_id,
            "kind": "event",
            "context": self._context(spec, request_id, qualifier),
        }
        reply = self._run(spec, meta, payload)
        if reply.meta["ok"]:
            return InvocationResult(request_id, reply.body, None, reply.log)
        return InvocationResult(
            request_id, json.dumps(reply.meta["error"]).encode(), FUNCTION_ERROR, reply.log
        )

    def _refusal(self, decision: FaultDecision) -> exceptions.FcApiError | None:
        """The API error an injected fault answers before the function runs, if any."""
        if decision.throttle:
            return exceptions.throttled(decision.retry_after_ms)
        if decision.error or decision.drop:
            return exceptions.service_unavailable()
        return None

    def invoke(self, service: str, function: str, payload: bytes) -> InvocationResult:
        """Invoke a function synchronously, as InvokeFunction would: thread-safe, blocking.

        Injected ``fc``/``InvokeFunction`` faults apply (throttle -> FcApiError 429, error and
        drop -> 503; lost_reply runs the function, then raises 503); unknown names raise
        FcApiError 404. A failing function is not an exception: see ``result.ok``.
        """
        spec = self.function(service, function)
        request_id = str(uuid.uuid4())
        params = {"service": service, "function": function, "invocation_type": "Sync"}
        decision = self.cloud.faults.decide("fc", "InvokeFunction")
        if decision.latency_ms:
            time.sleep(decision.latency_ms / 1000)
        refusal = self._refusal(decision)
        if refusal is not None:
            self.record_call(
                "InvokeFunction", params, refusal.status, refusal.code, request_id, fault=decision.name
            )
            raise refusal
        result = self.execute(spec, payload, request_id=request_id)
        self.record_call("InvokeFunction", params, 200, None, request_id, fault=decision.name)
        if decision.lost_reply:
            raise exceptions.service_unavailable()
        return result

    def invoke_http(
        self, spec: FunctionSpec, request: HttpRequest, qualifier: str | None = None
    ) -> HttpReply:
        """Serve one HTTP trigger request: WSGI on FC 2.0, the HTTP event JSON on FC 3.0."""
        request_id = str(uuid.uuid4())
        context = self._context(spec, request_id, qualifier)
        if spec.mode == "fc3":
            event = self._fc3_http_event(request, request_id, context["account_id"])
            meta = {"request_id": request_id, "kind": "event", "context": context}
            reply = self._run(spec, meta, json.dumps(event).encode())
            if reply.meta["ok"]:
                return self._fc3_http_reply(request_id, reply)
        else:
            host = dict((k.lower(), v) for k, v in request.headers).get("host", "127.0.0.1")
            name, _, port = host.partition(":")
            http = {
                "method": request.method,
                "path": request.path,
                "query_string": request.query_string,
                "headers": request.headers,
                "client_ip": request.client_ip,
                "server_name": name,
                "server_port": port or "80",
                "request_uri": request.request_uri,
            }
            meta = {"request_id": request_id, "kind": "wsgi", "context": context, "http": http}
            reply = self._run(spec, meta, request.body)
            if reply.meta["ok"]:
                headers = [(k, v) for k, v in reply.meta["headers"]]
                return HttpReply(request_id, reply.meta["status"], headers, reply.body, None, reply.log)
        error_body = json.dumps(reply.meta["error"]).encode()
        headers = [("Content-Type", "application/json")]
        return HttpReply(request_id, 502, headers, error_body, FUNCTION_ERROR, reply.log)

    def _fc3_http_event(self, request: HttpRequest, request_id: str, account_id: str) -> dict[str, Any]:
        def joined(pairs: list[tuple[str, str]]) -> dict[str, str]:
            out: dict[str, str] = {}
            for key, value in pairs:
                out[key] = f"{out[key]},{value}" if key in out else value
            return out

        headers = joined(request.headers)
        lower = {k.lower(): v for k, v in headers.items()}
        binary = not _is_text(request.body, lower.get("content-type", ""))
        now = self.cloud.clock.now()
        return {
            "version": "v1",
            "rawPath": quote(request.path),
            "body": base64.b64encode(request.body).decode() if binary else request.body.decode(),
            "isBase64Encoded": binary,
            "headers": headers,
            "queryParameters": joined(parse_qsl(request.query_string, keep_blank_values=True)),
            "requestContext": {
                "accountId": account_id,
                "domainName": lower.get("host", "127.0.0.1"),
                "domainPrefix": lower.get("host", "127.0.0.1").split(".")[0],
                "http": {
                    "method": request.method,
                    "path": request.path,
                    "protocol": "HTTP/1.1",
                    "sourceIp": request.client_ip,
                    "userAgent": lower.get("user-agent", ""),
                },
                "requestId": request_id,
                "time": datetime.fromtimestamp(now, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
                "timeEpoch": str(int(now * 1000)),
            },
        }

    @staticmethod
    def _fc3_http_reply(request_id: str, reply: WorkerReply) -> HttpReply:
        """A reply with ``statusCode`` is a response struct; anything else is the 200 body itself."""
        try:
            struct = json.loads(reply.body)
        except ValueError:
            struct = None
        if not isinstance(struct, dict) or "statusCode" not in struct:
            return HttpReply(request_id, 200, [], reply.body, None, reply.log)
        body = struct.get("body") or ""
        if not isinstance(body, str):
            body = json.dumps(body)
        raw = base64.b64decode(body) if struct.get("isBase64Encoded") else body.encode()
        headers = [(str(k), str(v)) for k, v in (struct.get("headers") or {}).items()]
        return HttpReply(request_id, int(struct["statusCode"]), headers, raw, None, reply.log)

    # -- async ---------------------------------------------------------------------------------

    def submit_async(
        self,
        spec: FunctionSpec,
        payload: bytes,
        *,
        qualifier: str | None = None,
        request_id: str | None = None,
    ) -> str:
        """Queue an async invocation (no faults, no call record); returns its request id."""
        if len(payload) > ASYNC_PAYLOAD_LIMIT:
            raise exceptions.entity_too_large(ASYNC_PAYLOAD_LIMIT)
        request_id = request_id or str(uuid.uuid4())
        with self._lock:
            if self._closed:
                raise exceptions.service_unavailable()
            executor = self._async.get((spec.service, spec.name))
            if executor is None:
                executor = self._async[(spec.service, spec.name)] = ThreadPoolExecutor(
                    max_workers=spec.max_instances, thread_name_prefix=f"fc-async-{spec.name}"
                )
        with self._idle:
            self._pending += 1
        executor.submit(self._run_async, spec, payload, qualifier, request_id)
        return request_id

    async def invoke_async(self, service: str, function: str, payload: bytes) -> str:
        """Queue an async invocation (``x-fc-invocation-type: Async``); returns its request id.

        It runs in the background, retried ``max_async_retry_attempts`` times on a function
        error, then sent to the function's ``on_failure`` destination. ``wait_idle`` waits for it.
        Faults and errors as ``invoke``, raised before anything is queued (lost_reply: after).
        """
        spec = self.function(service, function)
        request_id = str(uuid.uuid4())
        params = {"service": service, "function": function, "invocation_type": "Async"}
        decision = self.cloud.faults.decide("fc", "InvokeFunction")
        if decision.latency_ms:
            await asyncio.sleep(decision.latency_ms / 1000)
        refusal = self._refusal(decision)
        if refusal is not None:
            self.record_call(
                "InvokeFunction", params, refusal.status, refusal.code, request_id, fault=decision.name
            )
            raise refusal
        self.submit_async(spec, payload, request_id=request_id)
        self.record_call("InvokeFunction", params, 202, None, request_id, fault=decision.name)
        if decision.lost_reply:
            raise exceptions.service_unavailable()
        return request_id

    def _run_async(self, spec: FunctionSpec, payload: bytes, qualifier: str | None, request_id: str) -> None:
        try:
            attempts = 0
            result: InvocationResult | None = None
            while attempts <= spec.max_async_retry_attempts and not self._closed:
                attempts += 1
                try:
                    result = self.execute(spec, payload, qualifier=qualifier, request_id=request_id)
                except exceptions.FcApiError as exc:
                    result = InvocationResult(request_id, json.dumps(exc.body(request_id)).encode(), exc.code)
                if result.ok:
                    break
            if result is None:
                return
            destination = spec.on_success if result.ok else spec.on_failure
            if destination:
                record = self._destination_record(spec, qualifier, payload, result, attempts)
                self._deliver(spec, destination, record)
        finally:
            with self._idle:
                self._pending -= 1
                self._idle.notify_all()

    def _destination_record(
        self,
        spec: FunctionSpec,
        qualifier: str | None,
        payload: bytes,
        result: InvocationResult,
        attempts: int,
    ) -> dict[str, Any]:
        account = self._account(spec)
        region = self._region(spec)
        service = f"{spec.service}.{qualifier or 'LATEST'}"
        arn = f"acs:fc:{region}:{account['account_id']}:services/{service}/functions/{spec.name}"
        return {
            "timestamp": int(self.cloud.clock.now() * 1000),
            "requestContext": {
                "requestId": result.request_id,
                "functionArn": arn,
                "condition": "Success" if result.ok else result.error_type,
                "approximateInvokeCount": attempts,
            },
            "requestPayload": payload.decode(errors="replace"),
            "responseContext": {"statusCode": 200, "functionError": result.error_type or ""},
            "responsePayload": result.body.decode(errors="replace"),
        }

    def _deliver(self, spec: FunctionSpec, destination: dict[str, str], record: dict[str, Any]) -> None:
        """Send a destination record to its MNS queue; every record is also kept in ``destinations``."""
        entry: dict[str, Any] = {"destination": destination, "record": record, "delivered": False}
        if "queue" in destination:
            try:
                sender = str(self._account(spec)["account_id"])
                self._authorize_destination(spec, sender, destination["queue"])
                self.cloud.mns.send(destination["queue"], json.dumps(record), sender)
                entry["delivered"] = True
            except Exception as exc:  # a missing queue loses the record, as FC would; say why
                entry["error"] = f"{getattr(exc, 'code', type(exc).__name__)}: {exc}"
                self._log(spec.label, f"localcloud: async destination {destination} failed: {entry['error']}")
        with self._lock:
            self.destinations.append(entry)

    def _authorize_destination(self, spec: FunctionSpec, account_id: str, queue: str) -> None:
        """FC sends a destination record with the function's role, so that role needs mns:SendMessage
        on the queue's messages (terraform ``fc_function_async_invoke_config`` docs; MNS RAM table)."""
        if spec.role is None:
            return
        action, resource = resources.mns_queue_messages(queue, self._region(spec), account_id)
        if spec.role.policy.decide(action, resource) != ALLOW:
            raise exceptions.access_denied(action, resource)

    def wait_idle(self, timeout: float) -> bool:
        """True once every queued async invocation (retries and destinations included) has finished."""
        deadline = time.monotonic() + timeout
        with self._idle:
            while self._pending:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._idle.wait(remaining)
        return True

    # -- bookkeeping ---------------------------------------------------------------------------

    def record_call(
        self,
        action: str,
        params: dict[str, Any],
        status: int,
        code: str | None,
        request_id: str,
        access_key_id: str | None = None,
        fault: str | None = None,
    ) -> None:
        self.cloud.calls.record(
            Call("fc", action, params, status, code, self.cloud.clock.now(), request_id, access_key_id, fault)
        )

    def pool_sizes(self) -> dict[str, int]:
        """Running instances per function (``service/function``)."""
        with self._lock:
            pools = dict(self._pools)
        return {f"{s}/{f}": pool.size for (s, f), pool in pools.items()}

    def close(self) -> None:
        """Stop the async queues and every instance."""
        with self._lock:
            self._closed = True
            pools, self._pools = list(self._pools.values()), {}
            executors, self._async = list(self._async.values()), {}
        for pool in pools:
            pool.close()
        for executor in executors:
            executor.shutdown(wait=True, cancel_futures=True)


def _is_text(body: bytes, content_type: str) -> bool:
    if not body:
        return True
    if content_type and not content_type.startswith(("text/", "application/json", "application/x-www-form")):
        return False
    try:
        body.decode()
    except UnicodeDecodeError:
        return False
    return True
