"""What the shared server routes to MNS, and to which handler.

``url_paths``: the resource paths of the MNS XML API (2015-06-06), ``/topics/...`` and
``/queues/...`` (research/alibaba-apis.md §5; each path's action: the route table in
``responses.py``, which also reads the region from the endpoint host).
"""

from __future__ import annotations

from localcloud.mns.responses import handle

url_paths = ("/topics", "/queues")
handler = handle
