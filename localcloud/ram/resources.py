"""The RAM action and resource ARN of each emulated call, per product, from each product's RAM docs.

- R-kvstore: ``kvstore:<Action>`` on ``acs:kvstore:{region}:{account}:instance/{InstanceId}``
  (ModifyInstanceMajorVersion's "Authorization information", help.aliyun.com/document_detail/473776.html;
  research/real-cloud-facts.md item 10).
- Dds: ``dds:<Action>`` on ``acs:dds:{region}:{account}:dbinstance/{DBInstanceId}``
  (alibabacloud.com/help/en/mongodb/developer-reference/api-dds-2015-12-01-upgradedbinstanceengineversion).
- MNS: the API authorization table of help.aliyun.com/zh/mns/b3asrm: SendMessage / BatchSendMessage
  -> ``mns:SendMessage``, ReceiveMessage / BatchReceiveMessage -> ``mns:ReceiveMessage``,
  DeleteMessage -> ``mns:DeleteMessage``, PeekMessage / BatchPeekMessage -> ``mns:PeekMessage``,
  ChangeMessageVisibility -> ``mns:ChangeMessageVisibility``, all on
  ``acs:mns:{region}:{account}:/queues/{queue}/messages``; Get*Attributes on ``/queues/{q}`` and
  ``/topics/{t}``. The same table gives Unsubscribe as ``/topics/{t}/subscriptions/{s}``
  (help.aliyun.com/document_detail/140721.htm): the resource is the request path.
- STS: ``sts:AssumeRole`` on the role's ARN ``acs:ram::{account}:role/{name}``, the RoleArn the call
  names (the RAM FAQ "can I specify which RAM role a RAM user may assume",
  help.aliyun.com/document_detail/39744.html, grants ``sts:AssumeRole`` on ``acs:ram:*:{account}:role/{name}``;
  ``*`` there also matches the empty region of a RoleArn).
- Resource Manager: ``resourcemanager:ListAccounts`` on ``acs:resourcemanager::{account}:*`` (assumption
  below).
- FC 2.0: ``fc:InvokeFunction`` on ``acs:fc:{region}:{account}:services/{service}/functions/{function}``
  (the ARN a real denial names, Serverless-Devs/Serverless-Devs#350: "... on resource
  'acs:fc:cn-shanghai:1156167965211746:services/*'"; the async destination record's functionArn).
"""

from __future__ import annotations

# The region of a call that names none (no RegionId, a 127.0.0.1 host): localcloud's default region,
# as in localcloud/mns/models.py and localcloud/template.py.
DEFAULT_REGION = "cn-hangzhou"
# RAM namespaces (RamCode) of the OpenAPI products, by localcloud's product name.
OPENAPI_NAMESPACE = {"r-kvstore": "kvstore", "dds": "dds"}
# The instance resource type of each namespace and the request parameter naming the instance.
INSTANCE_RESOURCE = {"kvstore": ("instance", "InstanceId"), "dds": ("dbinstance", "DBInstanceId")}
# assumption: the resource a Resource Manager call is checked against is ``acs:resourcemanager::{account}:*``
# (a global service: no region, as RAM's own ARNs); no public page shows the string RAM checks for
# ListAccounts, so only a policy Resource of ``*`` or ``acs:resourcemanager:*:*:*``-like grants it.
RESOURCE_MANAGER_RESOURCE = "acs:resourcemanager::{account}:*"
# Listing APIs act on no single instance ("All Resources" in the products' RAM tables: the API pages
# of DescribeInstances / DescribeDBInstances). Assumption: the resource such a call is checked against
# is ``acs:{ns}:{region}:{account}:*``, so only a policy Resource of ``*`` (or one that covers that
# string) grants it; an ``instance/*`` grant does not. No public page shows the string RAM checks.
LIST_ACTIONS = frozenset({"DescribeInstances", "DescribeDBInstances"})
# Assumption: PublishMessage's resource is ``/topics/{topic}/messages``. The MNS table's topic rows
# could not be retrieved; this follows its rule that the resource is the request path
# (POST /topics/{topic}/messages, help.aliyun.com/document_detail/27497.html) as SendMessage's does.
TOPIC_MESSAGES_SUFFIX = "/messages"
QUEUE_MESSAGES_SUFFIX = "/messages"  # documented (help.aliyun.com/zh/mns/b3asrm)

MNS_ACTIONS = {
    "SendMessage": "mns:SendMessage",
    "BatchSendMessage": "mns:SendMessage",
    "ReceiveMessage": "mns:ReceiveMessage",
    "BatchReceiveMessage": "mns:ReceiveMessage",
    "DeleteMessage": "mns:DeleteMessage",
    "BatchDeleteMessage": "mns:DeleteMessage",
    "PeekMessage": "mns:PeekMessage",
    "BatchPeekMessage": "mns:PeekMessage",
    "ChangeMessageVisibility": "mns:ChangeMessageVisibility",
    "PublishMessage": "mns:PublishMessage",
    "GetQueueAttributes": "mns:GetQueueAttributes",
    "GetTopicAttributes": "mns:GetTopicAttributes",
}


def openapi(
    product: str, action: str, params: dict[str, str], region: str, account_id: str
) -> tuple[str, str]:
    """(RAM action, resource ARN) of an R-kvstore, Dds or Resource Manager RPC call."""
    if product == "resourcemanager":
        return f"resourcemanager:{action}", RESOURCE_MANAGER_RESOURCE.format(account=account_id)
    namespace = OPENAPI_NAMESPACE[product]
    resource_type, id_param = INSTANCE_RESOURCE[namespace]
    instance_id = params.get(id_param)
    if action in LIST_ACTIONS or not instance_id:
        return f"{namespace}:{action}", f"acs:{namespace}:{region}:{account_id}:*"
    return f"{namespace}:{action}", f"acs:{namespace}:{region}:{account_id}:{resource_type}/{instance_id}"


def sts_assume_role(role_arn: str) -> tuple[str, str]:
    """What a RAM user or role needs to assume the role ``role_arn`` names (STS checks it itself)."""
    return "sts:AssumeRole", role_arn


def mns(action: str, kind: str, name: str, region: str, account_id: str) -> tuple[str, str] | None:
    """(RAM action, resource ARN) of an MNS call; None for one localcloud does not emulate."""
    ram_action = MNS_ACTIONS.get(action)
    if ram_action is None:
        return None
    path = f"/{kind}/{name}"
    if action not in ("GetQueueAttributes", "GetTopicAttributes"):
        path += TOPIC_MESSAGES_SUFFIX if kind == "topics" else QUEUE_MESSAGES_SUFFIX
    return ram_action, f"acs:mns:{region}:{account_id}:{path}"


def mns_queue_messages(queue: str, region: str, account_id: str) -> tuple[str, str]:
    """What FC's async destination needs from the function's role to deliver to a queue."""
    return "mns:SendMessage", f"acs:mns:{region}:{account_id}:/queues/{queue}{QUEUE_MESSAGES_SUFFIX}"


def fc_invoke(service: str, function: str, region: str, account_id: str) -> tuple[str, str]:
    return "fc:InvokeFunction", f"acs:fc:{region}:{account_id}:services/{service}/functions/{function}"
