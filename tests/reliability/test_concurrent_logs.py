"""Requests handled at the same time in one instance (the local server's thread pool, FC instance
concurrency) each keep their own ids on their log lines; found by the concurrent fault runs, whose
lines named whichever instance a neighbouring thread had bound last."""

from __future__ import annotations

import io
import json
import threading

import pytest
from dbupgrade.logging import bind_request, logger


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
