"""Requests handled at the same time in one instance (the local server's thread pool, FC instance
concurrency) each keep their own ids on their log lines; found by the concurrent fault runs, whose
lines named whichever instance a neighbouring thread had bound last."""

from __future__ import annotations

import io
import json
import threading

import pytest
from dbupgrade.context import adapt_context
from dbupgrade.logging import bind_invocation, bind_request, logger


def test_each_thread_logs_with_its_own_instance_id(monkeypatch: pytest.MonkeyPatch) -> None:
    lines = io.StringIO()
    monkeypatch.setattr(logger.registered_handler, "stream", lines)
    everyone_bound = threading.Barrier(8)

    def handle(instance_id: str) -> None:
        bind_request(instance_id, f"CHG-{instance_id}")
        everyone_bound.wait()  # every thread has bound its ids before any logs
        logger.info("outcome")

    threads = [threading.Thread(target=handle, args=(f"r-bp1thread0000{n}",)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    logged = [json.loads(line) for line in lines.getvalue().splitlines()]
    assert len(logged) == 8
    assert all(line["ticket_id"] == f"CHG-{line['instance_id']}" for line in logged)
    assert len({line["instance_id"] for line in logged}) == 8


def test_a_new_invocation_forgets_the_last_ones_instance(monkeypatch: pytest.MonkeyPatch) -> None:
    # A warm instance runs one invocation after another on the same thread: the tracker's rollout
    # lines must not name the instance the previous upgrade request had bound.
    lines = io.StringIO()
    monkeypatch.setattr(logger.registered_handler, "stream", lines)
    bind_invocation(adapt_context(None))
    bind_request("r-bp1previous0001", "CHG-1")
    logger.info("outcome")
    bind_invocation(adapt_context(None))
    logger.info("wave released")

    first, second = (json.loads(line) for line in lines.getvalue().splitlines())
    assert (first["instance_id"], first["ticket_id"]) == ("r-bp1previous0001", "CHG-1")
    assert "instance_id" not in second and "ticket_id" not in second
    assert second["fc_request_id"] != first["fc_request_id"]
