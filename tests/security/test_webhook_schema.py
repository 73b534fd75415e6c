"""schemathesis against the webhook's own /openapi.json, served in-process over WSGI (the FC 2.0
entry) with a real localcloud and Redis behind it: no 5xx, and every reply — status, headers,
content type and body — is one the document promises."""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from dbupgrade.webhook.app import WebhookApp
from hypothesis import HealthCheck, given, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

from tests.reliability.faultrun import FAST_RETRY, World

STATUS_TOKEN = "status-token-schema-tests-0b7e"


@pytest.fixture
def webhook_schema(world: World) -> Any:
    env = {**world.env, "DBUPGRADE_WEBHOOK_AUTH": "none", "DBUPGRADE_WEBHOOK_STATUS_TOKEN": STATUS_TOKEN}
    app = WebhookApp(env, upgrader_options={"retry": FAST_RETRY})
    return schemathesis.openapi.from_wsgi("/openapi.json", app)


def test_every_reply_conforms_to_the_openapi_document(webhook_schema: Any) -> None:
    # positive_data_acceptance is left out: JSON Schema cannot say which versions each engine
    # offers, so a schema-valid {"instance_id": "r-...", "target_version": "4.2"} is rightly a 422.
    # The operations one by one through schemathesis' own strategies (its pytest plugin does not
    # load under this pytest); each draws positive and negative cases.
    operations = [result.ok() for result in webhook_schema.get_all_operations()]
    assert {f"{o.method.upper()} {o.path}" for o in operations} >= {
        "POST /upgrades",
        "GET /upgrades/{instance_id}",
    }
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
        def conforms(case: Any) -> None:
            case.call_and_validate(
                headers={"authorization": f"Bearer {STATUS_TOKEN}"},
                excluded_checks=[positive_data_acceptance],
            )

        conforms()
