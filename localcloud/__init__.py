"""localcloud: a local Alibaba Cloud for tests, demos and rehearsals.

One HTTP server on 127.0.0.1 answers R-kvstore and Dds (OpenAPI RPC, ACS3 and v1 signatures),
MNS (XML API) and FC 2.0 InvokeFunction, routed by the request itself, as the official clients
see the real services. It never imports ``dbupgrade``: it is the other side of the wire.

Example::

    python -m localcloud --port 9000 --seed localcloud/seeds/default.json
"""

__all__ = ["__version__"]
__version__ = "0.1.0"
