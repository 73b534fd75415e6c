"""Each product's state, one backend per (account, region), as moto's ``BackendDict`` keeps it.

A caller sees the backend of its own account (the account of the credential that signed the call,
``localcloud.accounts``) in the region it calls: another account's resources are not there to find.
A backend is made on first use by the product's factory, from the seed entries of its account and
region (none: an empty backend); ``reset()`` drops them all, so the next use makes each afresh from
the seed.

Example::

    backends = BackendDict(lambda account, region: KvstoreBackend(...), seeded=[("1234", "cn-hangzhou")])
    backends.get("1234", "cn-hangzhou").instances     # made now, from the seed
    backends.reset()                                   # the next get starts from the seed again
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Generic, TypeVar

Backend = TypeVar("Backend")


class BackendDict(Generic[Backend]):
    """One product's backends keyed ``(account_id, region)``, each made lazily by ``factory``."""

    def __init__(self, factory: Callable[[str, str], Backend], seeded: Iterable[tuple[str, str]]) -> None:
        self._factory = factory
        # The keys the seed fills, in seed order: listings across regions follow it.
        self._seeded = list(dict.fromkeys(seeded))
        self._backends: dict[tuple[str, str], Backend] = {}

    def get(self, account_id: str, region: str) -> Backend:
        """The backend of ``account_id`` in ``region``, made from the seed on first use."""
        key = (account_id, region)
        backend = self._backends.get(key)
        if backend is None:
            backend = self._backends[key] = self._factory(account_id, region)
        return backend

    def keys(self) -> list[tuple[str, str]]:
        """Every key the seed fills or a call has used, seeded ones first."""
        return list(dict.fromkeys([*self._seeded, *self._backends]))

    def of_account(self, account_id: str) -> list[Backend]:
        """The backends of every region ``account_id`` has (seeded or used), in ``keys()`` order."""
        return [self.get(account, region) for account, region in self.keys() if account == account_id]

    def reset(self) -> None:
        """Forget every backend: each is made afresh from the seed when next used."""
        self._backends.clear()
