"""The read-only records on the functions' cold path (NamedTuples, not frozen dataclasses, for their
import cost: bench/NOTES.md) keep what callers rely on: immutability, value equality and hashing,
changed copies, no shared mutable defaults, and no secret in a repr."""

from __future__ import annotations

import dataclasses
import json

import pytest
from dbupgrade.backup import BackupSet, BackupState
from dbupgrade.cloudapi import CloudError, RetryPolicy
from dbupgrade.context import Credentials
from dbupgrade.engines import ENGINES
from dbupgrade.hops import Chain
from dbupgrade.model import Outcome, UpgradeRequest
from dbupgrade.ratelimit import PUBLISHED_QUOTAS, Quota, RateLimits
from dbupgrade.readiness import Finding, Readiness
from dbupgrade.store.base import Finished, Finishing
from dbupgrade.store.claims import Claim, ClaimChange
from dbupgrade.triggers.timer import Selector
from dbupgrade.usecase import _Job
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


# A claim as the frozen dataclass stored it (``json.dumps(asdict(claim), sort_keys=True)``): claims
# taken before the NamedTuple live in Redis for up to a day and a half and must read back the same.
STORED_CLAIM = (
    '{"account_id": null, "at": "2026-11-30T10:00:00Z", "effective": "immediate", '
    '"instance_id": "r-bp1x", "owner": "key-1", "request_id": null, "rollout_id": null, '
    '"source": "webhook", "state": "submitting", "ticket_id": "CHG-1", "to_version": "7.0"}'
)


def stored_claim() -> Claim:
    return Claim(
        "r-bp1x",
        "7.0",
        "key-1",
        source="webhook",
        ticket_id="CHG-1",
        effective="immediate",
        at="2026-11-30T10:00:00Z",
    )


def test_a_claim_is_stored_as_before_and_reads_back_equal() -> None:
    claim = stored_claim()
    assert claim.to_json() == STORED_CLAIM
    assert Claim.from_json(STORED_CLAIM) == claim
    assert Claim.from_json(STORED_CLAIM.encode()) == claim
    # A field a later version adds is ignored, not an error.
    assert Claim.from_json(STORED_CLAIM.replace("{", '{"future": 1, ', 1)) == claim


def test_a_claim_is_immutable_and_accepting_it_is_a_copy() -> None:
    claim = stored_claim()
    with pytest.raises(AttributeError):
        claim.state = "accepted"  # type: ignore[misc]
    accepted = claim.accepted("REQ-1")
    assert (accepted.state, accepted.request_id, accepted.owner) == ("accepted", "REQ-1", "key-1")
    assert (claim.state, claim.request_id) == ("submitting", None)
    assert len({claim, stored_claim(), accepted}) == 2
    assert claim.pointer() == {
        "to_version": "7.0",
        "source": "webhook",
        "ticket_id": "CHG-1",
        "rollout_id": None,
        "effective": "immediate",
        "at": "2026-11-30T10:00:00Z",
        "request_id": None,
        "state": "submitting",
        "account_id": None,
    }
    assert claim.identity == "r-bp1x"
    assert claim._replace(account_id="2000000000000002").identity == "2000000000000002:r-bp1x"


def test_the_store_records_are_immutable_values() -> None:
    outcome = Outcome(status="submitted", instance_id="r-bp1x", to_version="7.0", engine="redis")
    records = [
        (ClaimChange("release", "key-1"), ClaimChange("release", "key-1"), "key"),
        (Finished(True, "entry-1"), Finished(True, "entry-1"), "written"),
        (Finishing(outcome, {"a": 1}), Finishing(outcome, {"a": 1}), "message"),
        (BackupState(done=True, backup_id="b-1"), BackupState(True, None, "b-1"), "done"),
        (BackupSet("b-1", "Success", None), BackupSet("b-1", "Success", None), "status"),
        (RetryPolicy(max_attempts=3), RetryPolicy(0.2, 5.0, 3), "max_attempts"),
        (Quota(1000, 60), Quota(1000, 60), "calls"),
    ]
    for record, same, field in records:
        assert record == same
        with pytest.raises(AttributeError):
            setattr(record, field, None)
    assert ClaimChange("release", "key-1") != ClaimChange("release", "key-2")
    assert Finished(False).entry is None and ClaimChange("accept", "k").seconds == 0
    assert len({RetryPolicy(), RetryPolicy(), Quota(1000, 60), Quota(1000, 60)}) == 2
    assert Quota(1000, 60).per_second == pytest.approx(1000 / 60)


