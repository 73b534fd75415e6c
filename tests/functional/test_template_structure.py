"""template.yml against the Aliyun::Serverless-2018-04-03 structure (Fun's schema, ROS's transform):
functions nested in the service, Events beside Properties, trigger property names and enums, and every
CodeUri/Handler resolving to a real file and function. The checker must catch a broken copy too."""

from __future__ import annotations

import ast
import shutil
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
LAYER = ROOT / "layers" / "dbupgrade" / "python"

FUNCTION_KEYS = {"Type", "Properties", "Events"}
FUNCTION_PROPERTIES = {
    "Handler", "Runtime", "CodeUri", "Initializer", "InitializationTimeout", "Description", "MemorySize",
    "Timeout", "EnvironmentVariables", "InstanceConcurrency", "InstanceType", "InstanceLifecycleConfig",
    "Layers", "AsyncConfiguration", "CustomContainerConfig", "CAPort",
}  # fmt: skip
REQUIRED_FUNCTION_PROPERTIES = {"Handler", "Runtime", "CodeUri"}
# Trigger type -> (allowed properties, required properties, enums)
TRIGGERS: dict[str, tuple[set[str], set[str], dict[str, set[str]]]] = {
    "Timer": ({"CronExpression", "Enable", "Payload"}, {"CronExpression"}, {}),
    "HTTP": (
        {"AuthType", "Methods", "InvocationRole", "Qualifier"},
        {"AuthType", "Methods"},
        {"AuthType": {"ANONYMOUS", "FUNCTION"}, "Methods": {"GET", "POST", "PUT", "DELETE", "HEAD", "PATCH"}},
    ),
    "MNSTopic": (
        {
            "TopicName",
            "Region",
            "NotifyContentFormat",
            "NotifyStrategy",
            "FilterTag",
            "InvocationRole",
            "Qualifier",
        },
        {"TopicName"},
        {
            "NotifyContentFormat": {"STREAM", "JSON"},
            "NotifyStrategy": {"BACKOFF_RETRY", "EXPONENTIAL_DECAY_RETRY"},
        },
    ),
}
MNS_FILTER_TAG_MAX = 16


def handler_problem(code_dir: Path, handler: str) -> str | None:
    """Why ``handler`` (``module.function``) does not resolve in ``code_dir`` + the layer, or None."""
    module_name, _, function_name = handler.rpartition(".")
    if not module_name:
        return f"Handler {handler!r} is not module.function"
    source = code_dir / (module_name.replace(".", "/") + ".py")
    for _ in range(5):  # follow re-exports (`from dbupgrade.x import handler`) into the layer
        if not source.is_file():
            return f"{source.relative_to(ROOT) if source.is_relative_to(ROOT) else source} is missing"
        tree = ast.parse(source.read_text())
        if any(isinstance(n, ast.FunctionDef) and n.name == function_name for n in tree.body):
            return None
        origins = [
            n.module
            for n in tree.body
            if isinstance(n, ast.ImportFrom) and n.module and any(a.name == function_name for a in n.names)
        ]
        if not origins:
            return f"no def {function_name} in {source.name}"
        package = LAYER / Path(*origins[0].split("."))
        source = (
            package.with_suffix(".py") if package.with_suffix(".py").is_file() else package / "__init__.py"
        )
    return f"{handler}: too many re-exports"


def trigger_problems(where: str, event: dict[str, Any]) -> list[str]:
    kind = event.get("Type")
    if kind not in TRIGGERS:
        return [f"{where}: unknown trigger Type {kind!r}"]
    allowed, required, enums = TRIGGERS[kind]
    properties = event.get("Properties", {})
    problems = [f"{where}: unknown property {name}" for name in sorted(set(properties) - allowed)]
    problems += [f"{where}: missing {name}" for name in sorted(required - set(properties))]
    for name, values in enums.items():
        given = properties.get(name)
        for value in given if isinstance(given, list) else [given] if given is not None else []:
            if value not in values:
                problems.append(f"{where}: {name} {value!r} not in {sorted(values)}")
    if len(str(properties.get("FilterTag", ""))) > MNS_FILTER_TAG_MAX:
        problems.append(f"{where}: FilterTag longer than {MNS_FILTER_TAG_MAX}")
    if kind == "Timer" and "Enable" in properties and not isinstance(properties["Enable"], bool):
        problems.append(f"{where}: Enable must be a boolean")
    return problems


