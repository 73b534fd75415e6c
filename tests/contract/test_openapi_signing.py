"""Contract: localcloud accepts what the official clients sign, and refuses what the real gateway refuses.

Clients: tea-openapi ``call_api`` (ACS3-HMAC-SHA256 by default, HMAC-SHA1 with
``signature_algorithm='v2'``), aliyun-python-sdk-core ``AcsClient`` (HMAC-SHA1, GET), and raw
requests signed with tea-openapi's own signing utilities for the refusals.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from types import SimpleNamespace
from typing import Any
from urllib.parse import urlencode

import pytest
import requests
from alibabacloud_tea_openapi.client import Client as OpenApiClient
from alibabacloud_tea_openapi.exceptions import ClientException
from alibabacloud_tea_openapi.utils import Utils
from aliyunsdkcore.acs_exception.exceptions import ServerException as CoreServerException
from aliyunsdkcore.client import AcsClient
from aliyunsdkcore.request import CommonRequest

from tests.conftest import ACCOUNT_ID, AK_ID, AK_SECRET
from tests.contract.helpers import KVSTORE_VERSION as KVSTORE
from tests.contract.helpers import call_api, openapi_config

STS = {
    "access_key_id": "STS.NTestTemporaryKey0001",
    "access_key_secret": "test-sts-secret-1a2b3c",
    "security_token": "CAIStestSecurityToken0123456789abcdef",
    "expiration": "2099-01-01T00:00:00Z",
}
EXPIRED_STS = {
    "access_key_id": "STS.NTestExpiredKey00001",
    "access_key_secret": "test-sts-expired-secret",
    "security_token": "CAIStestExpiredToken0123456789abcdef",
    "expiration": "2020-01-01T00:00:00Z",
}
SEED: dict[str, Any] = {
    # Another key of the test account (whose AK_ID make_localcloud adds): both see its instances.
    "accounts": [{"account_id": ACCOUNT_ID, "access_key_id": "LTAI5tOtherKey0000001",
                  "access_key_secret": "other-secret", "sts": [STS, EXPIRED_STS]}],
    "redis": [{"InstanceId": "r-bp1sign000000001", "RegionId": "cn-hangzhou", "EngineVersion": "5.0",
               "InstanceStatus": "Normal", "NodeType": "double", "Tags": {"env": "dev"}}],
    "mongodb": [{"DBInstanceId": "dds-bp1sign00000001", "RegionId": "cn-hangzhou", "EngineVersion": "4.4",
                 "DBInstanceStatus": "Running", "DBInstanceType": "replicate"}],
    "upgrade_seconds": 2,
}  # fmt: skip
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


@pytest.fixture
def lc(make_localcloud):
    return make_localcloud(SEED)


def tea_client(lc, **overrides: Any) -> OpenApiClient:
    return OpenApiClient(openapi_config(lc, **overrides))


def describe(client: OpenApiClient, method: str = "POST", **query: str) -> dict[str, Any]:
    return call_api(
        client, "DescribeInstanceAttribute", {"InstanceId": "r-bp1sign000000001", **query}, method
    )


def last_call(lc) -> dict[str, Any]:
    return lc.cloud.calls.query()[-1]


# --- the official clients are accepted --------------------------------------------------------------


@pytest.mark.parametrize("algorithm", [None, "v2"], ids=["acs3", "hmac-sha1"])
@pytest.mark.parametrize("method", ["GET", "POST"])
def test_tea_openapi_call_api_is_accepted_in_both_signatures_and_methods(lc, algorithm, method):
    client = tea_client(lc, signature_algorithm=algorithm)

    result = describe(client, method)

    attrs = result["body"]["Instances"]["DBInstanceAttribute"][0]
    assert attrs["InstanceId"] == "r-bp1sign000000001"
    assert result["statusCode"] == 200
    assert last_call(lc)["params"] == {"InstanceId": "r-bp1sign000000001"}, "no signature field is logged"


@pytest.mark.parametrize("algorithm", [None, "v2"], ids=["acs3", "hmac-sha1"])
def test_form_body_params_are_signed_and_read(lc, algorithm):
    client = tea_client(lc, signature_algorithm=algorithm)

    result = call_api(
        client, "DescribeInstances", {"RegionId": "cn-hangzhou"}, body={"InstanceIds": "r-bp1sign000000001"}
    )

    assert result["body"]["TotalCount"] == 1


TRICKY_VALUES = ["a b", "x*y", "tilde~ok", "测试-ü", "", "a+b/c=d&e", "%41"]


@pytest.mark.parametrize("algorithm", [None, "v2"], ids=["acs3", "hmac-sha1"])
@pytest.mark.parametrize("method", ["GET", "POST"])
def test_unicode_star_tilde_space_and_empty_values_sign_correctly(lc, algorithm, method):
    client = tea_client(lc, signature_algorithm=algorithm)
    query = {"RegionId": "cn-hangzhou"}
    for n, value in enumerate(TRICKY_VALUES, start=1):
        query[f"Tag.{n}.Key"] = f"k{n}"
        query[f"Tag.{n}.Value"] = value

    result = call_api(client, "DescribeInstances", query, method)

    assert result["body"]["TotalCount"] == 0  # no instance carries those tags; the point is a 200
    logged = last_call(lc)["params"]
    assert [logged[f"Tag.{n}.Value"] for n in range(1, len(TRICKY_VALUES) + 1)] == TRICKY_VALUES


def test_aliyun_python_sdk_core_acs_client_get_with_a_port_endpoint(lc):
    client = AcsClient(AK_ID, AK_SECRET, "cn-hangzhou")
    request = CommonRequest(
        domain=lc.url.removeprefix("http://"), version=KVSTORE, action_name="DescribeInstances"
    )
    request.set_protocol_type("http")
    request.set_method("GET")
    request.add_query_param("InstanceIds", "r-bp1sign000000001")
    request.add_query_param("Tag.1.Key", "env")
    request.add_query_param("Tag.1.Value", "dev")

    body = json.loads(client.do_action_with_exception(request))

    assert body["TotalCount"] == 1
    assert last_call(lc)["params"]["RegionId"] == "cn-hangzhou"  # the core client sends its region


def test_aliyun_python_sdk_core_sees_the_real_error_code(lc):
    client = AcsClient(AK_ID, AK_SECRET, "cn-hangzhou")
    request = CommonRequest(
        domain=lc.url.removeprefix("http://"), version=KVSTORE, action_name="DescribeInstanceAttribute"
    )
    request.set_protocol_type("http")
    request.add_query_param("InstanceId", "r-bp1doesnotexist")

    with pytest.raises(CoreServerException) as caught:
        client.do_action_with_exception(request)

    assert caught.value.get_error_code() == "InvalidInstanceId.NotFound"
    assert caught.value.get_http_status() == 404


# --- STS -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("algorithm", [None, "v2"], ids=["acs3", "hmac-sha1"])
def test_sts_credentials_with_their_token_are_accepted(lc, algorithm):
    client = tea_client(
        lc,
        signature_algorithm=algorithm,
        access_key_id=STS["access_key_id"],
        access_key_secret=STS["access_key_secret"],
        security_token=STS["security_token"],
    )

    assert describe(client)["statusCode"] == 200
    assert last_call(lc)["access_key_id"] == STS["access_key_id"]


@pytest.mark.parametrize("algorithm", [None, "v2"], ids=["acs3", "hmac-sha1"])
@pytest.mark.parametrize(
    ("credential", "token", "code"),
    [
        (STS, None, "InvalidSecurityToken.Missing"),
        (STS, "CAISsomeoneElsesToken000000000000", "InvalidSecurityToken.MismatchWithAccessKey"),
        (STS, "short", "InvalidSecurityToken.Malformed"),
        (EXPIRED_STS, EXPIRED_STS["security_token"], "InvalidSecurityToken.Expired"),
    ],
    ids=["missing", "wrong", "malformed", "expired"],
)
def test_bad_sts_tokens_are_refused(lc, algorithm, credential, token, code):
    client = tea_client(
        lc,
        signature_algorithm=algorithm,
        access_key_id=credential["access_key_id"],
        access_key_secret=credential["access_key_secret"],
        security_token=token,
    )

    with pytest.raises(ClientException) as caught:
        describe(client)

    assert (caught.value.code, caught.value.status_code) == (code, 400)
    assert last_call(lc)["code"] == code


# --- refusals of hand-crafted requests --------------------------------------------------------------


def acs3_request(
    lc,
    query: dict[str, str],
    *,
    secret: str = AK_SECRET,
    key: str = AK_ID,
    date: str | None = None,
    nonce: str | None = None,
) -> tuple[str, dict[str, str]]:
    """A POST signed with tea-openapi's own ACS3 routine; returns (url, headers)."""
    host = lc.url.removeprefix("http://")
    headers = {
        "host": host,
        "x-acs-version": KVSTORE,
        "x-acs-action": "DescribeInstanceAttribute",
        "x-acs-date": date or time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "x-acs-signature-nonce": nonce or uuid.uuid4().hex,
        "accept": "application/json",
        "x-acs-content-sha256": EMPTY_SHA256,
    }
    request = SimpleNamespace(method="POST", pathname="/", query=query, headers=headers)
    headers["Authorization"] = Utils.get_authorization(request, "ACS3-HMAC-SHA256", EMPTY_SHA256, key, secret)
    return f"{lc.url}/?{urlencode(query)}", headers


