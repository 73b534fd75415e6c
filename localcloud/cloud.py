"""The state of one running localcloud: clock, accounts, call log, faults and each product's model.

R-kvstore and Dds keep one backend per (account, region) (``localcloud.backends.BackendDict``): a
caller sees only its own account's instances, in the region it calls.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from localcloud.accounts import Accounts
from localcloud.calls import CallLog
from localcloud.clock import Clock
from localcloud.dds.models import DdsBackend
from localcloud.faults import Faults
from localcloud.fc.models import FcBackend
from localcloud.kvstore.models import KvstoreBackend
from localcloud.mns.models import MnsBackend
from localcloud.timers import Timers

DEFAULT_SEED = Path(__file__).parent / "seeds" / "default.json"


class Cloud:
    """Everything the server answers from. Products read the shared clock and record calls.

    Example::

        cloud = Cloud.from_seed_file(DEFAULT_SEED)
        cloud.clock.advance(60)
    """

    def __init__(self, seed: dict[str, Any], root: Path | None = None, state_file: Path | None = None):
        self.seed = seed
        self.root = (root or Path.cwd()).resolve()  # where functions/<name> live, for FC invoke
        self.state_file = state_file
        self.clock = Clock()
        self.calls = CallLog()
        self.faults = Faults(seed.get("faults"), seed.get("rate_limits"), seed.get("published_quotas", False))
        self.accounts = Accounts.from_seed(seed.get("accounts", []))
        self.kvstore = KvstoreBackend.backends(seed, self)
        self.dds = DdsBackend.backends(seed, self)
        self.mns = MnsBackend.from_seed(seed, self)
        self.fc = FcBackend.from_seed(seed, self)
        self.timers = Timers.from_seed(seed, self)  # after fc: a timer names its function
        if state_file is not None and state_file.exists():
            self.restore(json.loads(state_file.read_text()))

    @classmethod
    def from_seed_file(cls, path: Path | str, **kwargs: Any) -> Cloud:
        return cls(json.loads(Path(path).read_text()), **kwargs)

    def snapshot(self) -> dict[str, Any]:
        return {
            "clock_offset": self.clock.offset,
            "kvstore": self.kvstore.snapshot(),
            "dds": self.dds.snapshot(),
            "mns": self.mns.snapshot(),
        }

    def reset(self) -> None:
        """R-kvstore and Dds back to the seed (as of now); the clock, call log and faults stay."""
        self.kvstore.reset()
        self.dds.reset()

    def restore(self, state: dict[str, Any]) -> None:
        self.clock.advance(max(0.0, state.get("clock_offset", 0.0) - self.clock.offset))
        self.kvstore.restore(state.get("kvstore", {}))
        self.dds.restore(state.get("dds", {}))
        self.mns.restore(state.get("mns", {}))

    def save(self) -> None:
        if self.state_file is not None:
            self.state_file.write_text(json.dumps(self.snapshot(), indent=1, sort_keys=True))

    def close(self) -> None:
        self.timers.close()  # first: no firing into a closing FC
        self.mns.close()
        self.fc.close()
        self.save()
