"""Contract: localcloud's R-kvstore and Dds gateway follows the official API metadata.

Through the official clients (alibabacloud-r-kvstore20150101, alibabacloud-dds20151201): an unknown
action, a missing required parameter, a value of the wrong type and a value outside the documented
enum or range get the gateway's error; unknown parameters pass; the documented defaults reach the
model (the default Dds listing holds no sharded cluster, as the real one); every response of the
implemented actions keeps each key through the SDK's response model; and the models render only
fields the metadata defines, or the named exceptions below.
"""

from __future__ import annotations

from typing import Any

import pytest
from alibabacloud_dds20151201 import models as dm
from alibabacloud_dds20151201.client import Client as DdsClient
from alibabacloud_r_kvstore20150101 import models as km
from alibabacloud_r_kvstore20150101.client import Client as KvstoreClient
from alibabacloud_tea_openapi.exceptions import ClientException

from localcloud import apimeta
from localcloud.cloud import Cloud
from localcloud.dds.responses import DdsResponse
from localcloud.kvstore.responses import KvstoreResponse
from localcloud.openapi.handler import CallContext
from tests.conftest import ACCOUNT_ID, AK_ID, ROOT, TEST_ACCOUNT
from tests.contract.helpers import call_api, openapi_config, refused

DDS_VERSION = "2015-12-01"
SEED: dict[str, Any] = {
    "accounts": [TEST_ACCOUNT],  # the instances' owner: the models are called as this account below
    "redis": [
        {"InstanceId": "r-bp1meta000000005", "RegionId": "cn-hangzhou", "EngineVersion": "5.0",
         "InstanceStatus": "Normal", "Tags": {"env": "prod"}},
        {"InstanceId": "r-bp1meta000000006", "RegionId": "cn-hangzhou", "EngineVersion": "6.0",
         "InstanceStatus": "Normal"},
    ],
    "mongodb": [
        {"DBInstanceId": "dds-bp1metareplica1", "RegionId": "cn-hangzhou", "EngineVersion": "4.4",
         "DBInstanceStatus": "Running", "DBInstanceType": "replicate", "Tags": {"env": "prod"}},
        {"DBInstanceId": "dds-bp1metasharded1", "RegionId": "cn-hangzhou", "EngineVersion": "5.0",
         "DBInstanceStatus": "Running", "DBInstanceType": "sharding"},
    ],
    "upgrade_seconds": 2,
}  # fmt: skip
# Every seeded instance has a fresh automatic backup, and one of each books an upgrade for its window,
# so the backup, history and O&M-event actions below render non-empty bodies.
for _entry in (*SEED["redis"], *SEED["mongodb"]):
    _entry["AutomaticBackup"] = "00:00Z"
REDIS_IDS = [i["InstanceId"] for i in SEED["redis"]]
MONGO_IDS = [i["DBInstanceId"] for i in SEED["mongodb"]]

# Fields today's product models render that the metadata does not define, so the gateway drops them.
# Each is to leave the model (issue #11: the product rules rewrite); the test fails when the set
# changes either way, so this list is kept honest.
NOT_IN_METADATA: dict[tuple[str, str], set[str]] = {
    ("r-kvstore", "DescribeInstanceAttribute"): {
        f"Instances.DBInstanceAttribute[].{key}"
        for key in (
            "EditionType",  # in DescribeInstances only
            "UserName",  # in DescribeInstances only
            # In the SDK 7.0.0 model (_describe_instance_attribute_response_body.py) but not in the
            # metadata (2025-12-03 snapshot): the gateway follows the metadata.
            "AutoSecondaryZone",
            "ComputingType",
            "ReplicaCount",
            "SlaveReplicaCount",
        )
    },
}
# Leaves whose JSON type differs from the metadata's, same rule as above.
WRONG_TYPE: dict[tuple[str, str], set[str]] = {
    # "integer" in the metadata, yet its values are Succeed/Running/... and the SDK models say str.
    ("r-kvstore", "DescribeHistoryTasks"): {"Items[].Status"},
    ("dds", "DescribeHistoryTasks"): {"Items[].Status"},
    # boolean in DescribeInstances, string in DescribeInstanceAttribute: one attribute renders both.
    ("r-kvstore", "DescribeInstances"): {"Instances.KVStoreInstance[].HasRenewChangeOrder"},
}


