"""Every control-plane call, through tea-openapi's generic ``call_api`` (ACS3 signing, no product SDK).

``CloudApi.call`` makes one attempt and maps whatever went wrong to ``CloudError``;
``CloudApi.call_with_retries`` retries what is safe to retry (throttling, 5xx, connection failures)
with capped exponential backoff and full jitter, inside the invocation's remaining time. An
ambiguous failure (a lost reply, a read timeout: the request may have been processed) is retried
only for a call that reads (``resendable``): describing twice changes nothing. The upgrade call is
the one that writes; its ambiguous failure is raised at once and the caller looks before it
resubmits.

Retries live here rather than in ``Config.retry_options`` because tea-openapi 0.4.x would also
retry an ambiguous upgrade call blindly and knows nothing of the FC deadline. A hand-written loop
of a dozen lines beats a dependency (tenacity) that would still need both rules written out.

Example::

    api = CloudApi(config)
    body = api.call(REDIS, "cn-hangzhou", "DescribeInstanceAttribute", {"InstanceId": "r-bp1abc"}, creds)
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

from dbupgrade.config import Config
from dbupgrade.context import Credentials
from dbupgrade.logging import logger, mask, register_secret
from dbupgrade.ratelimit import RateLimited, RateLimiter

if TYPE_CHECKING:
    from alibabacloud_tea_openapi.client import Client

# -- what a failed call means: every error class in one place --------------------------------------
# Flow control, retried with backoff: terraform-provider-alicloud ``alicloud/errors.go`` ``NeedRetry``
# retries any code matching /Throttling/ plus Rejected.Throttling and ServiceUnavailable (and 5xx);
# our own fleet-wide limiter adds RateLimited (429).
THROTTLING_MARK = "Throttling"
THROTTLING_CODES = frozenset({"Rejected.Throttling", "ServiceUnavailable", "RateLimited"})
# The instance is busy with another task (a backup, a spec change): worth trying again later, never a
# verdict on the request. terraform ``alicloud/errors.go`` ``OperationDeniedDBStatus`` (IncorrectDBInstanceState,
# OperationDenied.DBInstanceStatus, ConcurrentTaskExceeded, LockTimeout) and the Task.Conflict retries
# of ``resource_alicloud_kvstore_instance.go`` and ``resource_alicloud_mongodb_instance.go``.
BUSY_CODES = frozenset(
    {
        "Task.Conflict",
        "OperationDenied.DBInstanceStatus",
        "IncorrectDBInstanceState",
        "ConcurrentTaskExceeded",
        "LockTimeout",
    }
)
# The instance does not exist (in that region): R-kvstore InvalidInstanceId.NotFound (API metadata of
# its sibling actions; terraform ``service_alicloud_r_kvstore.go``), Dds InvalidDBInstanceId.NotFound
# (terraform ``service_alicloud_mongodb.go``). Any other 404 is not about the instance: a wrong
# AccessKey is a 404 InvalidAccessKeyId.NotFound (XWJR-Ops/zabbix-RDS-monitor#9).
INSTANCE_NOT_FOUND_CODES = frozenset({"InvalidInstanceId.NotFound", "InvalidDBInstanceId.NotFound"})
# Configuration errors: the key, the role's policy, the endpoint or the API version is wrong. Codes of
# the POP gateway's signature and authorization checks (api.aliyun.com common error codes; terraform
# ``alicloud/errors.go`` lists Forbidden.RAM and InvalidAccessKeyId.NotFound). Each maps to what to fix.
CREDENTIAL_HINTS = {
    "InvalidAccessKeyId.NotFound": (
        "the AccessKey ID is not known to Alibaba Cloud: check ALIBABA_CLOUD_ACCESS_KEY_ID or the function's role"
    ),
    "InvalidAccessKeyId.Inactive": (
        "the AccessKey is disabled: enable it or rotate ALIBABA_CLOUD_ACCESS_KEY_ID to an active key"
    ),
    "SignatureDoesNotMatch": (
        "the request signature does not match: check ALIBABA_CLOUD_ACCESS_KEY_SECRET belongs to the key ID"
    ),
    "IncompleteSignature": "the request signature is incomplete: check the AccessKey secret",
    "InvalidTimeStamp.Expired": "the request timestamp is too far from Alibaba Cloud's: check the system clock",
}
CREDENTIAL_PREFIXES = {
    "InvalidSecurityToken.": (
        "the STS security token is expired or invalid: refresh ALIBABA_CLOUD_SECURITY_TOKEN or the function's role"
    ),
}
PERMISSION_CODES = frozenset({"NoPermission", "Forbidden"})
PERMISSION_PREFIX = "Forbidden"  # Forbidden.RAM, Forbidden.NoPermission, Forbidden.AccessDenied...
ENDPOINT_CODES = {
    "InvalidAction.NotFound": "the endpoint does not serve this action: check the region and DBUPGRADE_*_ENDPOINT",
    "InvalidVersion": "the endpoint does not serve this API version: check the region and DBUPGRADE_*_ENDPOINT",
    "InvalidAction": "the endpoint does not serve this action: check the region and DBUPGRADE_*_ENDPOINT",
}
# Substrings of requests' connection errors raised before any byte of the request left: safe to resend.
NOT_SENT_MARKERS = (
    "Connection refused",
    "NewConnectionError",
    "ConnectTimeoutError",
    "NameResolutionError",
    "Failed to resolve",
    "Name or service not known",
)
DEFAULT_READ_TIMEOUT_MS = 10_000
DEFAULT_CONNECT_TIMEOUT_MS = 5_000


class Api(Protocol):
    """What a call needs to know of the API it calls: an engine (``dbupgrade.engines.Engine``) or a
    service that is not one (STS, Resource Manager: ``dbupgrade.accounts``)."""

    @property
    def name(self) -> str: ...
    @property
    def product(self) -> str: ...
    @property
    def api_version(self) -> str: ...
    @property
    def endpoint_variable(self) -> str: ...
    @property
    def ram_service(self) -> str: ...
    @property
    def upgrade_action(self) -> str: ...
    def endpoint(self, region: str) -> str: ...


# Writes besides the upgrade: moving or cancelling a booked upgrade (``dbupgrade.booked``) and
# starting a backup (the gate, ``dbupgrade.backup``: a second job, or BackupJobExists).
ONCE_ONLY_ACTIONS = frozenset({"ModifyActiveOperationTasks", "CancelActiveOperationTasks", "CreateBackup"})


def resendable(engine: Api, action: str) -> bool:
    """Whether ``action`` may be sent again after a lost reply: every call but the engine's upgrade and
    the other writes (``ONCE_ONLY_ACTIONS``) only reads (describe, list, DescribeEngineVersion,
    DescribeAvailableEngineVersion, DescribeHistoryTasks), so doing it twice is harmless. The one place
    that tells reads from the writes.

    >>> from dbupgrade.engines import REDIS
    >>> resendable(REDIS, "DescribeInstanceAttribute"), resendable(REDIS, "ModifyInstanceMajorVersion")
    (True, False)
    """
    return action != engine.upgrade_action and action not in ONCE_ONLY_ACTIONS


class CloudError(Exception):
    """A failed cloud call: the API's own error, or a transport failure (status None).

    ``ambiguous`` is True when the request may have been processed (reply lost, read timeout).
    """

    def __init__(
        self,
        code: str,
        message: str,
        *,
        status: int | None = None,
        request_id: str | None = None,
        retry_after: float | None = None,
        ambiguous: bool = False,
    ) -> None:
        self.code = code
        self.message = mask(message)
        self.status = status
        self.request_id = request_id
        self.retry_after = retry_after  # seconds
        self.ambiguous = ambiguous
        self.action: str | None = None  # the RAM action refused ("kvstore:DescribeInstances"), set by call
        super().__init__(f"{code}: {self.message}")

    @property
    def throttled(self) -> bool:
        """Flow control (or a 5xx): the caller slows down and retries."""
        return THROTTLING_MARK in self.code or self.code in THROTTLING_CODES or self.status == 429

    @property
    def busy(self) -> bool:
        """The instance is busy with another task: try again later."""
        return self.code in BUSY_CODES

    @property
    def transient(self) -> bool:
        """Worth retrying (after a pause): throttled, busy, a server fault, or a transport failure.

        A configuration error is never transient, whatever its status: no retry fixes a key.
        """
        if self.configuration:
            return False
        return self.throttled or self.busy or self.status is None or self.status >= 500

    @property
    def instance_not_found(self) -> bool:
        """The instance does not exist (not any 404: a wrong AccessKey is a 404 too)."""
        return self.code in INSTANCE_NOT_FOUND_CODES

    @property
    def configuration(self) -> bool:
        """The key, the role's policy, the endpoint or the API version is wrong: an operator must fix it.

        Such a verdict is not final for the request: it is neither remembered by idempotency (a
        redelivery after the operator fixed the key must run, not replay the failure for 7 days) nor
        counted against a rollout's error budget (the rollout halts at once instead: every other
        target would fail the same way).
        """
        return self._permission or self._hint is not None

    @property
    def _permission(self) -> bool:
        return self.code in PERMISSION_CODES or self.code.startswith(PERMISSION_PREFIX)

    @property
    def _hint(self) -> str | None:
        code = self.code
        if code in CREDENTIAL_HINTS:
            return CREDENTIAL_HINTS[code]
        for prefix, hint in CREDENTIAL_PREFIXES.items():
            if code.startswith(prefix):
                return hint
        return ENDPOINT_CODES.get(code)

    def explain(self, resource: str | None = None) -> str:
        """One line for an operator: what went wrong (for a configuration error, what to fix), then the code.

        >>> error = CloudError("Forbidden.RAM", "denied")
        >>> error.action = "kvstore:ModifyInstanceMajorVersion"
        >>> error.explain("r-bp1x")
        'the RAM policy does not allow kvstore:ModifyInstanceMajorVersion on r-bp1x: add it to the role (Forbidden.RAM)'
        """
        if self._permission:
            action = self.action or "this call"
            what = f"{action} on {resource}" if resource else action
            text = f"the RAM policy does not allow {what}: add it to the role"
        else:
            text = self._hint or self.message or "the cloud API call failed"
        return f"{text} ({self.code})"


class RetryPolicy(NamedTuple):
    """Capped exponential backoff with full jitter ("Exponential Backoff And Jitter", AWS, 2015)."""

    base_seconds: float = 0.2
    cap_seconds: float = 5.0
    max_attempts: int = 8
    # An instance busy with another task (a backup, a spec change) stays busy for minutes: a few
    # tries within the invocation, then the outcome says "try again later".
    busy_attempts: int = 3
    # Leave this much of the invocation for the calls after the retried one (record, notify, reply).
    reserve_seconds: float = 2.0

    def delay(self, attempt: int, rng: random.Random) -> float:
        return rng.uniform(0, min(self.cap_seconds, self.base_seconds * (2**attempt)))


def _map_exception(exc: Exception) -> CloudError:
    from alibabacloud_tea_openapi.exceptions import AlibabaCloudException
    from darabonba.exceptions import UnretryableException

    if isinstance(exc, AlibabaCloudException):
        retry_after_ms = getattr(exc, "retry_after", None)
        return CloudError(
            str(exc.code or "Unknown"),
            str((exc.data or {}).get("Message") or exc.message or ""),
            status=getattr(exc, "status_code", None) or getattr(exc, "statusCode", None),
            request_id=getattr(exc, "request_id", None),
            retry_after=retry_after_ms / 1000 if retry_after_ms else None,
        )
    if isinstance(exc, UnretryableException):
        inner = str(getattr(exc, "inner_exception", None) or exc)
        sent = not any(marker in inner for marker in NOT_SENT_MARKERS)
        code = "Timeout" if "timed out" in inner and sent else "ConnectionError"
        return CloudError(code, inner[:300], ambiguous=sent)
    return CloudError("ClientError", f"{type(exc).__name__}: {str(exc)[:300]}", ambiguous=True)


# One tea-openapi ``Params`` per (API version, action), built on first use: ``call_api`` only reads
# it, and the same nine fields on every call cost a model build per call otherwise.
_PARAMS: dict[tuple[str, str], Any] = {}


def _due_times(actions: Sequence[str], taken: list[tuple[bool, float]] | None) -> dict[str, float]:
    """The granted takes of ``actions`` as when each token is due (``time.monotonic()``); {} when the
    store failed (each call takes its own)."""
    if taken is None:
        return {}
    now = time.monotonic()
    return {action: now + wait for action, (granted, wait) in zip(actions, taken, strict=True) if granted}


def _params(version: str, action: str) -> Any:
    found = _PARAMS.get((version, action))
    if found is None:
        from alibabacloud_tea_openapi import models as open_api_models

        found = _PARAMS[(version, action)] = open_api_models.Params(
            action=action,
            version=version,
            protocol="HTTPS",
            pathname="/",
            method="POST",
            auth_type="AK",
            style="RPC",
            req_body_type="formData",
            body_type="json",
        )
    return found


class CloudApi:
    """tea-openapi clients, one per (engine, region, credentials), reused while the instance is warm."""

    def __init__(
        self,
        config: Config,
        retry: RetryPolicy | None = None,
        seed: int | None = None,
        limiter: RateLimiter | None = None,
    ) -> None:
        self.config = config
        self.retry = retry or RetryPolicy()
        self.limiter = limiter  # the fleet-wide rate limit; None: only the cloud's own throttling
        self._rng = random.Random(seed)
        self._clients: dict[tuple[str, ...], Client] = {}
        self._lock = threading.Lock()

    def credentials(self, context_credentials: Credentials | None) -> Credentials | None:
        """FC 2.0 context STS credentials, else the ALIBABA_CLOUD_* env, else None (default chain)."""
        if context_credentials is not None:
            return context_credentials
        if self.config.access_key_id and self.config.access_key_secret:
            return Credentials(
                self.config.access_key_id, self.config.access_key_secret, self.config.security_token
            )
        return None

    def client(self, engine: Api, region: str, credentials: Credentials | None) -> Client:
        key = (
            engine.name,
            region,
            credentials.access_key_id if credentials else "",
            credentials.security_token or "" if credentials else "",
        )
        with self._lock:
            client = self._clients.get(key)
            if client is None:
                client = self._clients[key] = self._new_client(engine, region, credentials)
                # STS credentials rotate: drop clients built for stale tokens instead of growing forever.
                if len(self._clients) > 32:
                    oldest = next(iter(self._clients))
                    del self._clients[oldest]
            return client

    def _new_client(self, engine: Api, region: str, credentials: Credentials | None) -> Client:
        from alibabacloud_tea_openapi import models as open_api_models
        from alibabacloud_tea_openapi.client import Client

        override = self.config.endpoint_override(engine.endpoint_variable)
        config = open_api_models.Config(
            region_id=region,
            endpoint=override.host if override else engine.endpoint(region),
            protocol=override.protocol if override else "https",
            connect_timeout=DEFAULT_CONNECT_TIMEOUT_MS,
            read_timeout=DEFAULT_READ_TIMEOUT_MS,
        )
        if credentials is not None:
            register_secret(credentials.access_key_secret)
            register_secret(credentials.security_token)
            config.access_key_id = credentials.access_key_id
            config.access_key_secret = credentials.access_key_secret
            config.security_token = credentials.security_token
        else:
            # The alibabacloud-credentials default chain (env, profile, ECS RAM role, OIDC...).
            from alibabacloud_credentials.client import Client as CredentialClient

            config.credential = CredentialClient()
        return Client(config)

    def call(
        self,
        engine: Api,
        region: str,
        action: str,
        params: Mapping[str, str],
        credentials: Credentials | None,
        *,
        deadline: float | None = None,
        regional: bool = True,
        token_due: float | None = None,
    ) -> dict[str, Any]:
        """One attempt; returns the JSON body (with RequestId) or raises ``CloudError``.

        With a limiter, the attempt first waits for a token of the fleet-wide rate limit, unless
        the caller already holds one: ``token_due``, when it is due (``time.monotonic()``; taken
        with another write, ``take_args``, or ahead, ``reserve``): the attempt waits until then.
        ``regional=False`` sends no RegionId (Dds DescribeRegions lists only the region it names).
        """
        from alibabacloud_tea_openapi import models as open_api_models
        from darabonba.runtime import RuntimeOptions

        account = credentials.account_id if credentials is not None else None
        if token_due is not None:
            pause = token_due - time.monotonic()
            if pause > 0:
                time.sleep(pause)
        elif self.limiter is not None:
            self._take_token(self.limiter, engine, action, deadline, account, region)
        client = self.client(engine, region, credentials)
        api = _params(engine.api_version, action)
        query = {"RegionId": region} if regional else {}
        query.update({k: str(v) for k, v in params.items()})
        read_ms = DEFAULT_READ_TIMEOUT_MS
        if deadline is not None:
            read_ms = max(500, min(read_ms, int((deadline - time.monotonic()) * 1000)))
        runtime = RuntimeOptions(
            read_timeout=read_ms, connect_timeout=min(read_ms, DEFAULT_CONNECT_TIMEOUT_MS)
        )
        try:
            response = client.call_api(api, open_api_models.OpenApiRequest(query=query), runtime)
        except Exception as exc:
            error = _map_exception(exc)
            error.action = f"{engine.ram_service}:{action}"
            # Only the cloud's flow control lowers the shared rate; a 5xx is a fault, not a rate.
            if self.limiter is not None and error.throttled and error.code != "ServiceUnavailable":
                self.limiter.throttled(engine.product, action, account, region)
            logger.info(
                "cloud call failed",
                extra={
                    "action": action,
                    "code": error.code,
                    "status": error.status,
                    "api_request_id": error.request_id,
                },
            )
            raise error from None
        if self.limiter is not None:
            self.limiter.succeeded(engine.product, action, account, region)
        body = response.get("body") or {}
        return body if isinstance(body, dict) else {"Body": body}

    def take_args(
        self,
        engine: Api,
        action: str,
        credentials: Credentials | None,
        deadline: float | None,
        *,
        region: str,
    ) -> tuple[str, list[Any]] | None:
        """The bucket and arguments of ``action``'s token for a script that takes it along with
        other work (the store's claim); None without a limiter. The script's reply goes to
        ``token_taken``; the call passes the time it answers as ``token_due`` on its first attempt."""
        if self.limiter is None:
            return None
        account = credentials.account_id if credentials is not None else None
        return self.limiter.take_args(
            engine.product, action, deadline=self._token_deadline(deadline), account=account, region=region
        )

    def token_taken(self, bucket: str, reply: list[Any]) -> float | None:
        """A token taken by another script (``take_args``): when it is due (``time.monotonic()``);
        None when none was granted, so the call takes its own."""
        if self.limiter is None:
            return None
        wait = self.limiter.taken_elsewhere(bucket, reply)
        return None if wait is None else time.monotonic() + wait

    def reserve(
        self,
        engine: Api,
        actions: Sequence[str],
        credentials: Credentials | None,
        deadline: float | None,
        *,
        region: str,
    ) -> dict[str, float]:
        """The tokens of calls about to be made (a request's reads), in one round trip instead of
        one each: action -> when its token is due (``time.monotonic()``), for the call to pass as
        ``token_due``. Each bucket is taken as ``call`` would take it; an action whose token would
        come too late, or every action when the store fails, is left out (its call takes its own).
        A reserved call the caller ends up not making leaves its token spent: that errs on the
        slow side, never over the limit."""
        if self.limiter is None:
            return {}
        takes = self._takes(self.limiter, engine, actions, credentials, deadline, region)
        return _due_times(actions, self.limiter.take_many(takes))

    def queue_reserve(
        self,
        pipeline: Any,
        engine: Api,
        actions: Sequence[str],
        credentials: Credentials | None,
        deadline: float | None,
        *,
        region: str,
    ) -> Callable[[Any], dict[str, float]] | None:
        """``reserve`` queued on another command's ``pipeline`` (a request's first round trip, on
        the limiter's Redis); returns what reads its reply into ``reserve``'s answer, or None when
        nothing was queued (no limiter, no actions). A failed take answers {}: each call takes its own."""
        if self.limiter is None or not actions:
            return None
        takes = self._takes(self.limiter, engine, actions, credentials, deadline, region)
        taken_from = self.limiter.queue_take_many(pipeline, takes)
        return lambda reply: _due_times(actions, taken_from(reply))

    def _takes(
        self,
        limiter: RateLimiter,
        engine: Api,
        actions: Sequence[str],
        credentials: Credentials | None,
        deadline: float | None,
        region: str,
    ) -> list[tuple[str, list[Any]]]:
        account = credentials.account_id if credentials is not None else None
        latest = self._token_deadline(deadline)
        return [
            limiter.take_args(engine.product, action, deadline=latest, account=account, region=region)
            for action in actions
        ]

    def _token_deadline(self, deadline: float | None) -> float:
        """The latest a token may come: the invocation's deadline less the retry policy's reserve."""
        if deadline is None:
            deadline = time.monotonic() + DEFAULT_READ_TIMEOUT_MS / 1000
        return deadline - self.retry.reserve_seconds

    def _take_token(
        self,
        limiter: RateLimiter,
        engine: Api,
        action: str,
        deadline: float | None,
        account: str | None,
        region: str,
    ) -> None:
        """Wait for a rate-limit token of ``account``'s bucket in ``region`` (account None: the own
        account's), leaving the retry policy's reserve of the invocation."""
        try:
            limiter.acquire(
                engine.product,
                action,
                deadline=self._token_deadline(deadline),
                account=account,
                region=region,
            )
        except RateLimited as limited:
            # Throttled (429) and transient, but never sent: the caller may retry or redeliver.
            raise CloudError(
                "RateLimited", str(limited), status=429, retry_after=limited.wait_seconds
            ) from None

    def call_with_retries(
        self,
        engine: Api,
        region: str,
        action: str,
        params: Mapping[str, str],
        credentials: Credentials | None,
        *,
        deadline: float,
        sleep: Callable[[float], None] = time.sleep,
        regional: bool = True,
        token_due: float | None = None,
    ) -> dict[str, Any]:
        """``call`` again after transient refusals until it answers, refuses for good or time runs out.

        An ambiguous failure of the upgrade call is raised at once: resending might upgrade twice.
        A read's lost reply or timeout is retried like any transient failure. ``token_due``: the
        first attempt's rate-limit token is already taken, due then (each retry takes its own).
        """
        attempt = 0
        while True:
            try:
                return self.call(
                    engine,
                    region,
                    action,
                    params,
                    credentials,
                    deadline=deadline,
                    regional=regional,
                    token_due=token_due if attempt == 0 else None,
                )
            except CloudError as error:
                if (error.ambiguous and not resendable(engine, action)) or not error.transient:
                    raise
                attempt += 1
                limit = self.retry.busy_attempts if error.busy else self.retry.max_attempts
                if attempt >= limit:
                    raise
                with self._lock:
                    pause = self.retry.delay(attempt, self._rng)
                if error.retry_after is not None:
                    pause = max(pause, error.retry_after)
                if time.monotonic() + pause + self.retry.reserve_seconds > deadline:
                    raise
                logger.info(
                    "retrying cloud call", extra={"action": action, "code": error.code, "attempt": attempt}
                )
                sleep(pause)
