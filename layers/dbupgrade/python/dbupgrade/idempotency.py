"""Powertools idempotency (Redis persistence) without boto3.

``aws_lambda_powertools.utilities.idempotency/__init__.py`` imports its DynamoDB layer, which
imports boto3 at import time. boto3 is not in the layer (20 MB and cold-start time we don't need),
and the Redis layer itself does ``from aws_lambda_powertools.utilities.idempotency import
BasePersistenceLayer``. So this module registers the package in ``sys.modules`` *without running
its __init__* (``module_from_spec`` only creates the module object), then imports the submodules we
use and hangs ``BasePersistenceLayer`` on the package the way __init__ would. If the package was
already imported normally (boto3 present), it is used as is. This is the only place that knows.

Example::

    persistence = redis_persistence(redis_client)
    run_once = make_idempotent(work, persistence, context, expires_after_seconds=7 * 24 * 3600)
    run_once(payload={"key": "webhook|delivery:msg-1|r-bp1abc", "request": {"target_version": "7.0"}})
"""

from __future__ import annotations

import importlib.util
import sys
import threading
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from dbupgrade.store.keys import IDEMPOTENCY_PREFIX

PACKAGE = "aws_lambda_powertools.utilities.idempotency"


# Held while the bare package is set up: a second thread (the local server's pool, FC instance
# concurrency) would otherwise find it in sys.modules before BasePersistenceLayer is on it.
_setup_lock = threading.Lock()


def _powertools_idempotency() -> Any:
    with _setup_lock:
        package = sys.modules.get(PACKAGE)
        if package is None:
            spec = importlib.util.find_spec(PACKAGE)
            if spec is None:  # pragma: no cover - Powertools is a layer requirement
                raise ImportError(PACKAGE)
            package = importlib.util.module_from_spec(spec)
            sys.modules[PACKAGE] = package
            # Lets the submodules' `from ...idempotency import BasePersistenceLayer` resolve.
            from aws_lambda_powertools.utilities.idempotency.persistence.base import BasePersistenceLayer

            setattr(package, "BasePersistenceLayer", BasePersistenceLayer)  # noqa: B010 -- a bare module to mypy
        return package


def redis_persistence(client: Any) -> Any:
    """A Powertools ``RedisCachePersistenceLayer`` on an existing redis-py client, whose completed
    records keep their payload validation hash.

    Powertools 3.37's Redis layer rewrites the whole record on completion (``_update_record``:
    status, expiry, data) and drops the ``validation`` hash its in-progress write stored, so every
    identical repeat of a completed request fails validation (``IdempotencyValidationError``) -
    the bug fixed in the TypeScript port (aws-powertools/powertools-lambda-typescript#5705, PR
    #5706), still in the Python layer (persistence/redis.py ``_update_record``). The completion
    write here keeps it, and carries the writes a caller hangs on it (``completion_riders``) in
    the same round trip.
    """
    _powertools_idempotency()
    from aws_lambda_powertools.utilities.idempotency.persistence.redis import RedisCachePersistenceLayer

    with warnings.catch_warnings():
        # Deprecated in favour of CachePersistenceLayer, which in 3.x is an alias of this same class
        # (subclassing it warns too).
        warnings.simplefilter("ignore", DeprecationWarning)

        class Persistence(RedisCachePersistenceLayer):
            # Per thread: the layer is shared by the function instance's concurrent requests.
            riders = threading.local()

            @contextmanager
            def completion_riders(self, rider: Callable[[Any], None]) -> Iterator[None]:
                """``rider(pipeline)`` queues this thread's writes that travel in its completion
                write's round trip (one pipeline, not a transaction: each write stands alone)."""
                self.riders.current = rider
                try:
                    yield
                finally:
                    self.riders.current = None

            @contextmanager
            def in_progress_riders(
                self, rider: Callable[[Any], Callable[[list[Any]], None]]
            ) -> Iterator[None]:
                """``rider(pipeline)`` queues this thread's reads that travel in its in-progress
                write's round trip (the request's first store command) and returns the function
                that takes their replies: called only when that write took the key (the request
                runs now); a reply is an exception when its read failed (the caller reads again)."""
                self.riders.in_progress = rider
                try:
                    yield
                finally:
                    self.riders.in_progress = None

            def _update_record(self, data_record: Any) -> None:
                mapping = {
                    self.data_attr: data_record.response_data,
                    self.status_attr: data_record.status,
                    self.expiry_attr: data_record.expiry_timestamp,
                }
                if self.payload_validation_enabled:
                    mapping[self.validation_key_attr] = data_record.payload_hash
                ttl = self._get_expiry_second(data_record.expiry_timestamp)
                encoded = self._json_serializer(mapping)
                client: Any = self.client  # a redis-py client; Powertools' protocol names no pipeline
                pipeline = client.pipeline(transaction=False)
                pipeline.set(name=data_record.idempotency_key, value=encoded, ex=ttl)
                rider = getattr(self.riders, "current", None)
                if rider is not None:
                    rider(pipeline)
                pipeline.execute()

        return Persistence(client=_RidingClient(client, Persistence.riders))


