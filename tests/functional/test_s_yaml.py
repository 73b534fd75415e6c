"""s.yaml (Serverless Devs, fc3, python3.12) says the same things as template.yml: the same functions
and handlers, the same environment, the layer, a trigger and failure destination for each path, and
a role of its own for each function (template.yml's per-function service roles)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import yaml

from tests.functional.test_template_structure import handler_problem

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = yaml.safe_load((ROOT / "template.yml").read_text())
TEMPLATE_FUNCTIONS = {
    name: body
    for service in TEMPLATE["Resources"].values()
    if service["Type"] == "Aliyun::Serverless::Service"
    for name, body in service.items()
    if name not in ("Type", "Properties")
}
FROM_ENVIRONMENT = re.compile(r"^\$\{env\('[A-Z_]+'\)\}$")
FROM_VARS = re.compile(r"^\$\{vars\.(\w+)\}$")


def load(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text())


def template_value_matches(template_value: Any, s_value: str, variables: dict[str, Any]) -> bool:
    """A literal must be equal; a parameter must be its default (written out or as one of s's own
    ``vars``), or come from the environment when it has none (secrets); an Fn::Sub must name the same
    host with s's own variables."""
    if (named := FROM_VARS.match(s_value)) and named.group(1) in variables:
        s_value = str(variables[named.group(1)])
    if isinstance(template_value, str):
        return template_value == s_value
    if "Ref" in template_value:
        parameter = TEMPLATE["Parameters"][template_value["Ref"]]
        if "Default" in parameter:
            return str(parameter["Default"]) == s_value
        return bool(FROM_ENVIRONMENT.match(s_value))
    substituted = template_value["Fn::Sub"]
    pattern = re.escape(substituted).replace(r"\$\{ALIYUN::AccountId\}", r"\$\{config\('AccountID'\)\}")
    pattern = pattern.replace(r"\$\{ALIYUN::Region\}", r"\$\{vars\.region\}")
    return bool(re.fullmatch(pattern, s_value))


def s_yaml_problems(path: Path) -> list[str]:
    """What in the s.yaml at ``path`` disagrees with template.yml or would not deploy."""
    document = load(path)
    problems = []
    if str(document.get("edition")) != "3.0.0":
        problems.append("edition is not 3.0.0")
    resources = document.get("resources", {})
    expected = set(TEMPLATE_FUNCTIONS)
    if set(resources) != expected:
        problems.append(f"functions {sorted(resources)} != template.yml's {sorted(expected)}")
    for name, resource in resources.items():
        props = resource.get("props", {})
        if resource.get("component") != "fc3" or props.get("runtime") != "python3.12":
            problems.append(f"{name}: not an fc3 python3.12 function")
        code_dir = path.parent / props.get("code", "")
        if not code_dir.is_dir():
            problems.append(f"{name}: code {props.get('code')} is not a directory")
        elif problem := handler_problem(code_dir, props.get("handler", "")):
            problems.append(f"{name}: {problem}")
        if props.get("layers") != ["${vars.layer}"]:
            problems.append(f"{name}: does not use the dbupgrade layer")
        template_function = TEMPLATE_FUNCTIONS.get(name)
        if template_function is None:
            continue
        template_env = template_function["Properties"]["EnvironmentVariables"]
        env = props.get("environmentVariables", {})
        if set(env) != set(template_env):
            problems.append(f"{name}: environment {sorted(env)} != template.yml's {sorted(template_env)}")
        for key in set(env) & set(template_env):
            if not template_value_matches(template_env[key], str(env[key]), document.get("vars", {})):
                problems.append(f"{name}: {key}={env[key]!r} disagrees with template.yml")
    return problems


def props(name: str) -> dict[str, Any]:
    return load(ROOT / "s.yaml")["resources"][name]["props"]


def test_s_yaml_agrees_with_template_yml() -> None:
    assert s_yaml_problems(ROOT / "s.yaml") == []


def test_the_checker_reports_a_broken_handler_path_and_a_drifted_variable(tmp_path: Path) -> None:
    shutil.copytree(ROOT / "functions", tmp_path / "functions", ignore=shutil.ignore_patterns("__pycache__"))
    document = load(ROOT / "s.yaml")
    document["resources"]["rollout"]["props"]["handler"] = "handler.handler"
    document["resources"]["webhook"]["props"]["environmentVariables"]["DBUPGRADE_TOPIC"] = "other-topic"
    del document["resources"]["scheduled"]["props"]["environmentVariables"]["DBUPGRADE_ROLLOUT_QUEUE"]
    broken = tmp_path / "s.yaml"
    broken.write_text(yaml.safe_dump(document))

    problems = [p.replace(f"{tmp_path}/", "") for p in s_yaml_problems(broken)]

    assert "rollout: functions/rollout/handler.py is missing" in problems
    assert "webhook: DBUPGRADE_TOPIC='other-topic' disagrees with template.yml" in problems
    assert any(p.startswith("scheduled: environment") for p in problems)


def test_secrets_come_from_the_deployer_s_environment_not_the_file() -> None:
    for name in ("webhook", "rollout", "scheduled"):
        env = props(name)["environmentVariables"]
        for key in ("DBUPGRADE_REDIS_URL", "DBUPGRADE_WEBHOOK_SECRET"):
            if key in env:
                assert FROM_ENVIRONMENT.match(env[key]), f"{name}: {key}"


def test_each_path_has_its_trigger() -> None:
    [timer] = props("scheduled")["triggers"]
    assert timer["triggerType"] == "timer"
    assert timer["triggerConfig"]["cronExpression"].startswith("CRON_TZ=Asia/Shanghai ")
    assert '"fanout": "topic"' in timer["triggerConfig"]["payload"]  # FC 3.0 fans out through the topic
    [http] = props("webhook")["triggers"]
    assert http["triggerType"] == "http"
    assert http["triggerConfig"]["authType"] == "anonymous"  # the function checks each signature
    assert sorted(http["triggerConfig"]["methods"]) == ["GET", "POST"]
    [queue] = props("rollout")["triggers"]
    assert queue["triggerType"] == "eventbridge"
    source = queue["triggerConfig"]["eventSourceConfig"]
    assert source["eventSourceType"] == "MNS"
    assert source["eventSourceParameters"]["sourceMNSParameters"]["QueueName"]


def test_async_failures_go_to_the_dead_letter_queue_of_template_yml() -> None:
    queues = {
        r["Properties"]["QueueName"]
        for r in TEMPLATE["Resources"].values()
        if r["Type"] == "ALIYUN::MNS::Queue"
    }
    variables = load(ROOT / "s.yaml")["vars"]
    for name in ("scheduled", "rollout"):
        destination = props(name)["asyncInvokeConfig"]["destinationConfig"]["onFailure"]["destination"]
        assert destination == "${vars.deadLetters}"
    match = re.search(r":/queues/([\w-]+)/messages$", variables["deadLetters"])
    assert match and match.group(1) in queues


def test_each_function_has_a_role_of_its_own_from_the_deployers_environment() -> None:
    roles = {name: props(name)["role"] for name in TEMPLATE_FUNCTIONS}
    assert len(set(roles.values())) == len(roles)
    for name, role in roles.items():
        assert role == f"${{env('DBUPGRADE_{name.upper()}_ROLE_ARN')}}", name
