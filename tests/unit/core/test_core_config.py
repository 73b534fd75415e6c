"""Configuration: the window arithmetic, and every bad value fails naming its variable."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
from dbupgrade.config import Config, Endpoint, Window
from dbupgrade.engines import ENGINES
from dbupgrade.errors import ConfigError


def at_utc(hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 11, 23, hour, minute, tzinfo=timezone.utc)


def test_a_window_in_another_zone() -> None:
    window = Window.parse("02:00-05:00 Asia/Shanghai")  # 18:00-21:00 UTC
    assert window.contains(at_utc(18))
    assert window.contains(at_utc(20, 59))
    assert not window.contains(at_utc(21))
    assert not window.contains(at_utc(2))


def test_a_window_that_wraps_midnight() -> None:
    window = Window.parse("22:00-02:00 UTC")
    assert window.contains(at_utc(23))
    assert window.contains(at_utc(1, 30))
    assert not window.contains(at_utc(2))
    assert not window.contains(at_utc(12))


def test_defaults_when_nothing_is_set() -> None:
    config = Config.from_env({})
    assert config.window is None and config.window_policy == "reject"
    assert config.idempotency is True and config.in_fc is False
    assert config.endpoints == {}


def test_localcloud_endpoint_overrides_switch_to_http() -> None:
    config = Config.from_env(
        {
            "DBUPGRADE_KVSTORE_ENDPOINT": "http://127.0.0.1:9000",
            "DBUPGRADE_DDS_ENDPOINT": "http://127.0.0.1:9000",
        }
    )
    for engine in ENGINES.values():  # every engine's override is read, by its own variable
        override = config.endpoint_override(engine.endpoint_variable)
        assert override is not None and override.url == "http://127.0.0.1:9000"
    bare = Config.from_env({"DBUPGRADE_KVSTORE_ENDPOINT": "r-kvstore.aliyuncs.com"})
    assert bare.endpoint_override("DBUPGRADE_KVSTORE_ENDPOINT") == Endpoint("r-kvstore.aliyuncs.com", "https")
    assert bare.endpoint_override("DBUPGRADE_DDS_ENDPOINT") is None


def test_lists_and_fc_detection() -> None:
    config = Config.from_env(
        {
            "DBUPGRADE_ALLOWED_INSTANCES": "r-bp1a, r-bp1b,",
            "FC_FUNCTION_NAME": "webhook",
            "DBUPGRADE_IDEMPOTENCY": "off",
        }
    )
    assert config.allowed_instances == frozenset({"r-bp1a", "r-bp1b"})
    assert config.in_fc and not config.idempotency


def test_secrets_are_not_in_the_repr() -> None:
    config = Config.from_env(
        {"ALIBABA_CLOUD_ACCESS_KEY_ID": "LTAIexample", "ALIBABA_CLOUD_ACCESS_KEY_SECRET": "s3cr3t-value"}
    )
    assert "s3cr3t-value" not in repr(config)
    assert "s3cr3t-value" in config.secrets()


def test_the_store_password_in_the_redis_url_is_a_secret() -> None:
    config = Config.from_env(
        {"DBUPGRADE_REDIS_URL": "redis://:st0re-pa55word@r-bp1x.redis.rds.aliyuncs.com:6379/0"}
    )
    assert "st0re-pa55word" not in repr(config)
    assert "st0re-pa55word" in config.secrets()


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("DBUPGRADE_REGION", "Hangzhou"),
        ("DBUPGRADE_KVSTORE_ENDPOINT", "ftp://host"),
        ("DBUPGRADE_DDS_ENDPOINT", "http://127.0.0.1:99999"),
        ("DBUPGRADE_DDS_ENDPOINT", "https://host/path"),
        ("DBUPGRADE_MNS_ENDPOINT", "1234.mns.cn-hangzhou.aliyuncs.com"),
        ("DBUPGRADE_FC_ENDPOINT", "fc.example"),
        ("DBUPGRADE_REDIS_URL", "http://cache:6379"),
        ("DBUPGRADE_ALLOWED_REGIONS", "cn-hangzhou,Mars"),
        ("DBUPGRADE_WINDOW", "2am-5am"),
        ("DBUPGRADE_WINDOW", "25:00-05:00 UTC"),
        ("DBUPGRADE_WINDOW", "02:00-05:00 Mars/Olympus"),
        ("DBUPGRADE_WINDOW", "02:00-02:00 UTC"),
        ("DBUPGRADE_WINDOW_POLICY", "sometimes"),
        ("DBUPGRADE_IDEMPOTENCY", "false"),
        ("ALIBABA_CLOUD_ACCESS_KEY_ID", "LTAIonly"),
    ],
)
def test_a_bad_value_names_its_variable(variable: str, value: str) -> None:
    with pytest.raises(ConfigError) as caught:
        Config.from_env({variable: value})
    expected = "ALIBABA_CLOUD_ACCESS_KEY_SECRET" if variable == "ALIBABA_CLOUD_ACCESS_KEY_ID" else variable
    assert caught.value.variable == expected
    assert str(caught.value).startswith(expected)


def test_fc_without_a_store_refuses_unless_idempotency_is_off(tmp_path: object) -> None:
    from dbupgrade.store import MemoryStore, open_store

    with pytest.raises(ConfigError) as caught:
        open_store(Config.from_env({"FC_FUNCTION_NAME": "webhook"}))
    assert caught.value.variable == "DBUPGRADE_REDIS_URL"
    assert isinstance(
        open_store(Config.from_env({"FC_FUNCTION_NAME": "w", "DBUPGRADE_IDEMPOTENCY": "off"})), MemoryStore
    )