class _RidingClient:
    """A redis-py client whose thread's next ``SET NX`` goes in one pipeline (not a transaction)
    with the reads that thread's in-progress rider queues (``riders.in_progress``, taken by that
    one write: Powertools' in-progress write is a request's first store command). Every other call
    goes to the client as is."""

    def __init__(self, client: Any, riders: threading.local) -> None:
        self._client = client
        self._riders = riders

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def set(self, *args: Any, **kwargs: Any) -> Any:
        rider = getattr(self._riders, "in_progress", None)
        if rider is None or not kwargs.get("nx"):
            return self._client.set(*args, **kwargs)
        self._riders.in_progress = None
        pipeline = self._client.pipeline(transaction=False)
        pipeline.set(*args, **kwargs)
        receive = rider(pipeline)
        # raise_on_error=False: a failed read must not fail the write (its caller reads again).
        taken, *replies = pipeline.execute(raise_on_error=False)
        if isinstance(taken, Exception):
            raise taken
        if taken:
            receive(replies)
        return taken


def errors() -> Any:
    """The Powertools idempotency exceptions module."""
    _powertools_idempotency()
    from aws_lambda_powertools.utilities.idempotency import exceptions

    return exceptions


def make_idempotent(
    function: Callable[..., dict[str, Any]],
    persistence: Any,
    context: Any,
    *,
    expires_after_seconds: int,
) -> Callable[..., dict[str, Any]]:
    """``function(payload=...)`` run at most once per payload "key" within ``expires_after_seconds``.

    A repeat returns the first call's result; a repeat whose payload "request" differs from the
    first one's raises ``IdempotencyValidationError`` (Powertools payload validation): one key,
    one request. A call that raises leaves nothing remembered (Powertools deletes its record). The in-progress lock lasts until the invocation's
    deadline (``context.get_remaining_time_in_millis``): a duplicate arriving while the first
    is still submitting is refused instead of submitting twice, and a lock left by an invocation FC
    killed at its timeout frees itself right then, so the redelivery can proceed.
    """
    _powertools_idempotency()
    from aws_lambda_powertools.utilities.idempotency.config import IdempotencyConfig
    from aws_lambda_powertools.utilities.idempotency.idempotency import idempotent_function

    config = IdempotencyConfig(
        event_key_jmespath="key",
        payload_validation_jmespath="request",
        raise_on_no_idempotency_key=True,
        expires_after_seconds=expires_after_seconds,
        lambda_context=context,
    )
    # key_prefix: every function shares one key space; the key itself names its source (the caller
    # builds it), and one accepted upgrade per instance holds across sources (the store's claims).
    return idempotent_function(
        function,
        data_keyword_argument="payload",
        persistence_store=persistence,
        config=config,
        key_prefix=IDEMPOTENCY_PREFIX,
    )
