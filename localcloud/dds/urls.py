"""What the OpenAPI gateway routes to Dds, and to which responses.

- ``api_version``: a request's ``x-acs-version`` header (ACS3) or ``Version`` parameter (v1)
  (research/alibaba-apis.md §1, §4; the metadata file ``apimeta/dds-2015-12-01.json``);
- ``url_bases``: the hosts the official client calls, whose ``region`` group is the region called
  when a request names no RegionId: ``mongodb.aliyuncs.com`` and ``mongodb.{region}.aliyuncs.com``
  (the SDK's ``_endpoint_map``, alibabacloud_dds20151201 ``client.py`` L24-97) and, for regions
  outside that map, ``dds[-network].{region}.aliyuncs.com`` (tea-openapi ``utils.py``
  ``get_endpoint_rules``, the "regional" rule of product id ``dds``).
"""

from __future__ import annotations

import re

from localcloud.dds.responses import DdsResponse

api_version = "2015-12-01"
url_bases = [re.compile(r"(?:mongodb|dds)(?:-[a-z]+)?(?:\.(?P<region>[a-z0-9-]+))?\.aliyuncs\.com")]
response_class = DdsResponse
