"""parse_request: every bad field raises InvalidRequest naming it; good input is normalised."""

from __future__ import annotations

from typing import Any

import pytest
from dbupgrade.model import InvalidRequest
from dbupgrade.request import parse_request

GOOD_REDIS = {"instance_id": "r-bp1demo0000000001", "target_version": "7.0"}
GOOD_MONGO = {"instance_id": "dds-bp1demo000000001", "target_version": "5.0"}


def bad(data: dict[str, Any], **kwargs: Any) -> InvalidRequest:
    with pytest.raises(InvalidRequest) as caught:
        parse_request(data, source=kwargs.pop("source", "webhook"), **kwargs)
    return caught.value


def test_engine_is_inferred_from_the_id_prefix() -> None:
    assert parse_request(GOOD_REDIS, source="cli").engine == "redis"
    assert parse_request(GOOD_MONGO, source="cli").engine == "mongodb"


def test_numbers_as_versions_and_ticket_numbers_are_accepted() -> None:
    request = parse_request({**GOOD_REDIS, "target_version": 7, "ticket_id": 4711}, source="webhook")
    assert (request.target_version, request.ticket_id) == ("7.0", "4711")


def test_ids_and_defaults_are_carried() -> None:
    request = parse_request(
        GOOD_REDIS,
        source="queue",
        correlation_id="c-1",
        delivery_id="m-1",
        defaults={"effective": "maintenance_window", "region": "cn-shanghai"},
    )
    assert (request.source, request.correlation_id, request.delivery_id) == ("queue", "c-1", "m-1")
    assert (request.effective, request.region) == ("maintenance_window", "cn-shanghai")


def test_the_request_wins_over_defaults() -> None:
    request = parse_request(
        {**GOOD_REDIS, "effective": "immediate"}, source="timer", defaults={"effective": "maintenance_window"}
    )
    assert request.effective == "immediate"


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"target_version": "7.0"}, "instance_id"),
        ({"instance_id": 12, "target_version": "7.0"}, "instance_id"),
        ({"instance_id": "", "target_version": "7.0"}, "instance_id"),
        ({"instance_id": "x-bp1abcdef", "target_version": "7.0"}, "instance_id"),
        ({"instance_id": "r-BAD!", "target_version": "7.0"}, "instance_id"),
        ({"instance_id": "dds-x", "target_version": "5.0"}, "instance_id"),
        ({**GOOD_REDIS, "engine": "postgres"}, "engine"),
        ({**GOOD_REDIS, "engine": "mongodb"}, "engine"),
        ({"instance_id": "r-bp1demo0000000001"}, "target_version"),
        ({**GOOD_REDIS, "target_version": "4.2"}, "target_version"),
        ({**GOOD_MONGO, "target_version": "7.2"}, "target_version"),
        ({**GOOD_REDIS, "target_version": ["7.0"]}, "target_version"),
        ({**GOOD_REDIS, "region": "Hangzhou"}, "region"),
        ({**GOOD_REDIS, "region": 3}, "region"),
        ({**GOOD_REDIS, "effective": "now"}, "effective"),
        ({**GOOD_REDIS, "ticket_id": {"id": 1}}, "ticket_id"),
        ({**GOOD_REDIS, "ticket_id": "x" * 129}, "ticket_id"),
        ({**GOOD_REDIS, "ticket_id": "line\nbreak"}, "ticket_id"),
        ({**GOOD_REDIS, "dry_run": "yes"}, "dry_run"),
        ({**GOOD_REDIS, "dry_run": 1}, "dry_run"),
        ({**GOOD_REDIS, "instance": "r-bp1demo0000000002"}, "instance"),
    ],
)
def test_each_bad_field_is_named(data: dict[str, Any], field: str) -> None:
    assert bad(data).field == field


def test_unknown_fields_are_all_named_with_the_allowed_ones() -> None:
    error = bad({**GOOD_REDIS, "zeta": 1, "alpha": 2})
    assert error.field == "alpha"
    assert "alpha, zeta" in str(error)
    assert error.allowed is not None and "target_version" in error.allowed


def test_a_bad_version_lists_the_engines_versions() -> None:
    assert bad({**GOOD_MONGO, "target_version": "9.0"}).allowed == [
        "4.0",
        "4.2",
        "4.4",
        "5.0",
        "6.0",
        "7.0",
        "8.0",
    ]


def test_effective_lists_the_allowed_values() -> None:
    assert bad({**GOOD_REDIS, "effective": "later"}).allowed == ["immediate", "maintenance_window"]


def test_an_unknown_source_is_refused() -> None:
    assert bad(GOOD_REDIS, source="email").field == "source"
