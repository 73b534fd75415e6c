"""Map a foreign payload (a Jira issue webhook, a ServiceNow change) to upgrade request fields.

``DBUPGRADE_WEBHOOK_MAPPING`` is a JSON object from request field to JMESPath expression, compiled
once per instance::

    {"instance_id": "issue.fields.customfield_10050",
     "target_version": "issue.fields.customfield_10051.value",
     "ticket_id": "issue.key"}

When it is set, every POST body is one foreign payload and is mapped; fields without an expression
are not read from the payload.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import jmespath
from jmespath.exceptions import JMESPathError
from jmespath.parser import ParsedResult

from dbupgrade.errors import ConfigError
from dbupgrade.model import InvalidRequest

MAPPING_VARIABLE = "DBUPGRADE_WEBHOOK_MAPPING"
MAPPABLE_FIELDS = ("instance_id", "target_version", "engine", "region", "effective", "ticket_id", "dry_run")
REQUIRED_FIELDS = ("instance_id", "target_version")


class PayloadMapping:
    """Compiled JMESPath expressions, one per request field.

    >>> mapping = PayloadMapping.parse('{"instance_id": "issue.db", "target_version": "issue.v"}')
    >>> mapping.apply({"issue": {"db": "r-bp1abc", "v": "7.0"}})
    {'instance_id': 'r-bp1abc', 'target_version': '7.0'}
    """

    def __init__(self, expressions: Mapping[str, str]) -> None:
        self._sources = dict(expressions)
        self._compiled: dict[str, ParsedResult] = {}
        for field, expression in expressions.items():
            if field not in MAPPABLE_FIELDS:
                raise ConfigError(
                    MAPPING_VARIABLE, f"unknown field {field!r}; mappable: {', '.join(MAPPABLE_FIELDS)}"
                )
            if not isinstance(expression, str) or not expression.strip():
                raise ConfigError(MAPPING_VARIABLE, f"{field}: the expression must be a non-empty string")
            try:
                self._compiled[field] = jmespath.compile(expression)
            except JMESPathError as error:
                raise ConfigError(
                    MAPPING_VARIABLE, f"{field}: invalid JMESPath {expression!r}: {error}"
                ) from None
        missing = [field for field in REQUIRED_FIELDS if field not in self._compiled]
        if missing:
            raise ConfigError(MAPPING_VARIABLE, f"no expression for {', '.join(missing)}")

    @classmethod
    def parse(cls, text: str) -> PayloadMapping:
        try:
            expressions = json.loads(text)
        except ValueError:
            raise ConfigError(MAPPING_VARIABLE, "is not valid JSON") from None
        if not isinstance(expressions, dict):
            raise ConfigError(MAPPING_VARIABLE, "must be a JSON object of field -> JMESPath expression")
        return cls(expressions)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> PayloadMapping | None:
        text = env.get(MAPPING_VARIABLE, "").strip()
        return cls.parse(text) if text else None

    def apply(self, payload: Mapping[str, Any]) -> dict[str, Any]:
        """The request fields found in ``payload``; raises ``InvalidRequest`` naming a field it can't fill."""
        fields: dict[str, Any] = {}
        for field, expression in self._compiled.items():
            try:
                value = expression.search(payload)
            except JMESPathError as error:
                # A function meeting the wrong type (length() of a number, to_number() of an
                # object...): this payload cannot fill the field, so the request is rejected
                # naming it; JMESPath's own message names the function and the types involved.
                raise InvalidRequest(
                    field, f"the mapping {self._sources[field]!r} failed on this payload: {str(error)[:200]}"
                ) from None
            if value is None:
                if field in REQUIRED_FIELDS:
                    raise InvalidRequest(
                        field, f"the mapping {self._sources[field]!r} found nothing in the payload"
                    )
                continue
            if isinstance(value, (dict, list)):
                raise InvalidRequest(
                    field,
                    f"the mapping {self._sources[field]!r} found a {type(value).__name__}, not one value",
                )
            fields[field] = value
        return fields
