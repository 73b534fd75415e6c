"""localcloud mns: state and rules (placeholder until the model lands)."""

from __future__ import annotations

from typing import Any


class MnsBackend:
    @classmethod
    def from_seed(cls, seed: dict[str, Any], cloud: Any) -> MnsBackend:
        return cls()

    def snapshot(self) -> dict[str, Any]:
        return {}

    def restore(self, state: dict[str, Any]) -> None:
        pass

    def close(self) -> None:
        pass
