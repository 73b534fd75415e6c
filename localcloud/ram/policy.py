"""RAM policy documents, compiled once to regexes, and the decision for one (action, resource).

Document grammar (help.aliyun.com/en/ram/user-guide/policy-structure-and-syntax; the same structure
is restated by every product's RAM page, e.g. help.aliyun.com/en/mns/developer-reference/
api-mns-open-2022-01-19-ram)::

    {"Version": "1", "Statement": [{"Effect": "Allow" | "Deny",
                                    "Action": "ns:Name" | [...], "Resource": "acs:..." | [...]}]}

Evaluation (help.aliyun.com/en/ram/user-guide/policy-evaluation-process): an explicit ``Deny`` that
matches wins over any ``Allow``; with no matching ``Allow`` the call is implicitly denied. ``*`` in
an action or a resource matches any run of characters (``?`` one character); action names compare
case-insensitively, resources case-sensitively. ``Condition`` blocks are not evaluated: a statement
carrying one is refused at compile time rather than silently widened.

Example::

    policy = Policy.compile([{"Version": "1", "Statement": [
        {"Effect": "Allow", "Action": "mns:SendMessage", "Resource": "acs:mns:*:*:/queues/q/messages"}]}])
    policy.decide("mns:SendMessage", "acs:mns:cn-hangzhou:123:/queues/q/messages")   # ALLOW
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

ALLOW = "Allow"
EXPLICIT_DENY = "ExplicitDeny"
IMPLICIT_DENY = "ImplicitDeny"


class PolicyError(ValueError):
    """A policy document localcloud cannot evaluate faithfully; says which part."""


def _pattern(texts: Iterable[str], *, ignore_case: bool) -> re.Pattern[str]:
    alternatives = []
    for text in texts:
        parts = re.split(r"([*?])", text)
        alternatives.append("".join(".*" if p == "*" else "." if p == "?" else re.escape(p) for p in parts))
    return re.compile("(?:" + "|".join(alternatives) + r")\Z", re.IGNORECASE if ignore_case else 0)


def _strings(value: Any, where: str) -> list[str]:
    items = value if isinstance(value, list) else [value]
    if not items or not all(isinstance(i, str) and i for i in items):
        raise PolicyError(f"{where}: expected a string or a list of strings, got {value!r}")
    return items


@dataclass(frozen=True)
class _Statement:
    allow: bool
    actions: re.Pattern[str]
    resources: re.Pattern[str]


@dataclass(frozen=True)
class Policy:
    """Every statement of a principal's policies; ``decide`` answers one request."""

    statements: tuple[_Statement, ...]

    @classmethod
    def compile(cls, documents: Iterable[dict[str, Any]]) -> Policy:
        statements = []
        for number, document in enumerate(documents):
            if str(document.get("Version", "")) != "1":
                raise PolicyError(f'policy {number}: Version must be "1", got {document.get("Version")!r}')
            for index, statement in enumerate(document.get("Statement") or []):
                where = f"policy {number} statement {index}"
                effect = statement.get("Effect")
                if effect not in ("Allow", "Deny"):
                    raise PolicyError(f"{where}: Effect must be Allow or Deny, got {effect!r}")
                if "Condition" in statement or "NotAction" in statement or "NotResource" in statement:
                    raise PolicyError(
                        f"{where}: Condition / NotAction / NotResource are not evaluated locally"
                    )
                statements.append(
                    _Statement(
                        allow=effect == "Allow",
                        actions=_pattern(
                            _strings(statement.get("Action"), f"{where} Action"), ignore_case=True
                        ),
                        resources=_pattern(
                            _strings(statement.get("Resource"), f"{where} Resource"), ignore_case=False
                        ),
                    )
                )
        return cls(tuple(statements))

    def decide(self, action: str, resource: str) -> str:
        """ALLOW, EXPLICIT_DENY or IMPLICIT_DENY for ``action`` (``ns:Name``) on ``resource`` (an ARN)."""
        allowed = False
        for statement in self.statements:
            if statement.actions.match(action) and statement.resources.match(resource):
                if not statement.allow:
                    return EXPLICIT_DENY
                allowed = True
        return ALLOW if allowed else IMPLICIT_DENY


@dataclass(frozen=True)
class Role:
    """A RAM role: its name (the STS principal ``AssumedRoleUser``) and its compiled policies.

    ``session_policy`` is the ``Policy`` an STS ``AssumeRole`` call passed: the credential may do only
    what both the role's policies and it allow ("the final permission of the STS token is the
    intersection of the RAM role's policy and this policy": STS AssumeRole metadata, parameter
    ``Policy``, dew-serverless/acs-sdk-php data/sts/2015-04-01/api-docs.json). An explicit Deny in
    either wins.
    """

    name: str
    policy: Policy
    session_policy: Policy | None = None

    def decide(self, action: str, resource: str) -> str:
        """ALLOW only if the role's policies, and the session policy if any, both allow."""
        decision = self.policy.decide(action, resource)
        if self.session_policy is None or decision == EXPLICIT_DENY:
            return decision
        narrowed = self.session_policy.decide(action, resource)
        if narrowed == EXPLICIT_DENY:
            return EXPLICIT_DENY
        return decision if narrowed == ALLOW else IMPLICIT_DENY

    @classmethod
    def from_seed(cls, raw: dict[str, Any]) -> Role:
        """``{"name": ..., "policies": [policy documents]}`` (the seed / template shape)."""
        if not raw.get("name"):
            raise PolicyError(f"a role needs a name: {raw!r}")
        return cls(str(raw["name"]), Policy.compile(raw.get("policies") or []))
