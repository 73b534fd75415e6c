"""Fleet rollouts: a named plan over many targets, released in canary waves under an error budget.

- ``targets``: a manifest (CSV / JSON / YAML) or a fleet selector -> validated targets
- ``plan``: read-only preview (describe APIs only)
- ``Rollouts``: start / advance / resume / cancel / status, state in the store's Redis
- ``advance_all``: what the tracker function calls once per tick

Example::

    upgrader = Upgrader.from_env()
    targets = load_manifest(Path("fleet.csv"))
    spec = RolloutSpec("redis-7", tuple(targets), parse_waves("1,10%,100%", len(targets)), "1,10%,100%",
                       max_errors=3)
    Rollouts(upgrader).start(spec)
"""

from dbupgrade.rollouts.model import RolloutSpec, parse_waves
from dbupgrade.rollouts.plan import plan
from dbupgrade.rollouts.service import RolloutFinished, RolloutNotFound, Rollouts, TargetsOwned, advance_all
from dbupgrade.rollouts.state import RolloutExists, RolloutLocked
from dbupgrade.rollouts.targets import (
    Selection,
    load_manifest,
    select_locations,
    select_targets,
    validate_targets,
)

__all__ = [
    "RolloutExists",
    "RolloutFinished",
    "RolloutLocked",
    "RolloutNotFound",
    "RolloutSpec",
    "Rollouts",
    "TargetsOwned",
    "advance_all",
    "load_manifest",
    "parse_waves",
    "Selection",
    "plan",
    "select_locations",
    "select_targets",
    "validate_targets",
]
