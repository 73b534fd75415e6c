"""RAM evaluation in every gateway, seen through the official clients with an assumed role's STS
credentials: an allowed call passes, anything else is refused with the service's own denial
(OpenAPI 403 Forbidden.RAM, MNS 403 AccessDenied, FC 403 AccessDenied), an explicit Deny wins over
an Allow, wildcards match, MNS message calls need the ``/messages`` resource, and FC gives a
function with a role credentials of that role, for its calls and for its async destination."""

from __future__ import annotations

import copy
import json
from typing import Any

import fc2
import pytest
from alibabacloud_dds20151201 import models as dds_models
from alibabacloud_dds20151201.client import Client as DdsClient
from alibabacloud_r_kvstore20150101 import models as m
from alibabacloud_r_kvstore20150101.client import Client as KvstoreClient
from alibabacloud_tea_openapi.exceptions import ClientException
from mns.account import Account
from mns.mns_exception import MNSServerException
from mns.queue import Message
from mns.topic import TopicMessage

from localcloud.server import RunningServer
from tests.conftest import ACCOUNT_ID, AK_ID, AK_SECRET, DEFAULT_SEED, TEST_ACCOUNT
from tests.contract.helpers import openapi_config

REDIS = "r-bp1demo0000000002"  # 6.0: 7.0 is a valid target, so only RAM can refuse it
OTHER_REDIS = "r-bp1demo0000000004"
MONGO = "dds-bp1demo000000001"
PROBE = "tests/contract/fixtures/fc_probe"


def allow(actions: list[str], resources: list[str]) -> dict[str, Any]:
    return {"Effect": "Allow", "Action": actions, "Resource": resources}


def deny(actions: list[str], resources: list[str]) -> dict[str, Any]:
    return {"Effect": "Deny", "Action": actions, "Resource": resources}


# One assumed-role credential per policy under test (the seed's ``sts[].role``).
ROLES: dict[str, list[dict[str, Any]]] = {
    "reader": [
        allow(["kvstore:Describe*"], [f"acs:kvstore:cn-hangzhou:{ACCOUNT_ID}:instance/*"]),
        allow(["dds:DescribeDBInstanceAttribute"], [f"acs:dds:*:{ACCOUNT_ID}:dbinstance/*"]),
    ],
    "upgrader": [
        allow(["kvstore:*", "dds:DescribeDBInstances"], ["*"]),
        deny(["kvstore:ModifyInstanceMajorVersion"], [f"acs:kvstore:*:*:instance/{OTHER_REDIS}"]),
    ],
    "sender": [
        allow(
            ["mns:SendMessage"], [f"acs:mns:cn-hangzhou:{ACCOUNT_ID}:/queues/dbupgrade-rollout-dlq/messages"]
        ),
        allow(["mns:PublishMessage"], [f"acs:mns:cn-hangzhou:{ACCOUNT_ID}:/topics/dbupgrade-*/messages"]),
        # Granted on the queue itself, not on its messages: that grants no message call.
        allow(["mns:ReceiveMessage"], [f"acs:mns:cn-hangzhou:{ACCOUNT_ID}:/queues/dbupgrade-rollout-dlq"]),
    ],
    "invoker": [
        allow(["fc:InvokeFunction"], [f"acs:fc:cn-hangzhou:{ACCOUNT_ID}:services/probe/functions/echo*"])
    ],
}


def sts(name: str) -> dict[str, str]:
    return {
        "access_key_id": f"STS.N{name.upper()}0000000000",
        "access_key_secret": f"{name}-sts-secret",
        "security_token": f"CAIS{name}".ljust(40, "x"),
    }


def seed() -> dict[str, Any]:
    base = copy.deepcopy(DEFAULT_SEED)
    account = {
        **TEST_ACCOUNT,
        "sts": [
            {**sts(name), "role": {"name": name, "policies": [{"Version": "1", "Statement": statements}]}}
            for name, statements in ROLES.items()
        ],
    }
    probe = {"service": "probe", "code_uri": PROBE, "handler": "index.handler", "account_id": ACCOUNT_ID}
    # The probe's own role may send nothing, so its failed async events cannot reach the DLQ.
    silent = {
        "name": "silent",
        "policies": [{"Version": "1", "Statement": [allow(["fc:InvokeFunction"], ["*"])]}],
    }
    dlq_writer = {
        "name": "dlq-writer",
        "policies": [{"Version": "1", "Statement": ROLES["sender"][:1]}],
    }
    base.update(
        accounts=[account],
        functions=[
            {**probe, "name": "echo", "role": silent},
            {**probe, "name": "echo-unscoped"},
            {**probe, "name": "other"},
            {
                **probe,
                "name": "fails-silently",
                "max_async_retry_attempts": 0,
                "role": silent,
                "on_failure": {"queue": "dbupgrade-rollout-dlq"},
            },
            {
                **probe,
                "name": "fails-loudly",
                "max_async_retry_attempts": 0,
                "role": dlq_writer,
                "on_failure": {"queue": "dbupgrade-rollout-dlq"},
            },
        ],
        subscriptions=[],
    )
    return base


