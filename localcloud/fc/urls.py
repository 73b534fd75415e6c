"""What the shared server routes to FC, and to which handler.

``url_paths``: FC 2.0's API version opens every path (``/2016-08-15/services/...`` InvokeFunction,
``/2016-08-15/proxy/...`` the HTTP trigger: aliyun-fc2 ``fc2/client.py`` L80 ``api_version``, L129).
"""

from __future__ import annotations

from localcloud.fc.responses import handle

url_paths = ("/2016-08-15/",)
handler = handle
