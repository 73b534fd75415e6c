"""Access keys and STS temporary credentials from the seed's ``accounts``.

Seed shape::

    {"account_id": "1234567890123456", "access_key_id": "LTAI...", "access_key_secret": "...",
     "sts": [{"access_key_id": "STS.N...", "access_key_secret": "...",
              "security_token": "CAIS...", "expiration": "2030-01-01T00:00:00Z"}]}

``sts`` may be one object or a list. An STS entry may carry ``"role": {"name": ..., "policies":
[RAM policy documents]}``: it is then the credential of that assumed role, and every gateway
evaluates its calls against those policies (``localcloud.ram``). The account's own AccessKey, and an
STS entry without a role, act as the account itself: allowed everything, as a root account is.
FC mints role credentials at run time for functions that have a role (``Accounts.add``).

An account may also list the RAM roles others may assume through STS ``AssumeRole``
(``localcloud.sts``)::

    "roles": [{"name": "dbupgrade-member", "trusts": ["<account id>", ...],
               "policies": [RAM policy documents], "max_session_duration": 3600}]

``trusts`` is the role's trust policy: the accounts whose RAM users and roles may assume it.
``Accounts.mint`` issues the temporary credential of an assumed role; it belongs to the role's
account and carries the role's policies (narrowed by the call's ``Policy``).

Signatures and token expiry are checked against the real wall clock (the clients sign with it),
never the emulated one.
"""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
import string
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from localcloud.ram.policy import ALLOW, Policy, PolicyError, Role

# RAM CreateRole: MaxSessionDuration is 3600..43200 seconds, default 3600
# (help.aliyun.com/document_detail/28710.html, parameter MaxSessionDuration).
DEFAULT_MAX_SESSION_DURATION = 3600
MAX_SESSION_DURATION_RANGE = (3600, 43200)
# assumption: a seeded role that lists no "policies" may do every R-kvstore, Dds and MNS action on
# its own account's resources, the least a member role of issue #16 needs; name "policies" to narrow it.
DEFAULT_ROLE_ACTIONS = ("kvstore:*", "dds:*", "mns:*")
# assumption: a seeded role that lists no "trusts" trusts only its own account, as the RAM console's
# "current Alibaba Cloud account" trusted entity does by default.
_KEY_ALPHABET = string.ascii_letters + string.digits


@dataclass(frozen=True)
class Credential:
    account_id: str
    access_key_id: str
    access_key_secret: str
    security_token: str | None = None
    expiration: float | None = None  # epoch seconds, STS only
    role: Role | None = None  # an assumed role's credential; None acts as the account itself

    @property
    def is_sts(self) -> bool:
        return self.security_token is not None

    def decide(self, action: str, resource: str) -> str:
        """RAM's answer for this principal (``localcloud.ram.policy``): a root principal may do anything."""
        return ALLOW if self.role is None else self.role.decide(action, resource)


@dataclass(frozen=True)
class AssumableRole:
    """A RAM role of one account that STS ``AssumeRole`` can hand out (the seed's ``roles``)."""

    account_id: str
    name: str
    role_id: str  # RAM's numeric RoleId; AssumedRoleId is "<RoleId>:<RoleSessionName>"
    trusts: frozenset[str]  # accounts the trust policy names
    policy: Policy
    max_session_duration: int

    @property
    def arn(self) -> str:
        """``acs:ram::<account>:role/<name>`` (STS AssumeRole's RoleArn format), the name in lower case
        as RAM writes role ARNs (FC's ``AliyunFCDefaultRole`` is ``acs:ram::<account>:role/
        aliyunfcdefaultrole``; the AssumeRole metadata's example Arn ``.../role/adminrole/alice``)."""
        return f"acs:ram::{self.account_id}:role/{self.name.lower()}"

    @classmethod
    def from_seed(cls, account_id: str, raw: dict[str, Any]) -> AssumableRole:
        name = raw.get("name")
        if not name:
            raise PolicyError(f"account {account_id}: a role needs a name: {raw!r}")
        policies = raw.get("policies")
        if policies is None:
            policies = [
                {
                    "Version": "1",
                    "Statement": [
                        {
                            "Effect": "Allow",
                            "Action": list(DEFAULT_ROLE_ACTIONS),
                            "Resource": f"acs:*:*:{account_id}:*",
                        }
                    ],
                }
            ]
        duration = int(raw.get("max_session_duration", DEFAULT_MAX_SESSION_DURATION))
        low, high = MAX_SESSION_DURATION_RANGE
        if not low <= duration <= high:
            raise PolicyError(f"role {name}: max_session_duration must be {low}..{high}, got {duration}")
        # assumption: RoleIds are 18-digit numbers (the metadata's example "34458433936495****"); made
        # stable from the account and name so a restarted localcloud hands out the same one.
        digest = hashlib.sha256(f"{account_id}/{name}".encode()).hexdigest()
        return cls(
            account_id=account_id,
            name=str(name),
            role_id=str(10**17 + int(digest, 16) % (9 * 10**17)),
            trusts=frozenset(str(a) for a in raw.get("trusts", [account_id])),
            policy=Policy.compile(policies),
            max_session_duration=duration,
        )


