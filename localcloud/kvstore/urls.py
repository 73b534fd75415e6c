"""What the OpenAPI gateway routes to R-kvstore, and to which responses.

- ``api_version``: a request's ``x-acs-version`` header (ACS3) or ``Version`` parameter (v1)
  (research/alibaba-apis.md §1, §3; the metadata file ``apimeta/r-kvstore-2015-01-01.json``);
- ``url_bases``: the hosts the official client calls, whose ``region`` group is the region called
  when a request names no RegionId: ``r-kvstore.aliyuncs.com`` (the central endpoint of the SDK's
  ``_endpoint_map``, alibabacloud_r_kvstore20150101 7.0.0 ``client.py`` L24) and
  ``r-kvstore[-network].{region}.aliyuncs.com`` (tea-openapi ``utils.py`` ``get_endpoint_rules``,
  the "regional" rule the client names).
"""

from __future__ import annotations

import re

from localcloud.kvstore.responses import KvstoreResponse

api_version = "2015-01-01"
url_bases = [re.compile(r"r-kvstore(?:-[a-z]+)?(?:\.(?P<region>[a-z0-9-]+))?\.aliyuncs\.com")]
response_class = KvstoreResponse