def v1_url(
    lc,
    query: dict[str, str],
    *,
    secret: str = AK_SECRET,
    timestamp: str | None = None,
    nonce: str | None = None,
) -> str:
    """A GET signed with tea-openapi's own HMAC-SHA1 routine."""
    signed = {
        "Action": "DescribeInstanceAttribute",
        "Version": KVSTORE,
        "Format": "json",
        "Timestamp": timestamp or time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "SignatureNonce": nonce or uuid.uuid4().hex,
        "SignatureMethod": "HMAC-SHA1",
        "SignatureVersion": "1.0",
        "AccessKeyId": AK_ID,
        **query,
    }
    signed["Signature"] = Utils.get_rpcsignature(signed, "GET", secret)
    return f"{lc.url}/?{urlencode(signed)}"


QUERY = {"InstanceId": "r-bp1sign000000001"}
STALE = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 16 * 60))


def test_raw_signed_requests_are_accepted_as_built(lc):
    url, headers = acs3_request(lc, QUERY)
    assert requests.post(url, headers=headers, timeout=5).status_code == 200
    assert requests.get(v1_url(lc, QUERY), timeout=5).status_code == 200


def refusal(response: requests.Response) -> tuple[int, str]:
    body = response.json()
    assert set(body) == {"RequestId", "HostId", "Code", "Message", "Recommend"}
    assert AK_SECRET not in response.text
    return response.status_code, body["Code"]


