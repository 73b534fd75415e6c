"""template.yml: the structure ROS / Fun expects, handlers that exist, and least-privilege roles —
one service (so one role) per function — whose actions together are exactly what the code calls.
That each statement is needed by its own function is shown on localcloud by test_template_ram.py."""

from __future__ import annotations

import ast
import inspect
import json
import re
from pathlib import Path
from typing import Any

import fc2
import mns.queue
import mns.topic
import pytest
import yaml
from dbupgrade.accounts import RESOURCE_MANAGER, STS
from dbupgrade.engines import ENGINES
from dbupgrade.triggers import parse_timer_event

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = yaml.safe_load((ROOT / "template.yml").read_text())
RESOURCES: dict[str, Any] = TEMPLATE["Resources"]
SERVICES = {name: body for name, body in RESOURCES.items() if body["Type"] == "Aliyun::Serverless::Service"}
# function name -> (its service, its body); each service holds one function, so it has its own role
SERVICE_OF = {
    function: service
    for service, body in SERVICES.items()
    for function in body
    if function not in ("Type", "Properties")
}
FUNCTIONS = {function: SERVICES[service][function] for function, service in SERVICE_OF.items()}
# The scheduler fans out to the rollout function, which keeps its FC 2.0 address dbupgrade/rollout.
ROLLOUT_FUNCTION = "dbupgrade/rollout"
LAYER = ROOT / "layers" / "dbupgrade" / "python" / "dbupgrade"
CODE_DIRS = [LAYER, ROOT / "functions"]
# The operator CLI ships in the same package but never runs in FC: it uses the operator's keys.
NOT_DEPLOYED = LAYER / "cli"

# RAM namespaces of the OpenAPI products (the engines name the product, RAM uses its own prefix).
RAM_NAMESPACE = {"r-kvstore": "kvstore", "dds": "dds"}
# The RAM action behind each MNS / FC SDK method the code may call.
SDK_METHOD_ACTIONS = {
    "publish_message": "mns:PublishMessage",
    "send_message": "mns:SendMessage",
    "batch_send_message": "mns:SendMessage",
    "receive_message": "mns:ReceiveMessage",
    "batch_receive_message": "mns:ReceiveMessage",
    "delete_message": "mns:DeleteMessage",
    "invoke_function": "fc:InvokeFunction",
}


def sdk_methods() -> set[str]:
    """The MNS topic/queue and FC client methods that call an API: a call to one needs a RAM action.

    One-word names (``delete``, ``create``) are left out: Redis and dicts have the same names, and
    the code never manages topics, queues or functions.
    """
    methods: set[str] = set()
    for cls in (mns.topic.Topic, mns.queue.Queue, fc2.Client):
        methods |= {name for name, _ in inspect.getmembers(cls, inspect.isfunction) if "_" in name.strip("_")}
    return methods - {"set_encoding", "set_topic_name", "set_queue_name", "debuginfo"}


def called_attributes() -> set[str]:
    names: set[str] = set()
    for directory in CODE_DIRS:
        for path in directory.rglob("*.py"):
            if NOT_DEPLOYED in path.parents:
                continue
            for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
                if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                    names.add(node.func.attr)
    return names


def actions_the_code_calls() -> set[str]:
    actions = set()
    for engine in ENGINES.values():
        namespace = RAM_NAMESPACE[engine.product]
        actions.update(f"{namespace}:{action}" for action in engine.actions())
    # A member account's calls go through its role (STS), --all-accounts lists the directory.
    actions |= {f"{STS.ram_service}:AssumeRole", f"{RESOURCE_MANAGER.ram_service}:ListAccounts"}
    calls = called_attributes() & sdk_methods()
    unmapped = calls - set(SDK_METHOD_ACTIONS)
    assert not unmapped, f"the code calls SDK methods with no RAM action mapped here: {sorted(unmapped)}"
    return actions | {SDK_METHOD_ACTIONS[name] for name in calls}


def actions_fc_needs_from_the_role(service: str) -> set[str]:
    """What FC itself does with a service's role: write its logs, send failed async events to the DLQ."""
    actions = set()
    if "LogConfig" in SERVICES[service]["Properties"]:
        actions.add("log:PostLogStoreLogs")
    for function, owner in SERVICE_OF.items():
        failure = (
            FUNCTIONS[function]["Properties"]
            .get("AsyncConfiguration", {})
            .get("Destination", {})
            .get("OnFailure", "")
        )
        if owner == service and "/queues/" in failure:
            actions.add("mns:SendMessage")
    return actions


def inline_statements(service: str) -> list[dict[str, Any]]:
    documents = [p for p in SERVICES[service]["Properties"]["Policies"] if isinstance(p, dict)]
    assert len(documents) == 1
    return documents[0]["Statement"]


