"""Reading many instances at once: the list APIs instead of one describe per instance (issue #15).

``read_instances`` answers "status, version, type and class of these instances" for a whole fleet
with as few calls as the APIs allow, for ``rollout plan`` and the tracker alike:

- **Redis**: ``DescribeInstances`` with ``InstanceIds``, a comma-separated list of at most
  ``LIST_BY_IDS`` IDs ("如需传入多个实例ID时，使用英文逗号（,）分隔实例ID，最多一个请求传入 30 个实例ID",
  API metadata r-kvstore 2015-01-01, DescribeInstances ``InstanceIds``), 50 per page at most
  (``PageSize`` "最大值为 50", same metadata).
- **MongoDB**: ``DescribeDBInstances``'s ``DBInstanceId`` is documented as one ID ("实例ID", API
  metadata dds 2015-12-01; alibabacloud.com/help/ja/mongodb/api-describedbinstances), so nothing says
  it takes a list. Many MongoDB instances of one region are read by paging the region's listing
  (100 a page, ``PageSize`` enum 30/50/100), once per list variant (replica sets, then sharded
  clusters: ``Engine.list_variants``), and picking the wanted ones.
- A group too small to be worth a list (``BATCH_MIN``), and every instance a list did not return
  (gone, another region, or a kind the listing leaves out), get the engine's own describe, a few at
  a time: the list never decides "not found" on its own.

A list item carries fewer fields than the describe (no ``MaintainStartTime`` / ``MaintainEndTime``,
for one): ``Read.full`` says which it is, and a caller that needs the describe's fields asks for
it (``describe_one``).

The readiness report's two task reads are list APIs too, so a plan asks them per group, not per
instance (``read_live_tasks``, ``read_booked_events``): each answers, per wanted instance, the body
the per-instance call would have carried (``{"Items": [...]}``: only that instance's items), or the
``CloudError`` that kept its group from being read - the caller raises it, and the check it feeds
fails closed.

- ``DescribeHistoryTasks``: ``InstanceId`` takes up to ``TASKS_BY_IDS`` IDs ("如需查询多个实例请用
  英文逗号（,）分隔，最多支持30个") and ``Status`` several statuses ("如需选择多个状态请用英文逗号
  分隔"), ``PageSize`` 10~100 (API metadata, both products).
- ``DescribeActiveOperationTasks``: ``InsName`` is optional (API metadata, both products: no
  ``required``), so one listing of the region answers for all its instances, ``PageSize`` at most
  100 (same metadata: "取值： **30、50、100**").
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeAlias

from dbupgrade.cloudapi import CloudApi, CloudError
from dbupgrade.context import Credentials
from dbupgrade.engines import Engine, dig

# The list call's IDs filter and how many IDs it takes: R-kvstore DescribeInstances InstanceIds, at
# most 30 (API metadata, quoted above). Dds has none documented.
LIST_BY_IDS: Mapping[str, tuple[str, int]] = {"redis": ("InstanceIds", 30)}
# Assumption: fewer wanted instances than this in one (engine, region) are described one by one.
# For Redis a list of 2 already saves a call; a MongoDB region listing costs at least one page per
# list variant whatever the fleet's size, and no source gives a region's size before the first page.
BATCH_MIN: Mapping[str, int] = {"redis": 2, "mongodb": 8}
DESCRIBE_CONCURRENCY = 8  # per-instance describes in flight at once (the rate limiter paces them)
TASKS_BY_IDS = 30  # DescribeHistoryTasks InstanceId: at most 30 IDs (API metadata, quoted above)
TASKS_PAGE_SIZE = 100  # DescribeHistoryTasks PageSize: 10~100 (API metadata)
EVENTS_PAGE_SIZE = 100  # DescribeActiveOperationTasks PageSize: 30/50/100 (API metadata, Dds)
# Assumption: fewer wanted instances than this in one (engine, region) ask their O&M events one by
# one; a region's listing costs at least one page whatever the fleet's size (no source gives how
# many events a region has before the first page), as a MongoDB region listing does (BATCH_MIN).
EVENTS_BATCH_MIN = 8

# Per wanted instance: the body its own call would have returned, or why its group was not read.
Answer: TypeAlias = "dict[str, Any] | CloudError"


@dataclass(frozen=True)
class Read:
    """What one instance looks like now: its attributes (None: not found), or why it could not be read."""

    instance_id: str
    attributes: dict[str, Any] | None = None
    request_id: str | None = None
    error: CloudError | None = None
    full: bool = True  # the describe's attributes; False: a list item's (fewer fields)

    @property
    def found(self) -> bool:
        return self.error is None and self.attributes is not None


def read_instances(
    cloud: CloudApi,
    engine: Engine,
    region: str,
    instance_ids: Iterable[str],
    credentials: Credentials | None,
    *,
    deadline: float,
) -> dict[str, Read]:
    """instance id -> ``Read`` for every one of ``instance_ids`` (of ``engine``, in ``region``)."""
    wanted = list(dict.fromkeys(instance_ids))
    reads: dict[str, Read] = {}
    if len(wanted) >= BATCH_MIN.get(engine.name, len(wanted) + 1):
        reads.update(_listed(cloud, engine, region, wanted, credentials, deadline))
    rest = [i for i in wanted if i not in reads]
    if rest:
        with ThreadPoolExecutor(min(DESCRIBE_CONCURRENCY, len(rest))) as pool:
            for read in pool.map(
                lambda i: describe_one(cloud, engine, region, i, credentials, deadline=deadline), rest
            ):
                reads[read.instance_id] = read
    return reads


def describe_one(
    cloud: CloudApi,
    engine: Engine,
    region: str,
    instance_id: str,
    credentials: Credentials | None,
    *,
    deadline: float,
) -> Read:
    """The engine's describe of one instance (all its attributes); a not-found is ``attributes=None``."""
    try:
        body = cloud.call_with_retries(
            engine,
            region,
            engine.describe_action,
            {engine.id_param: instance_id, **engine.describe_extra},
            credentials,
            deadline=deadline,
        )
    except CloudError as error:
        if error.instance_not_found:
            return Read(instance_id, None, error.request_id)
        return Read(instance_id, error=error)
    items = dig(body, engine.describe_path)
    return Read(instance_id, items[0] if items else None, body.get("RequestId"))