def test_acs3_tampered_query_is_signature_does_not_match(lc):
    url, headers = acs3_request(lc, QUERY)
    assert refusal(
        requests.post(url.replace("sign000000001", "sign000000002"), headers=headers, timeout=5)
    ) == (
        400,
        "SignatureDoesNotMatch",
    )


def test_acs3_tampered_signed_header_is_signature_does_not_match(lc):
    url, headers = acs3_request(lc, QUERY)
    headers["x-acs-signature-nonce"] = uuid.uuid4().hex
    assert refusal(requests.post(url, headers=headers, timeout=5)) == (400, "SignatureDoesNotMatch")


def test_acs3_body_not_matching_its_hash_is_signature_does_not_match(lc):
    url, headers = acs3_request(lc, QUERY)
    headers["content-type"] = "application/x-www-form-urlencoded"
    response = requests.post(url, data="InstanceId=r-bp1other", headers=headers, timeout=5)
    assert refusal(response) == (400, "SignatureDoesNotMatch")


def test_wrong_secret_is_signature_does_not_match_in_both_styles(lc):
    url, headers = acs3_request(lc, QUERY, secret="not-the-secret")
    assert refusal(requests.post(url, headers=headers, timeout=5)) == (400, "SignatureDoesNotMatch")
    assert refusal(requests.get(v1_url(lc, QUERY, secret="not-the-secret"), timeout=5)) == (
        400,
        "SignatureDoesNotMatch",
    )


def test_unknown_access_key_is_not_found(lc):
    url, headers = acs3_request(lc, QUERY, key="LTAI5tNobodyHasThisKey")
    assert refusal(requests.post(url, headers=headers, timeout=5)) == (404, "InvalidAccessKeyId.NotFound")