def granted(service: str) -> set[str]:
    return {action for statement in inline_statements(service) for action in statement["Action"]}


def resource_texts(statement: dict[str, Any]) -> list[str]:
    resources = statement["Resource"]
    resources = resources if isinstance(resources, list) else [resources]
    return [r if isinstance(r, str) else r["Fn::Sub"] for r in resources]


def test_header_is_the_ros_fun_transform() -> None:
    assert TEMPLATE["ROSTemplateFormatVersion"] == "2015-09-01"
    assert TEMPLATE["Transform"] == "Aliyun::Serverless-2018-04-03"
    assert SERVICES


def test_every_function_has_a_service_of_its_own_with_events_beside_properties() -> None:
    assert set(FUNCTIONS) == {"scheduled", "webhook", "rollout", "tracker"}
    assert len(SERVICES) == len(FUNCTIONS)  # FC 2.0's role is the service's: one role per function
    assert SERVICE_OF["rollout"] + "/rollout" == ROLLOUT_FUNCTION
    assert (
        FUNCTIONS["scheduled"]["Properties"]["EnvironmentVariables"]["DBUPGRADE_ROLLOUT_FUNCTION"]
        == ROLLOUT_FUNCTION
    )
    for name, function in FUNCTIONS.items():
        assert function["Type"] == "Aliyun::Serverless::Function", name
        assert set(function) <= {"Type", "Properties", "Events"}, name
        assert "Events" in function and "Events" not in function["Properties"], name
        properties = function["Properties"]
        assert properties["Runtime"] == "python3.10"
        assert properties["Layers"] == [{"Ref": "DbupgradeLayerArn"}]
        assert 1 <= properties["Timeout"] <= 600
        assert properties["MemorySize"] % 64 == 0


def find_function(source: Path, name: str) -> ast.FunctionDef | None:
    """``def name`` at the top of ``source``, following ``from dbupgrade.x import name`` into the layer."""
    tree = ast.parse(source.read_text())
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name == name:
            return node
        if (
            isinstance(node, ast.ImportFrom)
            and node.module
            and any(alias.name == name for alias in node.names)
        ):
            module = ROOT / "layers" / "dbupgrade" / "python" / Path(*node.module.split("."))
            target = (
                module.with_suffix(".py") if module.with_suffix(".py").is_file() else module / "__init__.py"
            )
            return find_function(target, name) if target.is_file() else None
    return None


@pytest.mark.parametrize("name", ["scheduled", "webhook", "rollout", "tracker"])
def test_code_uri_and_handler_resolve_to_a_real_function(name: str) -> None:
    properties = FUNCTIONS[name]["Properties"]
    code_dir = (ROOT / properties["CodeUri"]).resolve()
    module_name, function_name = properties["Handler"].rsplit(".", 1)
    source = code_dir / f"{module_name}.py"
    assert source.is_file(), f"{name}: {source} is missing"
    handler = find_function(source, function_name)
    assert handler is not None, f"{name}: no def {function_name} reachable from {source}"
    assert len(handler.args.args) == 2, "FC calls handler(event, context) / handler(environ, start_response)"


def test_timer_fires_off_peak_in_shanghai_time_with_a_payload_the_function_accepts() -> None:
    [timer] = FUNCTIONS["scheduled"]["Events"].values()
    assert timer["Type"] == "Timer"
    cron = timer["Properties"]["CronExpression"]
    assert cron.startswith("CRON_TZ=Asia/Shanghai ")
    fields = cron.split(" ", 1)[1].split()
    assert len(fields) == 6  # seconds first
    assert 0 <= int(fields[2]) < 6  # an early-morning hour
    event = {
        "triggerName": "nightly",
        "triggerTime": "2026-11-23T18:30:00Z",
        "payload": timer["Properties"]["Payload"],
    }
    plan = parse_timer_event(json.dumps(event).encode())
    assert plan.select is not None


def test_http_trigger_is_anonymous_because_requests_are_signed() -> None:
    [http] = FUNCTIONS["webhook"]["Events"].values()
    assert http["Type"] == "HTTP"
    assert http["Properties"]["AuthType"] == "ANONYMOUS"
    assert sorted(http["Properties"]["Methods"]) == ["GET", "POST"]


def test_rollout_is_pushed_from_a_topic_this_template_creates() -> None:
    [trigger] = FUNCTIONS["rollout"]["Events"].values()
    assert trigger["Type"] == "MNSTopic"
    topics = {r["Properties"]["TopicName"] for r in RESOURCES.values() if r["Type"] == "ALIYUN::MNS::Topic"}
    assert trigger["Properties"]["TopicName"] in topics
    assert trigger["Properties"]["NotifyContentFormat"] == "JSON"
    env = FUNCTIONS["rollout"]["Properties"]["EnvironmentVariables"]
    assert {env["DBUPGRADE_TOPIC"], env["DBUPGRADE_ROLLOUT_QUEUE"]} <= topics