def _listed(
    cloud: CloudApi,
    engine: Engine,
    region: str,
    wanted: list[str],
    credentials: Credentials | None,
    deadline: float,
) -> dict[str, Read]:
    """The wanted instances a list call returned (a failed list call: a ``Read`` with its error each)."""
    want = set(wanted)
    reads: dict[str, Read] = {}
    by_ids = LIST_BY_IDS.get(engine.name)
    try:
        if by_ids is not None:
            ids_param, per_call = by_ids
            for start in range(0, len(wanted), per_call):
                chunk = wanted[start : start + per_call]
                params = {ids_param: ",".join(chunk), "PageSize": str(engine.list_page_size)}
                _collect(cloud, engine, region, params, credentials, deadline, want, reads)
        else:
            for variant in engine.list_variants:
                params = {"PageSize": str(engine.list_page_size), **variant}
                _collect(cloud, engine, region, params, credentials, deadline, want, reads)
                if len(reads) == len(want):
                    break  # every wanted one found: the other variants' pages cannot add any
    except CloudError as error:
        return {i: reads.get(i) or Read(i, error=error) for i in wanted}
    return reads


def _collect(
    cloud: CloudApi,
    engine: Engine,
    region: str,
    params: dict[str, str],
    credentials: Credentials | None,
    deadline: float,
    want: set[str],
    reads: dict[str, Read],
) -> None:
    """Every page of one list call; the wanted items go into ``reads``."""
    page, seen = 1, 0
    while True:
        body = cloud.call_with_retries(
            engine,
            region,
            engine.list_action,
            {**params, "PageNumber": str(page)},
            credentials,
            deadline=deadline,
        )
        items = dig(body, engine.list_path)
        seen += len(items)
        for item in items:
            instance_id = str(item.get(engine.id_key))
            if instance_id in want:
                reads[instance_id] = Read(instance_id, dict(item), body.get("RequestId"), full=False)
        total = int(body.get("TotalCount") or 0)
        if not items or seen >= total or len(items) < int(params["PageSize"]):
            return
        page += 1


def read_live_tasks(
    cloud: CloudApi,
    engine: Engine,
    region: str,
    instance_ids: Iterable[str],
    credentials: Credentials | None,
    *,
    statuses: Iterable[str],
    since: str,
    until: str,
    deadline: float,
) -> dict[str, Answer]:
    """Each instance's ``DescribeHistoryTasks`` items in ``statuses`` started between ``since`` and
    ``until``, ``TASKS_BY_IDS`` instances a call: instance id -> ``{"Items": [...]}`` or the error."""
    wanted = list(dict.fromkeys(instance_ids))
    answers: dict[str, Answer] = {}
    for start in range(0, len(wanted), TASKS_BY_IDS):
        chunk = wanted[start : start + TASKS_BY_IDS]
        params = {
            "InstanceId": ",".join(chunk),
            "Status": ",".join(sorted(statuses)),
            "FromStartTime": since,
            "ToStartTime": until,
            "PageSize": str(TASKS_PAGE_SIZE),
        }
        answers.update(
            _per_instance(
                cloud,
                engine,
                region,
                engine.history_action,
                params,
                "InstanceId",
                chunk,
                credentials,
                deadline,
            )
        )
    return answers


def read_booked_events(
    cloud: CloudApi,
    engine: Engine,
    region: str,
    instance_ids: Iterable[str],
    credentials: Credentials | None,
    *,
    deadline: float,
) -> dict[str, Answer]:
    """Each instance's ``DescribeActiveOperationTasks`` items from one listing of the region (empty
    when fewer than ``EVENTS_BATCH_MIN`` are wanted: their own calls are cheaper)."""
    wanted = list(dict.fromkeys(instance_ids))
    if len(wanted) < EVENTS_BATCH_MIN:
        return {}
    params = {"Region": region, "PageSize": str(EVENTS_PAGE_SIZE)}
    return _per_instance(
        cloud, engine, region, engine.operations_action, params, "InsName", wanted, credentials, deadline
    )


def _per_instance(
    cloud: CloudApi,
    engine: Engine,
    region: str,
    action: str,
    params: dict[str, str],
    id_key: str,
    wanted: list[str],
    credentials: Credentials | None,
    deadline: float,
) -> dict[str, Answer]:
    """Every page of one ``Items`` listing, split per wanted instance by ``id_key``."""
    items: dict[str, list[dict[str, Any]]] = {i: [] for i in wanted}
    page = 1
    try:
        while True:
            body = cloud.call_with_retries(
                engine, region, action, {**params, "PageNumber": str(page)}, credentials, deadline=deadline
            )
            listed = body.get("Items")
            if isinstance(listed, Mapping):  # some gateways wrap lists once more
                listed = next(iter(listed.values()), [])
            listed = [item for item in listed or [] if isinstance(item, Mapping)]
            for item in listed:
                instance_id = str(item.get(id_key))
                if instance_id in items:
                    items[instance_id].append(dict(item))
            if len(listed) < int(params["PageSize"]):
                break
            page += 1
    except CloudError as error:
        return dict.fromkeys(wanted, error)
    request_id = body.get("RequestId")
    return {i: {"Items": found, "RequestId": request_id} for i, found in items.items()}
