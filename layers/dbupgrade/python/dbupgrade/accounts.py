"""Member accounts: credentials through each member's role, and the accounts of a Resource Directory.

dbupgrade runs in one account (the own account: ``Config.account_id``, from DBUPGRADE_ACCOUNT_ID or
FC's FC_ACCOUNT_ID) with that account's credentials. A target in another account is reached through
STS ``AssumeRole`` on ``acs:ram::<account>:role/<DBUPGRADE_MEMBER_ROLE>`` (default
``dbupgrade-member``, which ``deploy/member-role.yml`` creates in each member): the temporary
credential acts in the member's account, so its calls see the member's fleet and are throttled in
the member's own rate-limit buckets. Credentials are cached per (account, role, session, caller) until
``REFRESH_MARGIN_SECONDS`` before they expire. A role that is missing or does not trust the caller is
``MemberAccessError``: a configuration error naming the account and the role, that fails only the
targets (and the rollout's locations) of that account.

Both services are called through tea-openapi's generic ``call_api`` (``CloudApi``), like the engines:

- STS 2015-04-01 ``AssumeRole``: RoleArn, RoleSessionName (2..64 of letters, digits and ``.@-_``),
  DurationSeconds (900..the role's maximum, default 3600); answer ``Credentials`` {AccessKeyId,
  AccessKeySecret, SecurityToken, Expiration "2015-04-09T11:52:19Z"} (STS API metadata,
  dew-serverless/acs-sdk-php data/sts/2015-04-01/api-docs.json). Endpoint ``sts.<region>.aliyuncs.com``
  (the official SDK alibabacloud_sts20150401's ``_endpoint_rule = 'regional'``), or DBUPGRADE_STS_ENDPOINT.
  Only a RAM user or role may assume roles: an account's own (root) AccessKey gets NoPermission
  (STS FAQ, "Roles may not be assumed by root accounts").
- Resource Manager 2020-03-31 ``ListAccounts`` (PageSize up to 100), callable by the management
  account and delegated administrators only (its metadata's description). Endpoint
  ``resourcemanager.aliyuncs.com`` (the SDK's ``_endpoint_rule = 'central'``), or
  DBUPGRADE_RESOURCEMANAGER_ENDPOINT.

Example::

    provider = MemberCredentials(config, cloud)
    creds = provider.credentials("2000000000000002", own_credentials, "cn-hangzhou", "rollout-r1", deadline)
"""

from __future__ import annotations

import calendar
import re
import threading
import time
from typing import Any, NamedTuple

from dbupgrade import clock
from dbupgrade.cloudapi import CloudApi, CloudError
from dbupgrade.config import Config
from dbupgrade.context import Credentials
from dbupgrade.engines import dig
from dbupgrade.logging import logger, register_secret

# A cached credential is renewed this long before it expires: longer than one invocation's calls
# take, shorter than the 900 s an assumed role lasts at the least.
REFRESH_MARGIN_SECONDS = 300
DURATION_SECONDS = 3600  # STS's default, and every role's maximum unless raised
SESSION_NAME_ALLOWED = re.compile(r"[^A-Za-z0-9.@_-]")
SESSION_NAME_MIN, SESSION_NAME_MAX = 2, 64
SESSION_PREFIX = "dbupgrade-"
LIST_PAGE_SIZE = 100  # ListAccounts' largest page
# What the STS codes mean for the operator of a member account (the STS API metadata's error codes).
ROLE_HINTS = {
    "EntityNotExist.Role": "the role does not exist there",
    "NoPermission": "the role does not trust this account, or this caller may not assume it",
    "InvalidParameter.RoleArn": "the role ARN is malformed: check DBUPGRADE_MEMBER_ROLE",
}


class Service(NamedTuple):
    """An OpenAPI service that is not an engine, in the shape ``CloudApi`` calls (``cloudapi.Api``)."""

    name: str
    product: str  # the rate limiter's bucket name
    api_version: str
    endpoint_variable: str
    ram_service: str
    host_prefix: str
    central: bool  # one endpoint for every region (else <prefix>.<region>.aliyuncs.com)
    # No call of these services changes a resource (AssumeRole mints a new credential each time):
    # every one may be resent after a lost reply.
    upgrade_action: str = ""

    def endpoint(self, region: str) -> str:
        return (
            f"{self.host_prefix}.aliyuncs.com"
            if self.central
            else f"{self.host_prefix}.{region}.aliyuncs.com"
        )


STS = Service("sts", "sts", "2015-04-01", "DBUPGRADE_STS_ENDPOINT", "sts", "sts", central=False)
RESOURCE_MANAGER = Service(
    "resourcemanager",
    "resourcemanager",
    "2020-03-31",
    "DBUPGRADE_RESOURCEMANAGER_ENDPOINT",
    "resourcemanager",
    "resourcemanager",
    central=True,
)


class MemberAccessError(CloudError):
    """The member account's role could not be assumed: an operator must create or fix it there.

    A configuration error (never retried, never counted against an error budget) whose one line names
    the account, the role and what is wrong.
    """

    def __init__(self, account_id: str, role: str, cause: CloudError) -> None:
        super().__init__(cause.code, cause.message, status=cause.status, request_id=cause.request_id)
        self.account_id = account_id
        self.role = role
        self.action = "sts:AssumeRole"

    @property
    def configuration(self) -> bool:
        return True

    def explain(self, resource: str | None = None) -> str:
        why = ROLE_HINTS.get(self.code) or self.message or "AssumeRole failed"
        return (
            f"account {self.account_id}: cannot assume role {self.role} ({why}); deploy "
            f"deploy/member-role.yml in that account trusting this one ({self.code})"
        )