def test_rate_limits_default_to_the_published_quotas_and_share_no_mutable_state() -> None:
    limits = RateLimits()
    assert limits.quotas is PUBLISHED_QUOTAS
    with pytest.raises(TypeError):
        limits.per_action["DescribeInstances"] = 1.0  # type: ignore[index]
    assert RateLimits().per_action == {}
    assert RateLimits({"A": 2.0}, default=5.0) == RateLimits({"A": 2.0}, 5.0)
    assert RateLimits({"A": 2.0}).ceiling("A") == 2.0


def readiness(**changes: object) -> Readiness:
    findings = (
        Finding("backup", "warn", "DescribeBackups", "old"),
        Finding("state", "ok", "Describe", "fine"),
    )
    return Readiness("r-bp1x", "redis", "7.0", "6.0", findings)._replace(**changes)


def test_a_readiness_report_is_compared_by_its_findings_not_the_gate_view() -> None:
    report = readiness()
    denied = CloudError("Forbidden.RAM", "no")
    gated = readiness(fresh_backup_id="b-1", needs_backup=True, unread=(denied,))
    assert report == gated
    assert (report != gated) is False  # tuple's own != would compare the gate view too
    assert hash(report) == hash(gated) and len({report, gated}) == 1
    assert report != readiness(to_version="6.2")
    assert (report == readiness(to_version="6.2")) is False
    assert report != tuple(report)  # a report equals only a report
    shown = repr(gated)
    assert shown.startswith("Readiness(instance_id='r-bp1x'") and "needs_backup=True" in shown
    assert "Forbidden.RAM" not in shown and "unread" not in shown
    with pytest.raises(AttributeError):
        report.needs_backup = True  # type: ignore[misc]


def test_a_readiness_report_keeps_its_json_shape() -> None:
    assert json.loads(json.dumps(readiness().to_dict())) == {
        "verdict": "warn",
        "instance_id": "r-bp1x",
        "engine": "redis",
        "from_version": "6.0",
        "to_version": "7.0",
        "findings": [
            {"check": "backup", "grade": "warn", "source": "DescribeBackups", "message": "old"},
            {"check": "state", "grade": "ok", "source": "Describe", "message": "fine"},
        ],
    }


def test_a_chain_changes_in_place_and_round_trips_through_its_dict() -> None:
    chain = Chain("r-bp1x", "redis", "cn-hangzhou", "immediate", ["5.0", "6.0", "7.0"], "key-1", 1, "DUE")
    chain.state, chain.hop = "SUBMITTED", 2
    chain.request_ids["1"] = "REQ-1"
    stored = json.loads(json.dumps(chain.to_dict()))
    back = Chain.from_dict({**stored, "future": 1})
    assert back.to_dict() == chain.to_dict()
    assert (back.version, back.hops, back.target) == ("7.0", 2, "7.0")
    assert Chain("i", "redis", "r", "immediate", ["a", "b"], "o", 1, "DUE").request_ids == {}


def test_a_job_is_frozen_and_its_copies_share_the_request_s_reads() -> None:
    job = _Job(
        UpgradeRequest("r-bp1x", "7.0"),
        ENGINES["redis"],
        "cn-hangzhou",
        "immediate",
        None,
        None,
        "key-1",  # type: ignore[arg-type]
    )
    with pytest.raises(dataclasses.FrozenInstanceError):
        job.owner = "other"  # type: ignore[misc]
    copy = dataclasses.replace(job, claim_account="2000000000000002")
    assert copy.reads is job.reads and copy.tokens_due is job.tokens_due and copy.owner == "key-1"
    other = _Job(job.request, job.engine, job.region, job.effective, job.context, None, "key-2")
    assert other.reads is not job.reads and other.early is not job.early
