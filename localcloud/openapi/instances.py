"""What the R-kvstore and Dds models share: seeded instances per account and region, lookup, listing.

A product model subclasses ``InstanceBackend`` (the state of one account in one region) and declares
only what is its own: its ID and status attributes, its statuses, its not-found error, its seed
defaults, and the rules of its versions and upgrade. ``InstanceBackend.backends(seed, cloud)`` is the
product's ``BackendDict``: one backend per ``(account_id, region)``, each made on first use from the
seed entries of that account (seed key ``AccountId``, default the seed's first account) and region
(``RegionId``). Parsing requests and rendering bodies is the product's ``responses.py``.
``InstanceBackends.served_regions()`` is what the product's DescribeRegions answers: the seed's
``regions`` (every product serves them), else every region the product's seed entries are in.

Example::

    class DdsBackend(InstanceBackend):
        seed_key, id_param, status_key = "mongodb", "DBInstanceId", "DBInstanceStatus"
        ...

    backends = DdsBackend.backends(seed, cloud)
    backends.get("1234567890123456", "cn-hangzhou").get_instance("dds-bp1...")
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, ClassVar, TypeVar

from localcloud.backends import BackendDict
from localcloud.clock import Clock
from localcloud.openapi.errors import OpenApiError
from localcloud.openapi.lifecycle import (
    BACKUP_TASK,
    BackupJob,
    Instance,
    failed_status_for,
    matches_tags,
    minute_of_day,
    running_task_for,
    seeded_backups_for,
)

# Seed keys that drive localcloud only, in every product: never rendered as API attributes.
# ``AccountId``: the account owning the instance (default: the seed's first account).
# ``AutomaticBackup`` ("HH:MMZ": a daily automatic backup then), ``Backups`` (finished sets),
# ``BackupSeconds`` (how long a backup job runs), ``FailBackup`` (its jobs end failed): lifecycle.py.
LOCAL_ONLY_SEED_KEYS = (
    "AccountId", "AutomaticBackup", "Backups", "BackupSeconds", "FailBackup", "FailUpgrade",
    "RunningTask", "RunningTaskSeconds", "Tags",
)  # fmt: skip

_Backend = TypeVar("_Backend", bound="InstanceBackend")

# assumption: the zone of a served region no seeded instance is in; the products' seed defaults put an
# instance in "<region>-h" (kvstore/models.py, dds/models.py), the zone of both metadata examples
# (DescribeRegions, R-kvstore and Dds: cn-hangzhou-h).
DEFAULT_ZONE_SUFFIX = "-h"


class InstanceBackend:
    """The instances of one product, one account, one region: their state and the product's rules."""

    product: ClassVar[str]  # the name used in calls, faults and Recommend links
    seed_key: ClassVar[str]  # the seed's list of this product's instances
    id_param: ClassVar[str]  # the instance ID: attribute, seed key and request parameter
    status_key: ClassVar[str]  # the status attribute, also the listing's status filter parameter
    ready_status: ClassVar[str]
    upgrading_status: ClassVar[str]
    failed_status: ClassVar[str]  # what a seed's ``FailUpgrade: true`` ends an upgrade in
    not_found: ClassVar[type[OpenApiError]]
    busy: ClassVar[type[OpenApiError]]  # another task runs or an upgrade is booked
    not_ready: ClassVar[type[OpenApiError]]  # the instance's status takes no new task
    backup_exists: ClassVar[type[OpenApiError]]  # CreateBackup while a backup job runs
    local_only_seed_keys: ClassVar[tuple[str, ...]] = LOCAL_ONLY_SEED_KEYS  # a product may add its own

    def __init__(
        self,
        account_id: str,
        region: str,
        entries: list[dict[str, Any]],
        clock: Clock,
        upgrade_seconds: float,
        seeded_at: float,
        backup_seconds: float = 5.0,
    ) -> None:
        """``entries``: the seed's instances of this account and region; ``seeded_at``: the emulated
        moment the seed describes (a seeded running task ends ``RunningTaskSeconds`` after it)."""
        self.account_id = account_id
        self.region = region
        self.clock = clock
        self.upgrade_seconds = upgrade_seconds
        self.instances: dict[str, Instance] = {}
        for entry in entries:
            seconds = float(entry.get("BackupSeconds", backup_seconds))
            self.instances[entry[self.id_param]] = Instance(
                attrs=self.seed_attrs(entry),
                tags={str(k): str(v) for k, v in (entry.get("Tags") or {}).items()},
                status_key=self.status_key,
                ready_status=self.ready_status,
                upgrading_status=self.upgrading_status,
                failed_status=failed_status_for(entry, self.failed_status),
                task=running_task_for(entry, seeded_at),
                seeded_backups=seeded_backups_for(entry, seconds),
                automatic_backup=entry.get("AutomaticBackup"),
                backup_seconds=seconds,
                fail_backup=bool(entry.get("FailBackup")),
            )

    @classmethod
    def backends(cls: type[_Backend], seed: dict[str, Any], cloud: Any) -> InstanceBackends[_Backend]:
        """This product's backends for ``seed``: every entry checked now, each backend made on first use."""
        accounts = seed.get("accounts") or []
        default_account = str(accounts[0]["account_id"]) if accounts else ""
        return InstanceBackends(
            cls,
            seed.get(cls.seed_key, []),
            default_account,
            cloud.clock,
            float(seed.get("upgrade_seconds", 2)),
            float(seed.get("backup_seconds", 5)),
            regions=[str(region) for region in seed.get("regions") or []],
        )

    # --- what each product defines --------------------------------------------------------------

    @staticmethod
    def defaults(entry: dict[str, Any]) -> dict[str, Any]:
        """A plausible full attribute set for a seed entry (the real API's keys)."""
        raise NotImplementedError

    @classmethod
    def seed_attrs(cls, entry: dict[str, Any]) -> dict[str, Any]:
        """The defaults overlaid with the seed entry's API keys (seed values win); ValueError if invalid."""
        attrs = cls.defaults(entry)
        attrs.update({k: v for k, v in entry.items() if k not in cls.local_only_seed_keys})
        attrs["EngineVersion"] = str(attrs["EngineVersion"])
        minute_of_day(attrs["MaintainStartTime"])
        minute_of_day(attrs["MaintainEndTime"])
        if entry.get("AutomaticBackup"):
            minute_of_day(str(entry["AutomaticBackup"]))
        seeded_backups_for(entry, 0)
        return attrs

    # --- state ----------------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        return {"instances": {iid: inst.snapshot() for iid, inst in self.instances.items()}}

    def restore(self, state: dict[str, Any]) -> None:
        for iid, saved in state.get("instances", {}).items():
            if iid in self.instances:
                self.instances[iid].restore(saved)

    # --- shared rules ---------------------------------------------------------------------------

    def list_instances(
        self,
        ids: set[str],
        status: str | None,
        attrs: dict[str, str],
        tags: Iterable[tuple[str, str | None]],
    ) -> list[Instance]:
        """The instances matching every given filter (empty ids: any), in seed order, settled to now."""
        now = self.clock.now()
        selected = []
        for iid, inst in self.instances.items():
            if ids and iid not in ids:
                continue  # before settling: a list naming 30 IDs settles 30 instances, not the region
            inst.settle(now)
            if status and inst.status != status:
                continue
            if any(inst.attrs[name] != value for name, value in attrs.items()):
                continue
            if not matches_tags(inst.tags, tags):
                continue
            selected.append(inst)
        return selected

    def find_instance(self, instance_id: str) -> Instance | None:
        """The instance of this account and region with that ID, settled to now; None if it has none."""
        inst = self.instances.get(instance_id)
        if inst is not None:
            inst.settle(self.clock.now())
        return inst

    def create_backup(self, instance_id: str) -> BackupJob:
        """Start a backup job of the instance (CreateBackup): refused while another backup job runs
        (the product's ``backup_exists``), while an upgrade runs or another task does (``busy``), or
        when the instance is not ready (``not_ready``). Assumption: an upgrade booked for a later
        window does not stop a backup now (no source says; a backup before a booked upgrade is the
        order a careful operator wants)."""
        inst = self.get_instance(instance_id)
        now = self.clock.now()
        inst.settle(now)
        if inst.task is not None:
            if inst.task.name == BACKUP_TASK:
                raise self.backup_exists()
            raise self.busy(f"{self.busy.default_message} (task {inst.task.name} running)")
        pending = inst.pending
        if pending is not None and now >= pending.starts_at:
            raise self.busy(f"{self.busy.default_message} (upgrade running)")
        if inst.status != self.ready_status:
            raise self.not_ready()
        return inst.start_backup(now)

    def get_instance(self, instance_id: str) -> Instance:
        """The instance with that ID, settled to now; the product's not-found error if it has none."""
        inst = self.find_instance(instance_id)
        if inst is None:
            raise self.not_found()
        return inst


