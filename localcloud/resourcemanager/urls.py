"""What the OpenAPI gateway routes to Resource Manager, and to which responses.

- ``api_version``: ``2020-03-31`` (the metadata file ``apimeta/resourcemanager-2020-03-31.json``);
- ``url_bases``: ``resourcemanager.aliyuncs.com``, the one host the SDK calls (alibabacloud_resourcemanager20200331
  2.6.2 ``client.py`` L23-25: ``_endpoint_rule`` "central", no endpoint map); Resource Manager is a global
  service, so the host names no region.
"""

from __future__ import annotations

import re

from localcloud.resourcemanager.responses import ResourceManagerResponse

api_version = "2020-03-31"
url_bases = [re.compile(r"resourcemanager(?:-[a-z]+)?(?:\.(?P<region>[a-z0-9-]+))?\.aliyuncs\.com")]
response_class = ResourceManagerResponse
