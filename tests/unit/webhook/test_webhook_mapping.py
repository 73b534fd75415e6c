"""DBUPGRADE_WEBHOOK_MAPPING: a Jira payload in, request fields out; bad config and bad payloads named."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from dbupgrade.errors import ConfigError
from dbupgrade.model import InvalidRequest
from dbupgrade.request import parse_request
from dbupgrade.webhook.mapping import PayloadMapping

ROOT = Path(__file__).resolve().parents[3]
JIRA_MAPPING = {
    "instance_id": "issue.fields.customfield_10050",
    "target_version": "issue.fields.customfield_10051.value",
    "ticket_id": "issue.key",
}


def jira_event() -> dict:
    return json.loads((ROOT / "events" / "webhook-jira.json").read_text())


def test_the_sample_jira_event_maps_to_a_valid_request():
    fields = PayloadMapping(JIRA_MAPPING).apply(jira_event())
    request = parse_request(fields, source="webhook")
    assert (request.instance_id, request.target_version, request.ticket_id) == (
        "r-bp1demo0000000001",
        "7.0",
        "OPS-1234",
    )


def test_an_optional_field_the_payload_lacks_is_left_out():
    mapping = PayloadMapping({**JIRA_MAPPING, "region": "issue.fields.customfield_10052"})
    assert "region" not in mapping.apply(jira_event())


@pytest.mark.parametrize("field", ["instance_id", "target_version"])
def test_a_required_field_the_payload_lacks_is_named_with_its_expression(field):
    payload = jira_event()
    del payload["issue"]["fields"][JIRA_MAPPING[field].split(".")[2]]
    with pytest.raises(InvalidRequest) as raised:
        PayloadMapping(JIRA_MAPPING).apply(payload)
    assert raised.value.field == field
    assert JIRA_MAPPING[field] in str(raised.value)


def test_an_object_where_a_value_is_expected_is_named():
    mapping = PayloadMapping({**JIRA_MAPPING, "target_version": "issue.fields.customfield_10051"})
    with pytest.raises(InvalidRequest, match="found a dict") as raised:
        mapping.apply(jira_event())
    assert raised.value.field == "target_version"


@pytest.mark.parametrize(
    "text,message",
    [
        ("{not json", "not valid JSON"),
        ('["issue.key"]', "JSON object"),
        ('{"instance_id": "issue.[", "target_version": "v"}', "instance_id: invalid JMESPath"),
        ('{"instance_id": 5, "target_version": "v"}', "instance_id: the expression must be"),
        ('{"instance_id": "a", "target_version": "v", "colour": "c"}', "unknown field 'colour'"),
        ('{"instance_id": "a"}', "no expression for target_version"),
    ],
)
def test_a_bad_mapping_is_a_config_error_naming_the_variable(text, message):
    with pytest.raises(ConfigError, match=message) as raised:
        PayloadMapping.parse(text)
    assert raised.value.variable == "DBUPGRADE_WEBHOOK_MAPPING"


def test_an_unset_mapping_is_none():
    assert PayloadMapping.from_env({}) is None
    assert PayloadMapping.from_env({"DBUPGRADE_WEBHOOK_MAPPING": json.dumps(JIRA_MAPPING)}) is not None