@pytest.fixture
def lc(make_localcloud):
    return make_localcloud(SEED)


@pytest.fixture
def kvstore(lc) -> KvstoreClient:
    return KvstoreClient(openapi_config(lc))


@pytest.fixture
def dds(lc) -> DdsClient:
    return DdsClient(openapi_config(lc))


def gateway_error(fn: Any, *args: Any) -> tuple[str, int, str]:
    """``fn(*args)`` must be refused: the code, HTTP status and Message of the error body."""
    with pytest.raises(ClientException) as caught:
        fn(*args)
    return caught.value.code, caught.value.status_code, caught.value.data["Message"]


def dds_listed(client: DdsClient, **kw: Any) -> list[str]:
    body = client.describe_dbinstances(dm.DescribeDBInstancesRequest(**kw)).body
    return [i.dbinstance_id for i in body.dbinstances.dbinstance]


# --- the gateway's refusals ------------------------------------------------------------------------


@pytest.mark.parametrize("version", ["2015-01-01", DDS_VERSION])
def test_an_unknown_action_is_not_found(kvstore, version):
    code, status, _ = refused(call_api, kvstore, "DescribeNothing", {}, "POST", None, version)
    assert (code, status) == ("InvalidAction.NotFound", 404)


def test_an_action_the_metadata_lists_but_localcloud_does_not_implement_stays_not_found(kvstore):
    request = km.ModifyInstanceMinorVersionRequest(instance_id=REDIS_IDS[0])
    assert refused(kvstore.modify_instance_minor_version, request)[:2] == ("InvalidAction.NotFound", 404)


def test_a_missing_required_parameter_is_named(kvstore, dds):
    code, status, message = gateway_error(kvstore.describe_engine_version, km.DescribeEngineVersionRequest())
    assert (code, status) == ("MissingParameter", 400)
    assert message == (
        'The input parameter "InstanceId" that is mandatory for processing this request is not supplied.'
    )
    request = dm.UpgradeDBInstanceEngineVersionRequest(dbinstance_id=MONGO_IDS[0])
    code, status, message = gateway_error(dds.upgrade_dbinstance_engine_version, request)
    assert (code, status) == ("MissingParameter", 400)
    assert '"EngineVersion"' in message


@pytest.mark.parametrize(
    "call, request_, name",
    [
        ("describe_dbinstances", dm.DescribeDBInstancesRequest(page_number="first"), "PageNumber"),
        ("describe_dbinstances", dm.DescribeDBInstancesRequest(page_size="3O"), "PageSize"),
        (
            "describe_dbinstance_attribute",
            dm.DescribeDBInstanceAttributeRequest(dbinstance_id=MONGO_IDS[0], is_delete="maybe"),
            "IsDelete",
        ),
        (
            "upgrade_dbinstance_engine_version",
            dm.UpgradeDBInstanceEngineVersionRequest(
                dbinstance_id=MONGO_IDS[0], engine_version="5.0", switch_mode="now"
            ),
            "SwitchMode",
        ),
    ],
    ids=["integer", "integer-letter-o", "boolean", "switch-mode"],
)
def test_a_value_of_the_wrong_type_is_invalid(dds, call, request_, name):
    code, status, message = gateway_error(getattr(dds, call), request_)
    assert (code, status, message) == (
        "InvalidParameter",
        400,
        f'The specified parameter "{name}" is not valid.',
    )


@pytest.mark.parametrize(
    "call, request_, name",
    [
        ("describe_instances", km.DescribeInstancesRequest(network_type="INTERNET"), "NetworkType"),
        ("describe_instances", km.DescribeInstancesRequest(instance_type="Valkey"), "InstanceType"),
        ("describe_instances", km.DescribeInstancesRequest(global_instance="yes"), "GlobalInstance"),
        (
            "modify_instance_major_version",
            km.ModifyInstanceMajorVersionRequest(
                instance_id=REDIS_IDS[0], major_version="6.0", effective_time="Tomorrow"
            ),
            "EffectiveTime",
        ),
    ],
    ids=["network-type", "instance-type", "boolean", "effective-time"],
)
def test_an_r_kvstore_value_outside_the_metadata_is_invalid(kvstore, call, request_, name):
    code, status, message = gateway_error(getattr(kvstore, call), request_)
    assert (code, status, message) == (
        "InvalidParameter",
        400,
        f'The specified parameter "{name}" is not valid.',
    )


