"""A ROS / Fun template (``Transform: Aliyun::Serverless-2018-04-03``) as a localcloud seed.

What the template declares becomes what localcloud runs:

- ``ALIYUN::MNS::Topic`` / ``ALIYUN::MNS::Queue`` -> ``topics`` / ``queues`` (with the queue
  attributes localcloud models); ``ALIYUN::MNS::Subscription`` to a queue endpoint -> a topic->queue
  subscription
- every ``Aliyun::Serverless::Function`` of every ``Aliyun::Serverless::Service`` -> ``functions``
  (code, handler, runtime, timeout, memory, ``EnvironmentVariables``, async retries and the MNS queue
  of ``AsyncConfiguration.Destination``)
- the service's ``Policies`` -> each of its functions' ``role``: FC 2.0 gives a service's functions
  the service role, and ``Policies`` creates that default role and attaches the policies
  (help.aliyun.com/en/ros/developer-reference/aliyun-serverless-service). Inline documents are
  kept, intrinsics resolved (``Fn::Sub`` with the stack's account and region). Managed (system)
  policy names are not modelled: one grants nothing locally and is reported in ``skipped``, so a
  function that depends on one fails here first. With ``Role`` set, the same page says
  ``Policies`` does not take effect: the role's policies are not in the template, so its functions
  run unevaluated, and that is reported in ``skipped``.
- its events: ``HTTP`` -> served on ``/2016-08-15/proxy/{service}/{function}/``; ``Timer`` ->
  ``timers`` (``localcloud.timers``); ``MNSTopic`` -> a topic->function subscription
  (``NotifyContentFormat``, ``NotifyStrategy``, ``FilterTag``). Other event types are reported in
  ``skipped``.

Intrinsics are resolved only where a value is needed (so VPC, layer and role parameters need no
local value): ``Ref`` (parameters, ``ALIYUN::AccountId`` / ``Region`` / ``StackName`` /
``StackId``, and topics and queues, which ``Ref`` to their names), ``Fn::Sub``, ``Fn::Join``,
``Fn::Select``, ``Fn::GetAtt`` of a topic's or queue's name; the short forms (``!Ref``, ``!Sub``...)
too. A value that resolves to an Alibaba Cloud endpoint (``http(s)://*.aliyuncs.com``) becomes
``${LOCALCLOUD_URL}``: every product is served here.

The base seed keeps its fleet, accounts, ``function_env`` (localcloud's own endpoints) and any
topics, queues and queue subscriptions (taps) of its own; its functions and function subscriptions
are replaced by the template's.

Example::

    stack = stack_seed(load_template("template.yml"), base_seed, parameters={"StateRedisUrl": url})
    cloud = Cloud(stack.seed, root=Path("."))
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SERVICE_TYPE = "Aliyun::Serverless::Service"
FUNCTION_TYPE = "Aliyun::Serverless::Function"
TOPIC_TYPE = "ALIYUN::MNS::Topic"
QUEUE_TYPE = "ALIYUN::MNS::Queue"
SUBSCRIPTION_TYPE = "ALIYUN::MNS::Subscription"
QUEUE_ATTRIBUTES = (
    "VisibilityTimeout",
    "DelaySeconds",
    "PollingWaitSeconds",
    "MaximumMessageSize",
    "MessageRetentionPeriod",
)
ENDPOINT = re.compile(r"^https?://[A-Za-z0-9.-]+\.aliyuncs\.com(?=/|$)")
DESTINATION_QUEUE = re.compile(r"/queues/(?P<queue>[^/]+)(?:/messages)?$")
SUBSCRIPTION_QUEUE = re.compile(r"queues/(?P<queue>[^/]+)$")
SUB_VARIABLE = re.compile(r"\$\{(?P<name>[^}!][^}]*)\}")
SHORT_TAGS = ("Ref", "Sub", "Join", "Select", "GetAtt", "Split", "If", "Base64Encode", "Equals", "Not")
DEFAULT_REGION = "cn-hangzhou"


class TemplateError(ValueError):
    """The template asks for something that cannot be resolved or run locally; says what and where."""


def load_template(path: Path | str) -> dict[str, Any]:
    """Parse a template file, short-form intrinsics (``!Ref X``, ``!Sub '...'``) included."""
    try:
        import yaml
    except ImportError:
        raise TemplateError("reading a template needs PyYAML (pip install PyYAML)") from None

    class Loader(yaml.SafeLoader):
        """SafeLoader plus ROS's short-form intrinsic tags."""

    def constructor(tag: str) -> Any:
        key = "Ref" if tag == "Ref" else f"Fn::{tag}"

        def construct(loader: yaml.SafeLoader, node: yaml.Node) -> dict[str, Any]:
            if isinstance(node, yaml.ScalarNode):
                value: Any = loader.construct_scalar(node)
                if tag == "GetAtt":  # !GetAtt Resource.Attribute
                    value = str(value).split(".", 1)
            elif isinstance(node, yaml.SequenceNode):
                value = loader.construct_sequence(node, deep=True)
            else:
                value = loader.construct_mapping(node, deep=True)
            return {key: value}

        return construct

    for tag in SHORT_TAGS:
        Loader.add_constructor(f"!{tag}", constructor(tag))
    document = yaml.load(Path(path).read_text(), Loader=Loader)  # noqa: S506 -- SafeLoader subclass
    if not isinstance(document, dict) or not isinstance(document.get("Resources"), dict):
        raise TemplateError(f"{path}: not a ROS template (no Resources)")
    return document


