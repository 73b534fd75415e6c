"""Resource Manager's protocol side: ListAccounts' parameters into a ``ResourceDirectory`` call.

The body keys are the official SDK model's (alibabacloud_resourcemanager20200331
``ListAccountsResponseBody``); the gateway cuts them to the metadata's response fields.
"""

from __future__ import annotations

from typing import Any

from localcloud.openapi.errors import InvalidActionNotFound, page
from localcloud.openapi.handler import CallContext
from localcloud.openapi.lifecycle import tag_filters
from localcloud.resourcemanager.models import ResourceDirectory

# ListAccounts: "PageSize: 1~100, default 10" (metadata parameter description).
DEFAULT_PAGE_SIZE = 10
MAX_PAGE_SIZE = 100


class ResourceManagerResponse:
    product = "resourcemanager"
    actions = frozenset({"ListAccounts"})

    def __init__(self, cloud: Any) -> None:
        self.directory = ResourceDirectory.from_seed(cloud.seed)

    def call(self, action: str, params: dict[str, str], ctx: CallContext) -> dict[str, Any]:
        if action != "ListAccounts":
            raise InvalidActionNotFound()
        number, size = page(params, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
        include_tags = params.get("IncludeTags", "").lower() == "true"
        return self.directory.list_accounts(ctx.account_id, number, size, include_tags, tag_filters(params))
