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

Signatures and token expiry are checked against the real wall clock (the clients sign with it),
never the emulated one.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from localcloud.ram.policy import ALLOW, Role


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
        return ALLOW if self.role is None else self.role.policy.decide(action, resource)


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
    def __init__(self, credentials: list[Credential]) -> None:
        self._by_key = {c.access_key_id: c for c in credentials}

    @classmethod
    def from_seed(cls, accounts: list[dict[str, Any]]) -> Accounts:
        creds: list[Credential] = []
        for acct in accounts:
            account_id = str(acct["account_id"])
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
        return cls(creds)

    def add(self, credential: Credential) -> None:
        """Register a credential minted at run time (FC's per-role STS credentials)."""
        self._by_key[credential.access_key_id] = credential

    def lookup(self, access_key_id: str) -> Credential | None:
        return self._by_key.get(access_key_id)

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