@dataclass
class TemplateStack:
    """The seed to run, and what the template declares that localcloud does not emulate."""

    seed: dict[str, Any]
    skipped: list[str] = field(default_factory=list)


class _Resolver:
    def __init__(self, template: dict[str, Any], parameters: dict[str, str], pseudo: dict[str, str]):
        self.declared = template.get("Parameters") or {}
        self.resources = template["Resources"]
        self.parameters = parameters
        self.pseudo = pseudo

    def name_of(self, logical_id: str) -> str:
        """What ``Ref`` of a topic or queue gives: its name."""
        resource = self.resources[logical_id]
        properties = resource.get("Properties") or {}
        key = "TopicName" if resource.get("Type") == TOPIC_TYPE else "QueueName"
        if key not in properties:
            raise TemplateError(f"{logical_id}: Ref to a {resource.get('Type')} without {key}")
        return str(self.resolve(properties[key], logical_id))

    def ref(self, name: str, where: str) -> Any:
        if name in self.pseudo:
            return self.pseudo[name]
        if name in self.parameters:
            return self.parameters[name]
        if name in self.declared:
            declared = self.declared[name] or {}
            if "Default" in declared:
                return declared["Default"]
            raise TemplateError(f"{where}: parameter {name} has no default; give it a local value")
        if name in self.resources and self.resources[name].get("Type") in (TOPIC_TYPE, QUEUE_TYPE):
            return self.name_of(name)
        raise TemplateError(f"{where}: Ref {name!r} is neither a parameter nor a topic or queue")

    def resolve(self, value: Any, where: str) -> Any:
        if isinstance(value, list):
            return [self.resolve(v, where) for v in value]
        if not isinstance(value, dict):
            return value
        if len(value) != 1:
            return {k: self.resolve(v, f"{where}.{k}") for k, v in value.items()}
        ((key, argument),) = value.items()
        if key == "Ref":
            return self.ref(str(argument), where)
        if key == "Fn::Sub":
            return self.substitute(argument, where)
        if key == "Fn::Join":
            delimiter, items = argument
            return str(delimiter).join(str(i) for i in self.resolve(items, where))
        if key == "Fn::Select":
            index, items = argument
            items = self.resolve(items, where)
            if isinstance(items, str):
                items = items.split(",")
            return items[int(self.resolve(index, where))]
        if key == "Fn::GetAtt":
            logical_id, attribute = argument
            if attribute in ("TopicName", "QueueName") and logical_id in self.resources:
                return self.name_of(logical_id)
            raise TemplateError(f"{where}: Fn::GetAtt {logical_id}.{attribute} has no local value")
        if key.startswith("Fn::"):
            raise TemplateError(f"{where}: {key} is not supported locally")
        return {key: self.resolve(argument, f"{where}.{key}")}

    def substitute(self, argument: Any, where: str) -> str:
        text, variables = (argument, {}) if isinstance(argument, str) else argument

        def replace(match: re.Match[str]) -> str:
            name = match.group("name")
            if name in variables:
                return str(self.resolve(variables[name], where))
            return str(self.ref(name, where))

        return SUB_VARIABLE.sub(replace, text).replace("${!", "${")


