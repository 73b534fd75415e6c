"""The resource directory of one localcloud: its management account, delegated administrators and members.

Seed shape (every key but ``management_account`` and ``account_id`` optional)::

    "resource_directory": {
        "management_account": "1111222233334444",
        "delegated_administrators": ["<member account id>"],
        "resource_directory_id": "rd-...", "root_folder_id": "r-...",
        "accounts": [{"account_id": "...", "display_name": "prod", "type": "ResourceAccount",
                      "status": "CreateSuccess", "join_method": "created", "folder_id": "fd-...",
                      "join_time": "...", "modify_time": "...", "tags": {"env": "prod"}}]}

``accounts`` is the whole membership ListAccounts answers, in seed order; include the management
account there if it should be listed. Field meanings and values: the ListAccounts metadata
(dew-serverless/acs-sdk-php data/resourcemanager/2020-03-31/api-docs.json): ``Type`` CloudAccount |
ResourceAccount; ``JoinMethod`` invited | created; ``Status`` CreateSuccess, InviteSuccess, Promote*.
A member left without ``type`` is a ResourceAccount, created (CreateSuccess); a CloudAccount is
invited (InviteSuccess): the pairs the metadata's enums describe.

Rules: only the management account and delegated administrators may list (metadata ``description``:
"the management account and trusted services' delegated administrator accounts can call this API");
an account in no directory gets EntityNotExists.ResourceDirectory; another member, the assumed
``NotManagementAccount``. PageNumber starts at 1 (default 1); PageSize 1..100, default 10; Tags are
returned only with ``IncludeTags=true`` (metadata parameter descriptions).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from localcloud.openapi.lifecycle import matches_tags, render_tags
from localcloud.resourcemanager import exceptions

# Directory and root folder IDs when the seed names none, shaped as the metadata's examples
# ("rd-3G****", "r-Wm****"); any value would do.
DEFAULT_DIRECTORY_ID = "rd-localcloud"
DEFAULT_ROOT_FOLDER_ID = "r-localcloud"
# assumption: when the seed gives no times, members joined at localcloud's fixed epoch below.
DEFAULT_JOIN_TIME = "2024-01-01T00:00:00.000Z"
DEFAULT_JOIN = {"ResourceAccount": ("created", "CreateSuccess"), "CloudAccount": ("invited", "InviteSuccess")}


@dataclass(frozen=True)
class Member:
    account_id: str
    fields: dict[str, Any]  # the ListAccounts Account fields, Tags aside
    tags: dict[str, str]

    def render(self, include_tags: bool) -> dict[str, Any]:
        return {**self.fields, "Tags": render_tags(self.tags)} if include_tags else dict(self.fields)


class ResourceDirectory:
    """One resource directory, or none (``management_account`` None): what ListAccounts reads."""

    def __init__(
        self, management_account: str | None, delegated: frozenset[str], members: list[Member]
    ) -> None:
        self.management_account = management_account
        self.delegated = delegated
        self.members = members
        self._member_ids = frozenset(m.account_id for m in members)

    @classmethod
    def from_seed(cls, seed: dict[str, Any]) -> ResourceDirectory:
        raw = seed.get("resource_directory")
        if not raw:
            return cls(None, frozenset(), [])
        directory_id = raw.get("resource_directory_id", DEFAULT_DIRECTORY_ID)
        root = raw.get("root_folder_id", DEFAULT_ROOT_FOLDER_ID)
        members = []
        for entry in raw.get("accounts") or []:
            account_id = str(entry["account_id"])
            kind = entry.get("type", "ResourceAccount")
            join_method, status = DEFAULT_JOIN.get(kind, DEFAULT_JOIN["ResourceAccount"])
            folder = entry.get("folder_id", root)
            path = [directory_id, root] + ([folder] if folder != root else []) + [account_id]
            join_time = entry.get("join_time", DEFAULT_JOIN_TIME)
            fields = {
                "AccountId": account_id,
                "DisplayName": entry.get("display_name", account_id),
                "Type": kind,
                "Status": entry.get("status", status),
                "JoinMethod": entry.get("join_method", join_method),
                "FolderId": folder,
                "ResourceDirectoryId": directory_id,
                "ResourceDirectoryPath": "/".join(path),
                "JoinTime": join_time,
                "ModifyTime": entry.get("modify_time", join_time),
            }
            members.append(
                Member(account_id, fields, {str(k): str(v) for k, v in (entry.get("tags") or {}).items()})
            )
        delegated = frozenset(str(a) for a in raw.get("delegated_administrators") or [])
        return cls(str(raw["management_account"]), delegated, members)

    def check_lister(self, account_id: str) -> None:
        """Refuse ``account_id`` unless it may list the directory's accounts."""
        if account_id == self.management_account or account_id in self.delegated:
            return
        if self.management_account is None or account_id not in self._member_ids:
            raise exceptions.ResourceDirectoryNotFound()
        raise exceptions.NotManagementAccount()

    def list_accounts(
        self,
        caller_account: str,
        page_number: int,
        page_size: int,
        include_tags: bool,
        tag_filters: list[tuple[str, str | None]],
    ) -> dict[str, Any]:
        """ListAccounts' body (without RequestId) for one page."""
        self.check_lister(caller_account)
        # assumption: several Tag filters must all match (AND), as R-kvstore's and Dds's Tag.N do in
        # localcloud; the ListAccounts metadata says only "filter by tags".
        found = [m for m in self.members if matches_tags(m.tags, tag_filters)]
        start = (page_number - 1) * page_size
        return {
            "TotalCount": len(found),
            "PageNumber": page_number,
            "PageSize": page_size,
            "Accounts": {"Account": [m.render(include_tags) for m in found[start : start + page_size]]},
        }
