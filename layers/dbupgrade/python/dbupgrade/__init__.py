"""dbupgrade: major-version upgrades of ApsaraDB for Redis and MongoDB on Function Compute.

The FC layer's core library (``/opt/python/dbupgrade`` in FC). Functions stay thin: they parse
their trigger's event into ``UpgradeRequest`` objects, call ``Upgrader.run`` and shape the reply.

Example::

    from dbupgrade.model import UpgradeRequest
    from dbupgrade.usecase import Upgrader

    upgrader = Upgrader.from_env()          # once per instance, reused while warm
    outcome = upgrader.run(UpgradeRequest("r-bp1abc", "7.0", source="cli"), context)
    print(outcome.status, outcome.request_id)
"""

__version__ = "0.1.0"
