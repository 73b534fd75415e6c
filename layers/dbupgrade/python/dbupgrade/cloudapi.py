"""Every control-plane call, through tea-openapi's generic ``call_api`` (ACS3 signing, no product SDK).

``CloudApi.call`` makes one attempt and maps whatever went wrong to ``CloudError``;
``CloudApi.call_with_retries`` retries what is safe to retry (throttling, 5xx, connection failures
before the request was sent) with capped exponential backoff and full jitter, inside the
invocation's remaining time. An ambiguous failure (the request may have been processed) is never
retried here: the caller must look before it resubmits.

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
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from dbupgrade.config import Config
from dbupgrade.context import Credentials
from dbupgrade.engines import Engine
from dbupgrade.logging import logger, mask, register_secret
from dbupgrade.ratelimit import RateLimited, RateLimiter

if TYPE_CHECKING:
    from alibabacloud_tea_openapi.client import Client

THROTTLING_CODES = frozenset({"Throttling", "Throttling.User", "Throttling.Api", "ServiceUnavailable"})
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
        super().__init__(f"{code}: {self.message}")

    @property
    def throttled(self) -> bool:
        return self.code in THROTTLING_CODES or self.status == 429

    @property
    def transient(self) -> bool:
        """Worth retrying (after a pause): throttled, a server fault, or a transport failure."""
        return self.throttled or self.status is None or self.status >= 500


@dataclass(frozen=True)
class RetryPolicy:
    """Capped exponential backoff with full jitter ("Exponential Backoff And Jitter", AWS, 2015)."""

    base_seconds: float = 0.2
    cap_seconds: float = 5.0
    max_attempts: int = 8
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

    def client(self, engine: Engine, region: str, credentials: Credentials | None) -> Client:
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

    def _new_client(self, engine: Engine, region: str, credentials: Credentials | None) -> Client:
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
        engine: Engine,
        region: str,
        action: str,
        params: Mapping[str, str],
        credentials: Credentials | None,
        *,
        deadline: float | None = None,
    ) -> dict[str, Any]:
        """One attempt; returns the JSON body (with RequestId) or raises ``CloudError``.

        With a limiter, the attempt first waits for a token of the fleet-wide rate limit.
        """
        from alibabacloud_tea_openapi import models as open_api_models
        from darabonba.runtime import RuntimeOptions

        if self.limiter is not None:
            self._take_token(self.limiter, engine, action, deadline)
        client = self.client(engine, region, credentials)
        api = open_api_models.Params(
            action=action,
            version=engine.api_version,
            protocol="HTTPS",
            pathname="/",
            method="POST",
            auth_type="AK",
            style="RPC",
            req_body_type="formData",
            body_type="json",
        )
        query = {"RegionId": region, **{k: str(v) for k, v in params.items()}}
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
            # Only the cloud's flow control lowers the shared rate; a 5xx is a fault, not a rate.
            if self.limiter is not None and error.throttled and error.code != "ServiceUnavailable":
                self.limiter.throttled(engine.product, action)
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
            self.limiter.succeeded(engine.product, action)
        body = response.get("body") or {}
        return body if isinstance(body, dict) else {"Body": body}

    def _take_token(self, limiter: RateLimiter, engine: Engine, action: str, deadline: float | None) -> None:
        """Wait for a rate-limit token, leaving the retry policy's reserve of the invocation."""
        if deadline is None:
            deadline = time.monotonic() + DEFAULT_READ_TIMEOUT_MS / 1000
        try:
            limiter.acquire(engine.product, action, deadline=deadline - self.retry.reserve_seconds)
        except RateLimited as limited:
            # Throttled (429) and transient, but never sent: the caller may retry or redeliver.
            raise CloudError(
                "RateLimited", str(limited), status=429, retry_after=limited.wait_seconds
            ) from None

    def call_with_retries(
        self,
        engine: Engine,
        region: str,
        action: str,
        params: Mapping[str, str],
        credentials: Credentials | None,
        *,
        deadline: float,
        sleep: Callable[[float], None] = time.sleep,
    ) -> dict[str, Any]:
        """``call`` again after transient refusals until it answers, refuses for good or time runs out.

        An ambiguous failure is raised at once: resending might do the thing twice.
        """
        attempt = 0
        while True:
            try:
                return self.call(engine, region, action, params, credentials, deadline=deadline)
            except CloudError as error:
                if error.ambiguous or not error.transient:
                    raise
                attempt += 1
                if attempt >= self.retry.max_attempts:
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