def session_name(label: str | None) -> str:
    """A RoleSessionName for ``label`` (the rollout or request): ``dbupgrade-<label>``, every character
    STS refuses replaced by ``-``, cut to 64 characters. The session shows in the member's ActionTrail.

    >>> session_name("ro-20260101T000000Z"), session_name("JIRA 42/ä"), len(session_name("x" * 100))
    ('dbupgrade-ro-20260101T000000Z', 'dbupgrade-JIRA-42--', 64)
    """
    text = SESSION_PREFIX + SESSION_NAME_ALLOWED.sub("-", label or "request")
    return text[:SESSION_NAME_MAX].ljust(SESSION_NAME_MIN, "-")


def _expires_at(text: str) -> float:
    """Epoch seconds of STS's ``Expiration`` (UTC); an unreadable one counts as expiring at once."""
    try:
        return float(calendar.timegm(time.strptime(text, "%Y-%m-%dT%H:%M:%SZ")))
    except (TypeError, ValueError):
        return 0.0


class MemberCredentials:
    """Credentials per account: the own account's as given, a member's through its role (cached)."""

    def __init__(self, config: Config, cloud: CloudApi) -> None:
        self.config = config
        self.cloud = cloud
        self._cache: dict[tuple[str, str, str, str], tuple[Credentials, float]] = {}
        self._lock = threading.Lock()

    def is_own(self, account_id: str | None) -> bool:
        return account_id is None or account_id == self.config.account_id

    def role_arn(self, account_id: str) -> str:
        return f"acs:ram::{account_id}:role/{self.config.member_role}"

    def credentials(
        self,
        account_id: str | None,
        own: Credentials | None,
        region: str,
        label: str | None,
        deadline: float,
    ) -> Credentials | None:
        """The credentials that act in ``account_id``: ``own`` for the own account, else the member
        role's (assumed with ``own``). Raises ``MemberAccessError`` when the role cannot be assumed,
        ``CloudError`` when STS stays unreachable or throttled."""
        if self.is_own(account_id):
            return own
        assert account_id is not None
        session = session_name(label)
        key = (account_id, self.config.member_role, session, own.access_key_id if own else "")
        with self._lock:
            cached = self._cache.get(key)
        if cached is not None and cached[1] - REFRESH_MARGIN_SECONDS > clock.now():
            return cached[0]
        params = {
            "RoleArn": self.role_arn(account_id),
            "RoleSessionName": session,
            "DurationSeconds": str(DURATION_SECONDS),
        }
        try:
            body = self.cloud.call_with_retries(STS, region, "AssumeRole", params, own, deadline=deadline)
        except CloudError as error:
            if error.transient:
                raise
            raise MemberAccessError(account_id, self.config.member_role, error) from None
        raw = body.get("Credentials") or {}
        assumed = Credentials(
            str(raw.get("AccessKeyId")),
            str(raw.get("AccessKeySecret")),
            raw.get("SecurityToken"),
            account_id=account_id,
        )
        register_secret(assumed.access_key_secret)
        register_secret(assumed.security_token)
        with self._lock:
            self._cache[key] = (assumed, _expires_at(str(raw.get("Expiration"))))
        logger.info("member role assumed", extra={"account_id": account_id, "session": session})
        return assumed


def list_accounts(
    cloud: CloudApi, credentials: Credentials | None, region: str, deadline: float
) -> list[dict[str, Any]]:
    """Every account of the caller's Resource Directory (``{"account_id", "display_name", "status"}``),
    in the directory's order. Raises ``CloudError`` (e.g. NotManagementAccount for a plain member)."""
    accounts: list[dict[str, Any]] = []
    page = 1
    while True:
        params = {"PageNumber": str(page), "PageSize": str(LIST_PAGE_SIZE)}
        body = cloud.call_with_retries(
            RESOURCE_MANAGER, region, "ListAccounts", params, credentials, deadline=deadline
        )
        batch = dig(body, ("Accounts", "Account"))
        accounts.extend(
            {
                "account_id": str(item.get("AccountId")),
                "display_name": item.get("DisplayName"),
                "status": item.get("Status"),
            }
            for item in batch
        )
        if not batch or len(accounts) >= int(body.get("TotalCount") or 0):
            return accounts
        page += 1


def organisation_accounts(upgrader: Any, context: Any = None, region: str | None = None) -> list[str]:
    """Every account of the Resource Directory the own credentials manage (management account or
    delegated administrator), the own one included. Needs the own account's ID (DBUPGRADE_ACCOUNT_ID)
    so its instances are reached without a role; raises ``ConfigError`` without it, ``CloudError``
    when the directory cannot be listed."""
    from dbupgrade.context import adapt_context
    from dbupgrade.errors import ConfigError

    config: Config = upgrader.config
    if config.account_id is None:
        raise ConfigError(
            "DBUPGRADE_ACCOUNT_ID",
            "set it to the account these credentials belong to (the management or delegated one), so its "
            "own instances are reached without a role",
        )
    ctx = adapt_context(context)
    own = upgrader.cloud.credentials(ctx.credentials)
    where = region or config.region or ctx.region or "cn-hangzhou"
    return [a["account_id"] for a in list_accounts(upgrader.cloud, own, where, ctx.deadline)]