def test_a_dds_value_outside_the_enum_is_invalid_and_leaves_the_instance_as_it_was(dds):
    # Engine: enum [MongoDB]; the model itself never reads it, so only the gateway can refuse it.
    request = dm.DescribeDBInstancesRequest(engine="Redis")
    assert refused(dds.describe_dbinstances, request)[:2] == ("InvalidParameter", 400)
    for switch_mode in (2, -1):  # enum 0/1, minimum 0, maximum 1
        request = dm.UpgradeDBInstanceEngineVersionRequest(
            dbinstance_id=MONGO_IDS[0], engine_version="5.0", switch_mode=switch_mode
        )
        code, _, message = gateway_error(dds.upgrade_dbinstance_engine_version, request)
        assert (code, message) == ("InvalidParameter", 'The specified parameter "SwitchMode" is not valid.')
    attribute = dm.DescribeDBInstanceAttributeRequest(dbinstance_id=MONGO_IDS[0])
    inst = dds.describe_dbinstance_attribute(attribute).body.dbinstances.dbinstance[0]
    assert (inst.engine_version, inst.dbinstance_status) == ("4.4", "Running")


@pytest.mark.parametrize("page_size", [1, 29, 31, 101, 0])
def test_a_dds_page_size_outside_30_50_100_is_refused(dds, page_size):
    request = dm.DescribeDBInstancesRequest(page_size=page_size)
    code, status, message = gateway_error(dds.describe_dbinstances, request)
    assert (code, status, message) == (
        "InvalidParameter",
        400,
        'The specified parameter "PageSize" is not valid.',
    )


@pytest.mark.parametrize("page_size", [30, 50, 100])
def test_a_dds_page_size_in_the_enum_is_used(dds, page_size):
    body = dds.describe_dbinstances(dm.DescribeDBInstancesRequest(page_size=page_size)).body
    assert body.page_size == page_size


@pytest.mark.parametrize("page_size", [-1, 1001, 2**31])
def test_an_r_kvstore_page_size_outside_its_documented_range_is_refused(kvstore, page_size):
    # metadata: minimum 0, maximum 1000, int32 (the model's own maximum, 50, is test_kvstore_api's)
    request = km.DescribeInstancesRequest(page_size=page_size)
    code, status, message = gateway_error(kvstore.describe_instances, request)
    assert (code, status, message) == (
        "InvalidParameter",
        400,
        'The specified parameter "PageSize" is not valid.',
    )


def test_parameters_the_metadata_does_not_name_are_ignored(kvstore, dds):
    # Terraform sends RegionId to DescribeInstanceAttribute, whose SDK model lacks it (real-cloud-facts #15).
    query = {"InstanceId": REDIS_IDS[0], "RegionId": "cn-hangzhou", "NotAParameter": "x"}
    body = call_api(kvstore, "DescribeInstanceAttribute", query)["body"]
    assert body["Instances"]["DBInstanceAttribute"][0]["InstanceId"] == REDIS_IDS[0]
    query = {"DBInstanceId": MONGO_IDS[0], "RegionId": "cn-hangzhou", "Foo.1.Bar": "x"}
    body = call_api(dds, "DescribeAvailableEngineVersion", query, version=DDS_VERSION)["body"]
    assert body["EngineVersions"]["EngineVersion"]


# --- the documented defaults -----------------------------------------------------------------------