def _random_text(length: int) -> str:
    return "".join(secrets.choice(_KEY_ALPHABET) for _ in range(length))


class TokenError(Exception):
    """A refused STS token; ``reason`` is Missing | Malformed | Expired | MismatchWithAccessKey."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


def _epoch(value: str | float | int) -> float:
    if isinstance(value, int | float):
        return float(value)
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


class Accounts:
    def __init__(self, credentials: list[Credential], roles: list[AssumableRole] | None = None) -> None:
        self._by_key = {c.access_key_id: c for c in credentials}
        # assumption: role names match case-insensitively, as RAM resolves a RoleArn whatever the case
        # its caller wrote (RAM role names are unique per account without regard to case).
        self._roles = {(r.account_id, r.name.lower()): r for r in roles or []}

    @classmethod
    def from_seed(cls, accounts: list[dict[str, Any]]) -> Accounts:
        creds: list[Credential] = []
        roles: list[AssumableRole] = []
        for acct in accounts:
            account_id = str(acct["account_id"])
            roles.extend(AssumableRole.from_seed(account_id, raw) for raw in acct.get("roles") or [])
            creds.append(Credential(account_id, acct["access_key_id"], acct["access_key_secret"]))
            sts = acct.get("sts") or []
            for tmp in [sts] if isinstance(sts, dict) else sts:
                creds.append(
                    Credential(
                        account_id,
                        tmp["access_key_id"],
                        tmp["access_key_secret"],
                        tmp["security_token"],
                        _epoch(tmp["expiration"]) if tmp.get("expiration") else None,
                        Role.from_seed(tmp["role"]) if tmp.get("role") else None,
                    )
                )
        return cls(creds, roles)

    def add(self, credential: Credential) -> None:
        """Register a credential minted at run time (FC's per-role STS credentials)."""
        self._by_key[credential.access_key_id] = credential

    def lookup(self, access_key_id: str) -> Credential | None:
        return self._by_key.get(access_key_id)

    def role(self, account_id: str, name: str) -> AssumableRole | None:
        """The seeded role ``name`` of ``account_id``, if that account has one."""
        return self._roles.get((account_id, name.lower()))

    def mint(self, role: AssumableRole, duration: int, session_policy: Policy | None = None) -> Credential:
        """A new STS credential of ``role``, valid ``duration`` seconds of real wall time.

        Shapes follow STS AssumeRole's response examples (metadata): ``STS.``-prefixed key ID, a
        40-character secret; tokens of the real service begin ``CAIS`` (the seeds' tokens, copied
        from real ones) and their length is not fixed.
        """
        token = "CAIS" + base64.b64encode(os.urandom(96)).decode()
        credential = Credential(
            account_id=role.account_id,
            access_key_id="STS.N" + _random_text(24),
            access_key_secret=_random_text(40),
            security_token=token,
            expiration=float(int(time.time()) + duration),
            role=Role(role.name, role.policy, session_policy),
        )
        self.add(credential)
        return credential

    @property
    def account_ids(self) -> list[str]:
        return sorted({c.account_id for c in self._by_key.values()})

    @staticmethod
    def check_token(cred: Credential, token: str | None) -> None:
        """Raise TokenError unless ``token`` is what this credential requires."""
        if not cred.is_sts:
            if token:
                raise TokenError("MismatchWithAccessKey", "The security token does not match the access key.")
            return
        if not token:
            raise TokenError("Missing", "The security token you provided is missing.")
        if token != cred.security_token:
            if len(token) < 16 or not token.isascii():
                raise TokenError("Malformed", "The security token you provided is malformed.")
            raise TokenError("MismatchWithAccessKey", "The security token does not match the access key.")
        if cred.expiration is not None and time.time() >= cred.expiration:
            raise TokenError("Expired", "The security token you provided has expired.")