def test_stale_timestamp_is_expired_in_both_styles(lc):
    url, headers = acs3_request(lc, QUERY, date=STALE)
    assert refusal(requests.post(url, headers=headers, timeout=5)) == (400, "InvalidTimeStamp.Expired")
    assert refusal(requests.get(v1_url(lc, QUERY, timestamp=STALE), timeout=5)) == (
        400,
        "InvalidTimeStamp.Expired",
    )


def test_reused_nonce_is_refused_in_both_styles_and_not_processed_twice(lc):
    url, headers = acs3_request(lc, QUERY, nonce="0123456789abcdef0123456789abcdef")
    assert requests.post(url, headers=headers, timeout=5).status_code == 200
    assert refusal(requests.post(url, headers=headers, timeout=5)) == (400, "SignatureNonceUsed")

    replay = v1_url(lc, QUERY, nonce="fedcba9876543210")
    assert requests.get(replay, timeout=5).status_code == 200
    assert refusal(requests.get(replay, timeout=5)) == (400, "SignatureNonceUsed")


def test_a_request_without_any_signature_is_incomplete_signature(lc):
    response = requests.get(f"{lc.url}/?Action=DescribeInstances&Version={KVSTORE}", timeout=5)
    assert refusal(response) == (400, "IncompleteSignature")


def test_unknown_action_and_unknown_version_are_refused(lc):
    client = tea_client(lc)
    with pytest.raises(ClientException) as caught:
        call_api(client, "DeleteInstance", QUERY)
    assert (caught.value.code, caught.value.status_code) == ("InvalidAction.NotFound", 404)

    with pytest.raises(ClientException) as caught:
        call_api(client, "DescribeInstances", {}, version="2099-01-01")
    assert (caught.value.code, caught.value.status_code) == ("InvalidVersion", 400)


def test_refusals_are_logged_with_code_and_claimed_key_but_no_secret(lc):
    url, headers = acs3_request(lc, QUERY, secret="not-the-secret")
    requests.post(url, headers=headers, timeout=5)

    logged = last_call(lc)
    assert (logged["product"], logged["action"], logged["status"], logged["code"]) == (
        "r-kvstore",
        "DescribeInstanceAttribute",
        400,
        "SignatureDoesNotMatch",
    )
    assert logged["access_key_id"] == AK_ID
    assert logged["params"] == QUERY


def test_the_error_body_recommends_the_troubleshooter_with_code_and_request_id(lc):
    response = requests.get(v1_url(lc, {"InstanceId": "r-bp1doesnotexist"}), timeout=5)
    body = response.json()
    assert body["Code"] == "InvalidInstanceId.NotFound"
    assert body["Recommend"] == (
        f"https://api.aliyun.com/troubleshoot?q=InvalidInstanceId.NotFound&product=R-kvstore"
        f"&requestId={body['RequestId']}"
    )
    assert body["HostId"] == lc.url.removeprefix("http://")


def test_the_server_reproduces_the_acs3_reference_signature():
    # research/alibaba-apis.md §1a: Utils.get_authorization over this request, ak testid / secret testsecret.
    from multidict import CIMultiDict

    from localcloud.openapi.auth import parse_request

    headers = CIMultiDict(
        {
            "host": "r-kvstore.aliyuncs.com",
            "x-acs-version": KVSTORE,
            "x-acs-action": "ModifyInstanceMajorVersion",
            "x-acs-date": "2025-01-01T00:00:00Z",
            "x-acs-signature-nonce": "0123456789abcdef0123456789abcdef",
            "accept": "application/json",
            "x-acs-content-sha256": EMPTY_SHA256,
            "Authorization": "ACS3-HMAC-SHA256 Credential=testid,SignedHeaders=accept;host;x-acs-action;"
            "x-acs-content-sha256;x-acs-date;x-acs-signature-nonce;x-acs-version,"
            "Signature=3a5577eaeb596d3e6fb26af60a63683894eedb1b9bc35d751ba48bd4502a7416",
        }
    )
    raw_path = "/?InstanceId=r-bp1zxszhcgatnx%2A%2A%2A%2A&MajorVersion=7.0&EffectiveTime=Immediately"

    signed = parse_request("POST", raw_path, headers, b"")

    signed.verify("testsecret")  # raises SignatureDoesNotMatch otherwise
    assert signed.params == {
        "InstanceId": "r-bp1zxszhcgatnx****",
        "MajorVersion": "7.0",
        "EffectiveTime": "Immediately",
    }