def test_the_default_dds_listing_holds_replica_sets_only(dds):
    # DBInstanceType defaults to "replicate" (metadata; SDK 9.5.0 _describe_dbinstances_request.py)
    body = dds.describe_dbinstances(dm.DescribeDBInstancesRequest()).body
    assert [i.dbinstance_id for i in body.dbinstances.dbinstance] == ["dds-bp1metareplica1"]
    assert (body.total_count, body.page_number, body.page_size) == (1, 1, 30)
    assert dds_listed(dds, dbinstance_type="sharding") == ["dds-bp1metasharded1"]
    prod = [dm.DescribeDBInstancesRequestTag(key="env", value="prod")]
    assert dds_listed(dds, tag=prod) == ["dds-bp1metareplica1"]


def test_the_default_r_kvstore_page_is_30(kvstore):
    body = kvstore.describe_instances(km.DescribeInstancesRequest()).body
    assert (body.total_count, body.page_number, body.page_size) == (2, 1, 30)


def test_a_documented_service_error_is_rendered_as_the_metadata_words_it(dds):
    request = dm.UpgradeDBInstanceEngineVersionRequest(dbinstance_id=MONGO_IDS[1], engine_version="4.4")
    code, status, message = gateway_error(dds.upgrade_dbinstance_engine_version, request)
    documented = {e.code: e for e in apimeta.spec("dds", "UpgradeDBInstanceEngineVersion").errors}
    assert (code, status, message) == (
        "EngineVersion.ERROR",
        documented["EngineVersion.ERROR"].status,
        documented["EngineVersion.ERROR"].message,
    )


# --- responses -------------------------------------------------------------------------------------


def key_paths(value: Any, path: str = "") -> set[str]:
    """Every key path in a JSON value; list items share ``[]``."""
    if isinstance(value, dict):
        paths = set()
        for key, child in value.items():
            child_path = f"{path}.{key}" if path else key
            paths |= {child_path} | key_paths(child, child_path)
        return paths
    if isinstance(value, list):
        return set().union(*(key_paths(item, f"{path}[]") for item in value))
    return set()


KVSTORE_CALLS = [
    ("DescribeInstances", {}, km.DescribeInstancesResponseBody),
    ("DescribeRegions", {}, km.DescribeRegionsResponseBody),
    *[("DescribeInstanceAttribute", {"InstanceId": i}, km.DescribeInstanceAttributeResponseBody) for i in REDIS_IDS],
    *[("DescribeEngineVersion", {"InstanceId": i}, km.DescribeEngineVersionResponseBody) for i in REDIS_IDS],
    (
        "ModifyInstanceMajorVersion",
        {"InstanceId": REDIS_IDS[1], "MajorVersion": "7.0", "EffectiveTime": "MaintainTime"},
        km.ModifyInstanceMajorVersionResponseBody,
    ),
    ("CreateBackup", {"InstanceId": REDIS_IDS[0]}, km.CreateBackupResponseBody),
    ("DescribeBackupTasks", {"InstanceId": REDIS_IDS[0]}, km.DescribeBackupTasksResponseBody),
    (
        "DescribeBackups",
        {"InstanceId": REDIS_IDS[0], "StartTime": "2000-01-01T00:00Z", "EndTime": "2100-01-01T00:00Z"},
        km.DescribeBackupsResponseBody,
    ),
    (
        "DescribeHistoryTasks",
        {"FromStartTime": "2000-01-01T00:00:00Z", "ToStartTime": "2100-01-01T00:00:00Z"},
        km.DescribeHistoryTasksResponseBody,
    ),
    ("DescribeActiveOperationTasks", {"Region": "all"}, km.DescribeActiveOperationTasksResponseBody),
]  # fmt: skip
DDS_CALLS = [
    ("DescribeDBInstances", {}, dm.DescribeDBInstancesResponseBody),
    ("DescribeRegions", {}, dm.DescribeRegionsResponseBody),
    ("DescribeDBInstances", {"DBInstanceType": "sharding"}, dm.DescribeDBInstancesResponseBody),
    *[("DescribeDBInstanceAttribute", {"DBInstanceId": i}, dm.DescribeDBInstanceAttributeResponseBody) for i in MONGO_IDS],
    *[("DescribeAvailableEngineVersion", {"DBInstanceId": i}, dm.DescribeAvailableEngineVersionResponseBody) for i in MONGO_IDS],
    (
        "UpgradeDBInstanceEngineVersion",
        {"DBInstanceId": MONGO_IDS[0], "EngineVersion": "5.0", "SwitchMode": "1"},
        dm.UpgradeDBInstanceEngineVersionResponseBody,
    ),
    ("CreateBackup", {"DBInstanceId": MONGO_IDS[1]}, dm.CreateBackupResponseBody),
    ("DescribeBackupTasks", {"DBInstanceId": MONGO_IDS[1]}, dm.DescribeBackupTasksResponseBody),
    ("DescribeBackups", {"DBInstanceId": MONGO_IDS[1]}, dm.DescribeBackupsResponseBody),
    (
        "DescribeHistoryTasks",
        {"FromStartTime": "2000-01-01T00:00:00Z", "ToStartTime": "2100-01-01T00:00:00Z"},
        dm.DescribeHistoryTasksResponseBody,
    ),
    ("DescribeActiveOperationTasks", {"Region": "all"}, dm.DescribeActiveOperationTasksResponseBody),
]  # fmt: skip


