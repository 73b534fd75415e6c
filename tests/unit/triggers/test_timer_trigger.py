"""Timer trigger parsing: the event FC sends, the payload an operator configures."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import pytest
from dbupgrade.model import InvalidRequest
from dbupgrade.triggers import Selector, parse_timer_event
from hypothesis import given, settings
from hypothesis import strategies as st

EVENTS = Path(__file__).resolve().parents[3] / "events"


def timer_event(payload: object, name: str = "nightly", time: str = "2026-11-23T18:00:00Z") -> bytes:
    text = payload if isinstance(payload, str) else json.dumps(payload)
    return json.dumps({"triggerTime": time, "triggerName": name, "payload": text}).encode()


def test_sample_timer_event_lists_explicit_upgrades() -> None:
    plan = parse_timer_event((EVENTS / "timer.json").read_bytes())

    assert plan.trigger_name == "nightly-offpeak"
    assert plan.rollout_id == "nightly-2026-11-23"
    assert [u["instance_id"] for u in plan.upgrades] == [
        "r-bp1demo0000000002",
        "dds-bp1demo000000001",
        "r-bp1demo0000000003",
    ]
    assert plan.defaults() == {"rollout_id": "nightly-2026-11-23", "effective": "immediate"}


def test_sample_selector_event_targets_per_engine() -> None:
    plan = parse_timer_event((EVENTS / "timer-select.json").read_bytes())

    assert plan.select == Selector(
        engine="redis", tags={"env": "staging"}, regions=("cn-hangzhou",), from_versions=("6.0",)
    )
    assert plan.target_for("redis") == "7.0"
    assert plan.target_for("mongodb") == "7.0"
    assert plan.effective == "maintenance_window"


def test_rollout_id_defaults_to_the_firing_so_a_retried_invocation_reuses_it() -> None:
    payload = {"upgrades": [{"instance_id": "r-bp1x", "target_version": "7.0"}]}
    first = parse_timer_event(timer_event(payload, time="2026-11-23T18:00:00Z"))
    retry = parse_timer_event(timer_event(payload, time="2026-11-23T18:00:00Z"))
    next_night = parse_timer_event(timer_event(payload, time="2026-11-24T18:00:00Z"))

    assert first.rollout_id == retry.rollout_id == "nightly-2026-11-23T18-00-00Z"
    assert next_night.rollout_id != first.rollout_id


def test_single_target_version_applies_to_every_engine() -> None:
    plan = parse_timer_event(timer_event({"select": {"engine": "mongodb"}, "target_version": "7.0"}))

    assert plan.target_for("mongodb") == "7.0"
    assert plan.target_for(None) == "7.0"


def test_a_bare_payload_invoked_by_hand_is_accepted() -> None:
    plan = parse_timer_event(b'{"upgrades": [{"instance_id": "r-bp1x", "target_version": "7.0"}]}')

    assert plan.trigger_name == "manual"
    assert plan.upgrades[0]["instance_id"] == "r-bp1x"


def test_payload_may_already_be_an_object() -> None:
    event = {"triggerName": "t", "payload": {"select": {}, "target_version": "7.0"}}
    assert parse_timer_event(json.dumps(event)).select == Selector()


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ("", "payload"),
        ("not json", "payload"),
        ("[1, 2]", "payload"),
        ({}, "payload"),
        ({"upgrades": []}, "payload"),
        ({"upgrades": "r-bp1x"}, "payload.upgrades"),
        ({"upgrades": [1]}, "payload.upgrades[0]"),
        ({"select": {"engine": "redis"}}, "payload.target_version"),
        ({"select": {"tag": {"env": "prod"}}, "target_version": "7.0"}, "payload.select.tag"),
        ({"select": {"tags": {"env": 1}}, "target_version": "7.0"}, "payload.select.tags"),
        ({"select": {"regions": [1]}, "target_version": "7.0"}, "payload.select.regions"),
        ({"select": {"accounts": ["prod"]}, "target_version": "7.0"}, "payload.select.accounts"),
        ({"select": {"all_accounts": "yes"}, "target_version": "7.0"}, "payload.select.all_accounts"),
        (
            {"select": {"accounts": ["2"], "all_accounts": True}, "target_version": "7.0"},
            "payload.select.accounts",
        ),
        ({"select": {}, "target_version": {"redis": 7}}, "payload.target_version"),
        ({"select": {}, "target_version": "7.0", "inline_limit": True}, "payload.inline_limit"),
        ({"select": {}, "target_version": "7.0", "inline_limit": 1000}, "payload.inline_limit"),
        ({"select": {}, "target_version": "7.0", "fanout": "sqs"}, "payload.fanout"),
        ({"select": {}, "target_version": "7.0", "window": "2am-5am"}, "payload.window"),
        ({"select": {}, "target_version": "7.0", "window": "02:00-05:00 Mars/Olympus"}, "payload.window"),
        ({"select": {}, "target_version": "7.0", "targetVersion": "7.0"}, "payload.targetVersion"),
    ],
)
def test_bad_payload_names_the_field(payload: object, field: str) -> None:
    with pytest.raises(InvalidRequest) as raised:
        parse_timer_event(timer_event(payload))

    assert raised.value.field == field


def test_unknown_fanout_lists_the_allowed_modes() -> None:
    with pytest.raises(InvalidRequest) as raised:
        parse_timer_event(timer_event({"select": {}, "target_version": "7.0", "fanout": "sqs"}))

    assert raised.value.allowed == ["function", "topic"]


def test_non_utf8_event_is_an_invalid_request() -> None:
    with pytest.raises(InvalidRequest) as raised:
        parse_timer_event(b"\xff\xfe{")

    assert raised.value.field == "event"


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=20,
)
payload_like = st.fixed_dictionaries(
    {},
    optional={
        "upgrades": json_values,
        "select": json_values,
        "target_version": json_values,
        "inline_limit": json_values,
        "fanout": json_values,
        "effective": json_values,
    },
)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_random_bytes_only_ever_raise_invalid_request(event: bytes) -> None:
    with contextlib.suppress(InvalidRequest):
        parse_timer_event(event)


@settings(max_examples=300, deadline=None)
@given(payload_like | json_values, st.booleans())
def test_random_json_payloads_only_ever_raise_invalid_request(payload: object, as_string: bool) -> None:
    event = {"triggerName": "fuzz", "payload": json.dumps(payload) if as_string else payload}
    try:
        plan = parse_timer_event(json.dumps(event).encode())
    except InvalidRequest:
        return
    assert plan.upgrades or plan.select is not None


def test_the_organisation_example_selects_every_account_in_every_served_region() -> None:
    plan = parse_timer_event((EVENTS / "timer-select-accounts.json").read_bytes())

    assert plan.select is not None
    assert plan.select.all_accounts and plan.select.accounts == () and plan.select.regions == ()


def test_a_selector_may_name_member_accounts() -> None:
    plan = parse_timer_event(
        json.dumps({"select": {"accounts": ["2000000000000002"]}, "target_version": "7.0"})
    )

    assert plan.select is not None and plan.select.accounts == ("2000000000000002",)
