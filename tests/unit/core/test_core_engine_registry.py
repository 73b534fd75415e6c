"""The engine registry (engines.ENGINES) is the one list of engines: every surface reads it."""

from __future__ import annotations

import pytest
from click.testing import CliRunner
from dbupgrade.cli.commands import cli
from dbupgrade.config import Config
from dbupgrade.engines import ENGINES
from dbupgrade.tracker import TrackerSettings
from dbupgrade.webhook.openapi import openapi_document


def test_the_webhook_schema_offers_exactly_the_registered_engines() -> None:
    schema = openapi_document()["components"]["schemas"]["UpgradeRequest"]
    assert schema["properties"]["engine"]["enum"] == sorted(ENGINES)


def test_the_cli_refuses_an_engine_outside_the_registry_and_lists_the_registered_ones() -> None:
    result = CliRunner().invoke(cli, ["rollout", "plan", "--engine", "memcache", "--target", "1.6"])
    assert result.exit_code == 2
    for name in ENGINES:
        assert repr(name) in result.output


@pytest.mark.parametrize("name", sorted(ENGINES))
def test_each_engine_brings_its_own_endpoint_variable_and_stuck_default(name: str) -> None:
    engine = ENGINES[name]
    config = Config.from_env({engine.endpoint_variable: "http://127.0.0.1:9"})
    assert config.endpoint_override(engine.endpoint_variable) is not None
    assert TrackerSettings.from_env({}).stuck_after[name] == engine.stuck_after_seconds