def test_every_response_keeps_each_key_through_the_sdk_response_model(kvstore, dds):
    calls = [(kvstore, "2015-01-01", *c) for c in KVSTORE_CALLS] + [(dds, DDS_VERSION, *c) for c in DDS_CALLS]
    for client, version, action, query, model in calls:
        body = call_api(client, action, query, version=version)["body"]
        sdk = model().from_map(body).to_map()
        assert key_paths(body) - key_paths(sdk) == set(), (action, query)
        assert "RequestId" in body


def backend_calls() -> list[tuple[Any, str, dict[str, str]]]:
    """Each implemented action on each seeded instance, straight to the responses (no gateway)."""
    cloud = Cloud(SEED, root=ROOT)
    kvstore, dds = KvstoreResponse(cloud), DdsResponse(cloud)
    return [(kvstore, action, query) for action, query, _ in KVSTORE_CALLS] + [
        (dds, action, query) for action, query, _ in DDS_CALLS
    ]


CTX = CallContext(
    account_id=ACCOUNT_ID, access_key_id=AK_ID, request_id="0", region_id="cn-hangzhou", host="localhost"
)


def test_the_models_render_only_fields_the_metadata_defines():
    dropped: dict[tuple[str, str], set[str]] = {}
    for backend, action, query in backend_calls():
        params = apimeta.check_request(backend.product, action, query)
        found: list[str] = []
        apimeta.shape_response(backend.product, action, backend.call(action, params, CTX), found)
        if found:
            dropped.setdefault((backend.product, action), set()).update(found)
    assert dropped == NOT_IN_METADATA


JSON_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "object": (dict,),
    "array": (list,),
}


def wrong_types(value: Any, node: apimeta.Field, path: str = "") -> set[str]:
    """Paths whose JSON value is not of the type the metadata gives them."""
    expected = JSON_TYPES[node.type]
    if not isinstance(value, expected) or (node.type in ("integer", "number") and isinstance(value, bool)):
        return {path}
    found: set[str] = set()
    if node.properties is not None and isinstance(value, dict):
        for key, child in value.items():
            if key in node.properties:
                found |= wrong_types(child, node.properties[key], f"{path}.{key}" if path else key)
    if node.items is not None and isinstance(value, list):
        for item in value:
            found |= wrong_types(item, node.items, f"{path}[]")
    return found


def test_the_models_render_each_field_with_the_metadata_type():
    mismatched: dict[tuple[str, str], set[str]] = {}
    for backend, action, query in backend_calls():
        params = apimeta.check_request(backend.product, action, query)
        spec = apimeta.spec(backend.product, action)
        if spec.response is None:  # R-kvstore DescribeActiveOperationTasks: the metadata has no response
            continue
        found = wrong_types(backend.call(action, params, CTX), spec.response)
        if found:
            mismatched.setdefault((backend.product, action), set()).update(found)
    assert mismatched == WRONG_TYPE


def test_every_implemented_action_has_metadata():
    cloud = Cloud(SEED, root=ROOT)
    for backend in (KvstoreResponse(cloud), DdsResponse(cloud)):
        for action in backend.actions:
            assert apimeta.spec(backend.product, action).action == action