def test_async_failures_land_in_a_dead_letter_queue_this_template_creates() -> None:
    queues = {r["Properties"]["QueueName"] for r in RESOURCES.values() if r["Type"] == "ALIYUN::MNS::Queue"}
    for name in ("scheduled", "rollout"):
        destination = FUNCTIONS[name]["Properties"]["AsyncConfiguration"]["Destination"]["OnFailure"]
        match = re.fullmatch(r"acs:mns:::/queues/([\w-]+)/messages", destination)
        assert match and match.group(1) in queues


def test_environment_variables_are_ones_the_code_reads() -> None:
    sources = [p.read_text() for p in LAYER.rglob("*.py") if NOT_DEPLOYED not in p.parents]
    known = {name for text in sources for name in re.findall(r"DBUPGRADE_[A-Z_]+", text)}
    known.add("POWERTOOLS_SERVICE_NAME")
    for name, function in FUNCTIONS.items():
        unknown = set(function["Properties"]["EnvironmentVariables"]) - known
        assert not unknown, f"{name}: {sorted(unknown)}"


def test_the_roles_allow_together_exactly_what_the_code_calls_plus_what_fc_does_with_them() -> None:
    code = set().union(*(granted(service) - actions_fc_needs_from_the_role(service) for service in SERVICES))
    assert code == actions_the_code_calls()
    for service in SERVICES:
        assert actions_fc_needs_from_the_role(service) <= granted(service), service
        assert all(statement["Effect"] == "Allow" for statement in inline_statements(service))


def test_only_the_scheduler_fans_out_and_the_tracker_follows_backups_it_never_starts() -> None:
    fan_out, lists = {"fc:InvokeFunction"}, {"kvstore:DescribeInstances", "dds:DescribeDBInstances"}
    for function, service in SERVICE_OF.items():
        assert granted(service) & fan_out == (fan_out if function == "scheduled" else set()), function
        # Fleet selectors list; the tracker reads its in-flight instances in lists (dbupgrade.fleet).
        expected = lists if function in ("scheduled", "tracker") else set()
        assert granted(service) & lists == expected, function
    # The tracker upgrades only what waited for it: a backup-gated target once the backup its request
    # started finished (dbupgrade.gate), and a multi-hop chain's next hop (dbupgrade.hops). It reads
    # backups and never starts one, nor moves or cancels a booking.
    tracker = granted(SERVICE_OF["tracker"])
    follows_and_submits = {
        "kvstore:DescribeBackups",
        "dds:DescribeBackups",
        "kvstore:DescribeEngineVersion",
        "kvstore:ModifyInstanceMajorVersion",
        "dds:UpgradeDBInstanceEngineVersion",
    }
    assert follows_and_submits <= tracker
    never = {"kvstore:CreateBackup", "dds:CreateBackup"}
    never |= {
        f"{ns}:{verb}ActiveOperationTasks" for ns in ("kvstore", "dds") for verb in ("Modify", "Cancel")
    }
    assert not tracker & never


def test_writes_are_scoped_to_our_topics_function_queue_and_instances() -> None:
    env = FUNCTIONS["scheduled"]["Properties"]["EnvironmentVariables"]
    topics = {env["DBUPGRADE_TOPIC"], env["DBUPGRADE_ROLLOUT_QUEUE"]}
    for service in SERVICES:
        for statement in inline_statements(service):
            resources = resource_texts(statement)
            actions = set(statement["Action"])
            if "mns:PublishMessage" in actions:
                named = {r.rsplit("/topics/", 1)[1].removesuffix("/messages") for r in resources}
                assert named <= topics and len(named) == 1, statement["Sid"]
            if "mns:SendMessage" in actions:  # the MNS RAM table: SendMessage acts on /queues/<q>/messages
                assert [r.rsplit(":", 1)[1] for r in resources] == ["/queues/dbupgrade-rollout-dlq/messages"]
            if "fc:InvokeFunction" in actions:
                service_name, function = ROLLOUT_FUNCTION.split("/")
                assert resources == [
                    f"acs:fc:${{ALIYUN::Region}}:${{ALIYUN::AccountId}}:services/{service_name}/functions/{function}"
                ]
            if any(a.endswith(("MajorVersion", "EngineVersion")) and "Describe" not in a for a in actions):
                assert all(r != "*" for r in resources)


def test_secrets_are_parameters_that_never_echo() -> None:
    parameters = TEMPLATE["Parameters"]
    for name in ("StateRedisUrl", "WebhookSecret", "WebhookStatusToken"):
        assert parameters[name]["NoEcho"] is True
