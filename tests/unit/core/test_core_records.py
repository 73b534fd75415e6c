"""The read-only records on the functions' cold path (NamedTuples, not frozen dataclasses, for their
import cost: bench/NOTES.md) keep what callers rely on: immutability, value equality and hashing,
changed copies, no shared mutable defaults, and no secret in a repr."""

from __future__ import annotations

import pytest
from dbupgrade.context import Credentials
from dbupgrade.engines import ENGINES
from dbupgrade.model import UpgradeRequest
from dbupgrade.triggers.timer import Selector
from dbupgrade.webhook.http import HttpRequest, HttpResponse


def test_a_request_is_immutable_and_compared_by_value() -> None:
    request = UpgradeRequest("r-bp1x", "7.0", source="webhook")
    with pytest.raises(AttributeError):
        request.target_version = "6.0"  # type: ignore[misc]
    assert request == UpgradeRequest("r-bp1x", "7.0", source="webhook")
    assert len({request, UpgradeRequest("r-bp1x", "7.0", source="webhook")}) == 1
    changed = request.with_(target_version="6.0")
    assert (changed.target_version, changed.source, request.target_version) == ("6.0", "webhook", "7.0")


def test_credentials_never_show_their_secret_or_token() -> None:
    credentials = Credentials(
        "AKID-visible", "s3cret-value", "sts-token-value", account_id="1000000000000002"
    )
    shown = repr(credentials)
    assert "AKID-visible" in shown and "1000000000000002" in shown
    assert "s3cret-value" not in shown and "sts-token-value" not in shown
    assert "s3cret-value" not in str(credentials)
    assert credentials == Credentials("AKID-visible", "s3cret-value", "sts-token-value", "1000000000000002")


def test_an_engine_cannot_be_changed() -> None:
    with pytest.raises(AttributeError):
        ENGINES["redis"].versions = ()  # type: ignore[misc]


def test_default_headers_and_tags_are_not_shared_mutable_state() -> None:
    for mapping in (HttpRequest("GET", "/").headers, HttpResponse(200).headers, Selector().tags):
        with pytest.raises(TypeError):
            mapping["x"] = "y"  # type: ignore[index]
    assert HttpRequest("GET", "/", {"a": "b"}).header("A") == "b"