class InstanceBackends(BackendDict[_Backend]):
    """A product's ``BackendDict`` made from the seed, with its ``--state`` snapshot and restore."""

    def __init__(
        self,
        backend_cls: type[_Backend],
        entries: list[dict[str, Any]],
        default_account: str,
        clock: Clock,
        upgrade_seconds: float,
        backup_seconds: float = 5.0,
        regions: list[str] | None = None,
    ) -> None:
        """``regions``: the regions the product serves (the seed's ``regions``); none given: the
        regions its seed entries are in."""
        self.backend_cls = backend_cls
        self.clock = clock
        self.upgrade_seconds = upgrade_seconds
        self.backup_seconds = backup_seconds
        self.seeded_at = clock.now()
        self._entries: dict[tuple[str, str], list[dict[str, Any]]] = {}
        self._zones: dict[str, list[str]] = {}
        for entry in entries:
            attrs = backend_cls.seed_attrs(entry)  # a seed that contradicts itself fails here, at start
            key = (str(entry.get("AccountId") or default_account), str(attrs["RegionId"]))
            self._entries.setdefault(key, []).append(entry)
            zones = self._zones.setdefault(key[1], [])
            if str(attrs["ZoneId"]) not in zones:
                zones.append(str(attrs["ZoneId"]))
        self._regions = regions or sorted(self._zones)
        super().__init__(self._make, self._entries)

    def served_regions(self) -> list[tuple[str, list[str]]]:
        """``(region, zones)`` of every region the product serves, in the seed's order (else sorted);
        a region's zones are its seeded instances' (whatever account owns them)."""
        return [
            (region, self._zones.get(region) or [region + DEFAULT_ZONE_SUFFIX]) for region in self._regions
        ]

    def _make(self, account_id: str, region: str) -> _Backend:
        entries = self._entries.get((account_id, region), [])
        return self.backend_cls(
            account_id, region, entries, self.clock, self.upgrade_seconds, self.seeded_at, self.backup_seconds
        )

    def reset(self) -> None:
        """Back to the seed, as of now: a seeded running task starts over."""
        self.seeded_at = self.clock.now()
        super().reset()

    def snapshot(self) -> dict[str, Any]:
        """``{account: {region: backend snapshot}}`` for every seeded or used backend."""
        state: dict[str, Any] = {}
        for account, region in self.keys():
            state.setdefault(account, {})[region] = self.get(account, region).snapshot()
        return state

    def restore(self, state: dict[str, Any]) -> None:
        for account, regions in state.items():
            for region, saved in regions.items():
                self.get(account, region).restore(saved)