def structure_problems(template_path: Path) -> list[str]:
    """Everything in ``template_path`` that the 2018-04-03 transform or FC would reject."""
    template = yaml.safe_load(template_path.read_text())
    base = template_path.parent
    problems = []
    if template.get("Transform") != "Aliyun::Serverless-2018-04-03":
        problems.append("Transform is not Aliyun::Serverless-2018-04-03")
    services = {
        k: v for k, v in template["Resources"].items() if v.get("Type") == "Aliyun::Serverless::Service"
    }
    if not services:
        problems.append("no Aliyun::Serverless::Service")
    stray = [k for k, v in template["Resources"].items() if v.get("Type") == "Aliyun::Serverless::Function"]
    problems += [f"{name}: a function must be nested in its service" for name in stray]
    for service_name, service in services.items():
        for name, function in service.items():
            if name in ("Type", "Properties"):
                continue
            where = f"{service_name}/{name}"
            if not isinstance(function, dict) or function.get("Type") != "Aliyun::Serverless::Function":
                problems.append(f"{where}: not an Aliyun::Serverless::Function")
                continue
            problems += [f"{where}: unknown key {key}" for key in sorted(set(function) - FUNCTION_KEYS)]
            properties = function.get("Properties", {})
            if "Events" in properties:
                problems.append(f"{where}: Events belongs beside Properties, not inside")
            problems += [
                f"{where}: unknown property {key}" for key in sorted(set(properties) - FUNCTION_PROPERTIES)
            ]
            missing = REQUIRED_FUNCTION_PROPERTIES - set(properties)
            problems += [f"{where}: missing {key}" for key in sorted(missing)]
            if not missing:
                code_dir = (base / properties["CodeUri"]).resolve()
                if not code_dir.is_dir():
                    problems.append(f"{where}: CodeUri {properties['CodeUri']} is not a directory")
                elif problem := handler_problem(code_dir, properties["Handler"]):
                    problems.append(f"{where}: {problem}")
            for event_name, event in (function.get("Events") or {}).items():
                problems += trigger_problems(f"{where}/{event_name}", event)
    return problems


def test_template_has_the_2018_04_03_structure() -> None:
    assert structure_problems(ROOT / "template.yml") == []


def broken_copy(tmp_path: Path, edit: Any) -> Path:
    """template.yml and functions/ copied to ``tmp_path``, with ``edit(template)`` applied."""
    shutil.copytree(ROOT / "functions", tmp_path / "functions", ignore=shutil.ignore_patterns("__pycache__"))
    template = yaml.safe_load((ROOT / "template.yml").read_text())
    edit(template)
    path = tmp_path / "template.yml"
    path.write_text(yaml.safe_dump(template))
    return path


def first_function(template: dict[str, Any], name: str = "rollout") -> dict[str, Any]:
    """The function ``name`` in whichever service holds it (each function has a service of its own)."""
    [function] = [r[name] for r in template["Resources"].values() if isinstance(r.get(name), dict)]
    return function


def test_the_checker_reports_a_broken_handler_path(tmp_path: Path) -> None:
    def edit(template: dict[str, Any]) -> None:
        first_function(template)["Properties"]["CodeUri"] = "./functions/rollout"
        first_function(template, "scheduled")["Properties"]["Handler"] = "index.handle"

    path = broken_copy(tmp_path, edit)
    (tmp_path / "functions" / "rollout" / "index.py").rename(tmp_path / "functions" / "rollout" / "main.py")

    problems = structure_problems(path)

    assert "dbupgrade/rollout: functions/rollout/index.py is missing" in [
        p.replace(str(tmp_path) + "/", "") for p in problems
    ]
    assert "dbupgrade-scheduled/scheduled: no def handle in index.py" in problems


def test_the_checker_reports_misplaced_events_and_bad_trigger_properties(tmp_path: Path) -> None:
    def edit(template: dict[str, Any]) -> None:
        webhook = first_function(template, "webhook")
        webhook["Events"]["http"]["Properties"].update(AuthType="anonymous", Methods=["POST", "FETCH"])
        rollout = first_function(template)
        trigger = rollout["Events"]["rollout-topic"]["Properties"]
        trigger.update(NotifyContentFormat="XML", FilterTag="x" * 17, Topic="oops")
        scheduled = first_function(template, "scheduled")
        scheduled["Properties"]["Events"] = scheduled.pop("Events")

    problems = structure_problems(broken_copy(tmp_path, edit))

    assert "dbupgrade-webhook/webhook/http: AuthType 'anonymous' not in ['ANONYMOUS', 'FUNCTION']" in problems
    assert any(p.startswith("dbupgrade-webhook/webhook/http: Methods 'FETCH'") for p in problems)
    assert "dbupgrade/rollout/rollout-topic: NotifyContentFormat 'XML' not in ['JSON', 'STREAM']" in problems
    assert "dbupgrade/rollout/rollout-topic: FilterTag longer than 16" in problems
    assert "dbupgrade/rollout/rollout-topic: unknown property Topic" in problems
    assert "dbupgrade-scheduled/scheduled: Events belongs beside Properties, not inside" in problems
