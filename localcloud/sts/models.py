"""STS state: who may assume which seeded RAM role, and the temporary credentials it hands out.

Rules (STS AssumeRole metadata, ``apimeta/sts-2015-04-01.json`` and its source
dew-serverless/acs-sdk-php data/sts/2015-04-01/api-docs.json, unless a line cites otherwise):

- ``RoleArn`` is ``acs:ram::<account_id>:role/<role_name>``; else InvalidParameter.RoleArn. Role names
  are 1..64 letters, digits, ``.`` and ``-`` (RAM CreateRole, help.aliyun.com/document_detail/28710.html).
- ``RoleSessionName``: 2..64 characters of letters, digits and ``.@-_``; else
  InvalidParameter.RoleSessionName.
- ``DurationSeconds``: default 3600, at least 900, at most the role's ``MaxSessionDuration``; else
  InvalidParameter.DurationSeconds.
- ``Policy``: at most 2048 characters (InvalidParameter.PolicySize); a RAM policy document
  (InvalidParameter.PolicyGrammar otherwise); the credential may do only what both the role and it
  allow (``localcloud.ram.policy.Role.decide``).
- Only RAM users and roles may call it: an account's own key gets NoPermission "Roles may not be
  assumed by root accounts." (``exceptions.RootMayNotAssume``). A caller whose RAM policies do not
  allow ``sts:AssumeRole`` on the role's ARN, or whose account the role does not trust, gets
  NoPermission; a role the account does not have, EntityNotExist.Role.
- The credential belongs to the role's account (its R-kvstore/Dds calls see that account's fleet,
  ``localcloud.backends``) and expires ``DurationSeconds`` of real wall time later
  (``Accounts.check_token`` then answers InvalidSecurityToken.Expired).

assumption: the order of the checks: parameters' form, caller (root, then its RAM policies), role
existence, trust, then DurationSeconds against the role's maximum. No source shows which of two
faults a call with both is told.

Example::

    sts = StsBackend(cloud.accounts)
    body = sts.assume_role(caller, "acs:ram::2222333344445555:role/dbupgrade-member", "rollout-1", None, None)
    body["Credentials"]["AccessKeyId"]          # "STS.N..."
"""

from __future__ import annotations

import json
import re
import time
from typing import Any

from localcloud.accounts import Accounts, AssumableRole, Credential
from localcloud.ram import resources
from localcloud.ram.policy import ALLOW, Policy, PolicyError
from localcloud.sts import exceptions

ROLE_ARN = re.compile(r"acs:ram::(?P<account>[0-9]+):role/(?P<name>[A-Za-z0-9.-]{1,64})\Z")
SESSION_NAME = re.compile(r"[A-Za-z0-9.@_-]{2,64}\Z")
MIN_DURATION_SECONDS = 900
DEFAULT_DURATION_SECONDS = 3600
MAX_POLICY_CHARACTERS = 2048


def _expiration(epoch: float) -> str:
    """``2015-04-09T11:52:19Z``, the metadata's Expiration example (UTC)."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


def _session_policy(text: str | None) -> Policy | None:
    if text is None or text == "":
        return None
    if len(text) > MAX_POLICY_CHARACTERS:
        raise exceptions.InvalidPolicySize()
    try:
        document = json.loads(text)
        if not isinstance(document, dict):
            raise PolicyError("a policy document is a JSON object")
        return Policy.compile([document])
    except (ValueError, PolicyError, AttributeError, TypeError):
        # localcloud.ram.policy refuses Condition / NotAction / NotResource rather than ignore them:
        # such a session policy is refused here too, where the real service would evaluate it.
        raise exceptions.InvalidPolicyGrammar() from None


class StsBackend:
    """AssumeRole over one localcloud's accounts (``localcloud.accounts.Accounts``)."""

    def __init__(self, accounts: Accounts) -> None:
        self.accounts = accounts

    def assume_role(
        self,
        caller: Credential,
        role_arn: str,
        session_name: str,
        duration_seconds: str | None,
        policy: str | None,
    ) -> dict[str, Any]:
        """AssumeRole's body (without RequestId) for ``caller``; raises the refusals named above."""
        arn = ROLE_ARN.fullmatch(role_arn)
        if arn is None:
            raise exceptions.InvalidRoleArn()
        if not SESSION_NAME.fullmatch(session_name):
            raise exceptions.InvalidRoleSessionName()
        duration = DEFAULT_DURATION_SECONDS if duration_seconds in (None, "") else int(duration_seconds)
        if duration < MIN_DURATION_SECONDS:
            raise exceptions.InvalidDurationSeconds()
        narrowed = _session_policy(policy)
        if caller.role is None:
            raise exceptions.RootMayNotAssume()
        if caller.decide(*resources.sts_assume_role(role_arn)) != ALLOW:
            raise exceptions.NoPermission()
        role = self.accounts.role(arn.group("account"), arn.group("name"))
        if role is None:
            raise exceptions.RoleNotFound()
        if caller.account_id not in role.trusts:
            raise exceptions.NoPermission()
        if duration > role.max_session_duration:
            raise exceptions.InvalidDurationSeconds()
        credential = self.accounts.mint(role, duration, narrowed)
        return self._body(role, session_name, credential)

    @staticmethod
    def _body(role: AssumableRole, session_name: str, credential: Credential) -> dict[str, Any]:
        assert credential.expiration is not None and credential.security_token is not None
        return {
            "AssumedRoleUser": {
                "Arn": f"{role.arn}/{session_name}",
                "AssumedRoleId": f"{role.role_id}:{session_name}",
            },
            "Credentials": {
                "AccessKeyId": credential.access_key_id,
                "AccessKeySecret": credential.access_key_secret,
                "SecurityToken": credential.security_token,
                "Expiration": _expiration(credential.expiration),
            },
        }
