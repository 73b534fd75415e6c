"""What the OpenAPI gateway routes to STS, and to which responses.

- ``api_version``: ``2015-04-01`` (the metadata file ``apimeta/sts-2015-04-01.json``; the SDK
  alibabacloud_sts20150401 sends it as ``x-acs-version``);
- ``url_bases``: ``sts.aliyuncs.com`` (the central endpoint every entry of the SDK's ``_endpoint_map``
  names, alibabacloud_sts20150401 1.2.0 ``client.py`` L24-57) and ``sts.{region}.aliyuncs.com``
  (its ``_endpoint_rule`` is "regional": tea-openapi ``get_endpoint_rules``).
"""

from __future__ import annotations

import re

from localcloud.sts.responses import StsResponse

api_version = "2015-04-01"
url_bases = [re.compile(r"sts(?:-[a-z]+)?(?:\.(?P<region>[a-z0-9-]+))?\.aliyuncs\.com")]
response_class = StsResponse