@pytest.fixture
def lc(make_localcloud) -> RunningServer:
    return make_localcloud(seed())


def as_role(lc: RunningServer, name: str) -> dict[str, Any]:
    credential = sts(name)
    return openapi_config(
        lc,
        access_key_id=credential["access_key_id"],
        access_key_secret=credential["access_key_secret"],
        security_token=credential["security_token"],
    )


def denial(fn: Any, *args: Any) -> ClientException:
    with pytest.raises(ClientException) as caught:
        fn(*args)
    return caught.value


# --- OpenAPI (R-kvstore, Dds) --------------------------------------------------------------------


def test_an_allowed_describe_passes_and_an_upgrade_outside_the_policy_is_forbidden_ram(lc):
    client = KvstoreClient(as_role(lc, "reader"))
    attribute = client.describe_instance_attribute(m.DescribeInstanceAttributeRequest(instance_id=REDIS))
    assert attribute.body.instances.dbinstance_attribute[0].instance_id == REDIS

    refused = denial(
        client.modify_instance_major_version,
        m.ModifyInstanceMajorVersionRequest(instance_id=REDIS, major_version="7.0"),
    )
    assert (refused.code, refused.status_code) == ("Forbidden.RAM", 403)
    assert "User not authorized to operate on the specified resource" in refused.message
    detail = refused.access_denied_detail
    assert detail["AuthAction"] == "kvstore:ModifyInstanceMajorVersion"
    assert detail["NoPermissionType"] == "ImplicitDeny"
    assert detail["AuthPrincipalDisplayName"] == "reader"
    assert (
        lc.cloud.calls.query({"product": "r-kvstore", "action": "ModifyInstanceMajorVersion"})[-1]["code"]
        == "Forbidden.RAM"
    )


def test_a_list_call_needs_a_star_resource_not_an_instance_wildcard(lc):
    kvstore = KvstoreClient(as_role(lc, "reader"))
    refused = denial(kvstore.describe_instances, m.DescribeInstancesRequest(region_id="cn-hangzhou"))
    assert refused.code == "Forbidden.RAM"
    assert refused.access_denied_detail["AuthAction"] == "kvstore:DescribeInstances"

    dds = DdsClient(as_role(lc, "upgrader"))
    listed = dds.describe_dbinstances(dds_models.DescribeDBInstancesRequest(region_id="cn-hangzhou"))
    assert listed.body.dbinstances.dbinstance


def test_wildcard_region_in_the_resource_matches_and_another_product_is_denied(lc):
    dds = DdsClient(as_role(lc, "reader"))
    attribute = dds.describe_dbinstance_attribute(
        dds_models.DescribeDBInstanceAttributeRequest(dbinstance_id=MONGO)
    )
    assert attribute.body.dbinstances.dbinstance[0].dbinstance_id == MONGO
    refused = denial(
        dds.upgrade_dbinstance_engine_version,
        dds_models.UpgradeDBInstanceEngineVersionRequest(dbinstance_id=MONGO, engine_version="5.0"),
    )
    assert refused.access_denied_detail["AuthAction"] == "dds:UpgradeDBInstanceEngineVersion"


def test_an_explicit_deny_wins_over_an_allow(lc):
    client = KvstoreClient(as_role(lc, "upgrader"))
    accepted = client.modify_instance_major_version(
        m.ModifyInstanceMajorVersionRequest(instance_id=REDIS, major_version="7.0")
    )
    assert accepted.body.request_id

    refused = denial(
        client.modify_instance_major_version,
        m.ModifyInstanceMajorVersionRequest(instance_id=OTHER_REDIS, major_version="7.0"),
    )
    assert refused.code == "Forbidden.RAM"
    assert refused.access_denied_detail["NoPermissionType"] == "ExplicitDeny"


def test_the_accounts_own_access_key_is_allowed_everything(lc):
    client = KvstoreClient(openapi_config(lc, access_key_id=AK_ID, access_key_secret=AK_SECRET))
    assert client.describe_instances(m.DescribeInstancesRequest(region_id="cn-hangzhou")).body.instances