def _local_endpoint(value: Any) -> Any:
    return ENDPOINT.sub("${LOCALCLOUD_URL}", value) if isinstance(value, str) else value


def _services(resources: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for logical_id, resource in resources.items():
        if isinstance(resource, dict) and resource.get("Type") == SERVICE_TYPE:
            yield logical_id, resource


def _functions(service: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for logical_id, child in service.items():
        if isinstance(child, dict) and child.get("Type") == FUNCTION_TYPE:
            yield logical_id, child


def environment_parameters(template: dict[str, Any], variable: str) -> set[str]:
    """The parameters whose value a function's ``variable`` is (``VAR: {Ref: Param}``)."""
    found = set()
    for _, service in _services(template["Resources"]):
        for _, function in _functions(service):
            value = ((function.get("Properties") or {}).get("EnvironmentVariables") or {}).get(variable)
            if isinstance(value, dict) and set(value) == {"Ref"}:
                found.add(str(value["Ref"]))
    return found


def _destination_queue(arn: Any, where: str) -> dict[str, str]:
    match = DESTINATION_QUEUE.search(str(arn))
    if match is None:
        raise TemplateError(f"{where}: only MNS queue destinations run locally, not {arn!r}")
    return {"queue": match.group("queue")}


def _function_spec(
    resolver: _Resolver, service: str, name: str, properties: dict[str, Any], code_base: Path
) -> dict[str, Any]:
    where = f"{service}/{name}"
    env = properties.get("EnvironmentVariables") or {}
    spec: dict[str, Any] = {
        "service": service,
        "name": name,
        "code_uri": str((code_base / str(resolver.resolve(properties["CodeUri"], where))).resolve()),
        "handler": resolver.resolve(properties["Handler"], where),
        "runtime": resolver.resolve(properties.get("Runtime", "python3.10"), where),
        "timeout": float(resolver.resolve(properties.get("Timeout", 3), where)),
        "memory": int(resolver.resolve(properties.get("MemorySize", 128), where)),
        "env": {k: str(_local_endpoint(resolver.resolve(v, f"{where} env {k}"))) for k, v in env.items()},
    }
    asynchronous = properties.get("AsyncConfiguration") or {}
    if "MaxAsyncRetryAttempts" in asynchronous:
        spec["max_async_retry_attempts"] = int(resolver.resolve(asynchronous["MaxAsyncRetryAttempts"], where))
    for key, seed_key in (("OnFailure", "on_failure"), ("OnSuccess", "on_success")):
        target = (asynchronous.get("Destination") or {}).get(key)
        if target:
            spec[seed_key] = _destination_queue(resolver.resolve(target, where), where)
    return spec


def _service_role(
    resolver: _Resolver, service: str, properties: dict[str, Any], skipped: list[str]
) -> dict[str, Any] | None:
    """The default role ``Policies`` creates for the service's functions (managed names grant nothing)."""
    if properties.get("Role") is not None:
        skipped.append(f"{service}: Role is set, so its policies are not in the template (not evaluated)")
        return None
    policies = properties.get("Policies")
    if policies is None:
        return None
    documents = []
    for index, policy in enumerate(policies if isinstance(policies, list) else [policies]):
        if isinstance(policy, str):
            skipped.append(f"{service}: managed policy {policy} is not modelled (grants nothing locally)")
            continue
        documents.append(resolver.resolve(policy, f"{service} Policies[{index}]"))
    return {"name": f"{service}-default-role", "policies": documents}


def stack_seed(
    template: dict[str, Any],
    base_seed: dict[str, Any],
    *,
    parameters: dict[str, str] | None = None,
    template_dir: Path | str = ".",
    enable_timers: bool = False,
) -> TemplateStack:
    """The seed that runs ``template`` on ``base_seed``'s fleet and accounts (see the module doc).

    ``parameters`` are the stack's parameter values (a declared ``Default`` applies otherwise);
    ``enable_timers`` fires Timer triggers the template declares with ``Enable: false`` too.
    """
    seed = copy.deepcopy(base_seed)
    accounts = seed.get("accounts") or []
    if not accounts:
        raise TemplateError("the base seed has no accounts: the stack needs one to run as")
    region = (seed.get("function_env") or {}).get("DBUPGRADE_REGION") or seed.get("region") or DEFAULT_REGION
    pseudo = {
        "ALIYUN::AccountId": str(accounts[0]["account_id"]),
        "ALIYUN::Region": region,
        "ALIYUN::StackName": "localcloud",
        "ALIYUN::StackId": "localcloud-stack",
    }
    resolver = _Resolver(template, dict(parameters or {}), pseudo)
    resources: dict[str, Any] = template["Resources"]
    skipped: list[str] = []
    topics: list[str] = list(seed.get("topics", []))
    queues: dict[str, Any] = {
        (q if isinstance(q, str) else q["QueueName"]): q for q in seed.get("queues", [])
    }
    subscriptions = [s for s in seed.get("subscriptions", []) if "function" not in s]
    functions: list[dict[str, Any]] = []
    timers: list[dict[str, Any]] = []

    for logical_id, resource in resources.items():
        kind = resource.get("Type") if isinstance(resource, dict) else None
        properties = (resource or {}).get("Properties") or {}
        if kind == TOPIC_TYPE:
            name = resolver.name_of(logical_id)
            topics += [] if name in topics else [name]
        elif kind == QUEUE_TYPE:
            name = resolver.name_of(logical_id)
            attributes = {
                k: int(resolver.resolve(properties[k], logical_id))
                for k in QUEUE_ATTRIBUTES
                if k in properties
            }
            queues[name] = {"QueueName": name, **attributes} if attributes else name
        elif kind == SUBSCRIPTION_TYPE:
            endpoint = str(resolver.resolve(properties.get("Endpoint", ""), logical_id))
            match = SUBSCRIPTION_QUEUE.search(endpoint)
            if match is None:
                skipped.append(f"{logical_id}: subscription endpoint {endpoint!r} (only queues run locally)")
                continue
            subscription = {
                "name": str(resolver.resolve(properties["SubscriptionName"], logical_id)),
                "topic": str(resolver.resolve(properties["TopicName"], logical_id)),
                "queue": match.group("queue"),
                "format": str(
                    resolver.resolve(properties.get("NotifyContentFormat", "SIMPLIFIED"), logical_id)
                ),
            }
            if properties.get("FilterTag"):
                subscription["filter_tag"] = str(resolver.resolve(properties["FilterTag"], logical_id))
            subscriptions.append(subscription)
        elif kind not in (SERVICE_TYPE, None):
            skipped.append(f"{logical_id}: {kind} is not emulated")

    code_base = Path(template_dir)
    for service, service_resource in _services(resources):
        role = _service_role(resolver, service, service_resource.get("Properties") or {}, skipped)
        for name, function in _functions(service_resource):
            functions.append(
                _function_spec(resolver, service, name, function.get("Properties") or {}, code_base)
            )
            if role is not None:
                functions[-1]["role"] = role
            for event_id, event in (function.get("Events") or {}).items():
                where = f"{service}/{name} event {event_id}"
                kind = event.get("Type")
                properties = event.get("Properties") or {}
                if kind == "HTTP":
                    functions[-1]["http"] = True
                elif kind == "Timer":
                    payload = resolver.resolve(properties.get("Payload", ""), where)
                    enabled = bool(resolver.resolve(properties.get("Enable", True), where))
                    timers.append(
                        {
                            "function": f"{service}/{name}",
                            "name": event_id,
                            "cron": str(resolver.resolve(properties["CronExpression"], where)),
                            "payload": payload,
                            "enable": enabled or enable_timers,
                        }
                    )
                elif kind == "MNSTopic":
                    subscription = {
                        "name": event_id,
                        "topic": str(resolver.resolve(properties["TopicName"], where)),
                        "function": f"{service}/{name}",
                        "format": str(
                            resolver.resolve(properties.get("NotifyContentFormat", "STREAM"), where)
                        ),
                        "strategy": str(
                            resolver.resolve(properties.get("NotifyStrategy", "BACKOFF_RETRY"), where)
                        ),
                    }
                    if properties.get("FilterTag"):
                        subscription["filter_tag"] = str(resolver.resolve(properties["FilterTag"], where))
                    subscriptions.append(subscription)
                else:
                    skipped.append(f"{where}: {kind} triggers are not emulated")

    seed.update(
        topics=topics,
        queues=list(queues.values()),
        subscriptions=subscriptions,
        functions=functions,
        timers=timers,
    )
    return TemplateStack(seed, skipped)