# --- MNS -------------------------------------------------------------------------------------------


def mns_account(lc: RunningServer, name: str) -> Account:
    credential = sts(name)
    return Account(
        lc.url, credential["access_key_id"], credential["access_key_secret"], credential["security_token"]
    )


def test_mns_message_calls_are_granted_on_the_messages_resource(lc):
    account = mns_account(lc, "sender")
    account.get_queue("dbupgrade-rollout-dlq").send_message(Message("dead letter"))
    account.get_topic("dbupgrade-notifications").publish_message(TopicMessage("outcome"))

    with pytest.raises(MNSServerException) as caught:
        account.get_queue("dbupgrade-rollout-dlq").receive_message()
    assert caught.value.type == "AccessDenied"
    assert "mns:ReceiveMessage" in caught.value.message
    assert "/queues/dbupgrade-rollout-dlq/messages" in caught.value.message
    [call] = lc.cloud.calls.query({"product": "mns", "action": "ReceiveMessage"})
    assert (call["status"], call["code"]) == (403, "AccessDenied")


def test_mns_denies_a_queue_or_topic_the_policy_does_not_name(lc):
    account = mns_account(lc, "sender")
    with pytest.raises(MNSServerException) as caught:
        account.get_queue("dbupgrade-notifications-tap").send_message(Message("elsewhere"))
    assert caught.value.type == "AccessDenied"
    with pytest.raises(MNSServerException):
        mns_account(lc, "reader").get_topic("dbupgrade-rollout").publish_message(TopicMessage("no grant"))


# --- FC ----------------------------------------------------------------------------------------------


def fc_client(lc: RunningServer, name: str) -> fc2.Client:
    credential = sts(name)
    return fc2.Client(
        endpoint=lc.url,
        accessKeyID=credential["access_key_id"],
        accessKeySecret=credential["access_key_secret"],
        securityToken=credential["security_token"],
        Timeout=30,
    )


def test_fc_invoke_is_evaluated_with_a_wildcard_function_and_denied_elsewhere(lc):
    client = fc_client(lc, "invoker")
    for function in ("echo", "echo-unscoped"):
        reply = client.invoke_function("probe", function, payload=json.dumps({"action": "echo"}).encode())
        assert json.loads(reply.data)["context"]["function"]["name"] == function

    with pytest.raises(fc2.fc_exceptions.FcError) as caught:
        client.invoke_function("probe", "other", payload=b'{"action": "echo"}')
    assert (caught.value.status_code, caught.value.err_code) == (403, "AccessDenied")
    resource = f"acs:fc:cn-hangzhou:{ACCOUNT_ID}:services/probe/functions/other"
    assert f"not authorized to perform 'fc:InvokeFunction' on resource '{resource}'" in caught.value.message


def test_a_function_with_a_role_runs_with_that_roles_own_sts_credentials(lc):
    client = fc2.Client(endpoint=lc.url, accessKeyID=AK_ID, accessKeySecret=AK_SECRET, Timeout=30)
    scoped = json.loads(client.invoke_function("probe", "echo", payload=b'{"action": "echo"}').data)
    unscoped = json.loads(
        client.invoke_function("probe", "echo-unscoped", payload=b'{"action": "echo"}').data
    )

    key = scoped["context"]["credentials"]["access_key_id"]
    assert key.startswith("STS.") and scoped["context"]["credentials"]["security_token"]
    minted = lc.cloud.accounts.lookup(key)
    assert minted is not None and minted.role is not None and minted.role.name == "silent"
    assert unscoped["context"]["credentials"]["access_key_id"] != key
    assert lc.cloud.accounts.lookup(unscoped["context"]["credentials"]["access_key_id"]).role is None


def test_the_async_destination_is_sent_with_the_functions_role(lc):
    client = fc2.Client(endpoint=lc.url, accessKeyID=AK_ID, accessKeySecret=AK_SECRET, Timeout=30)
    for function in ("fails-silently", "fails-loudly"):
        client.invoke_function(
            "probe", function, payload=b'{"action": "raise"}', headers={"x-fc-invocation-type": "Async"}
        )
    assert lc.cloud.fc.wait_idle(30)
    by_function = {
        e["record"]["requestContext"]["functionArn"].rsplit("/", 1)[1]: e for e in lc.cloud.fc.destinations
    }
    assert by_function["fails-loudly"]["delivered"] is True
    assert by_function["fails-silently"]["delivered"] is False
    assert by_function["fails-silently"]["error"].startswith("AccessDenied: ")
    assert "/queues/dbupgrade-rollout-dlq/messages" in by_function["fails-silently"]["error"]
