"""adapt_context: FC 2.0, FC 3.0 and no context all read like a Lambda context."""

from __future__ import annotations

from types import SimpleNamespace

from dbupgrade.context import adapt_context


def fc2_context() -> SimpleNamespace:
    return SimpleNamespace(
        request_id="req-fc2",
        credentials=SimpleNamespace(
            access_key_id="STS.id", access_key_secret="sts-secret", security_token="tok"
        ),
        function=SimpleNamespace(name="webhook", handler="index.handler", memory=512, timeout=60),
        service=SimpleNamespace(name="dbupgrade"),
        region="cn-hangzhou",
        account_id="1234567890123456",
    )


def test_fc2_context() -> None:
    ctx = adapt_context(fc2_context())
    assert ctx.aws_request_id == "req-fc2" and ctx.function_name == "dbupgrade/webhook"
    assert ctx.credentials is not None and ctx.credentials.security_token == "tok"
    assert "sts-secret" not in repr(ctx)
    assert 0 < ctx.get_remaining_time_in_millis() <= 60_000
    assert (ctx.region, ctx.account_id) == ("cn-hangzhou", "1234567890123456")


def test_fc3_context_has_no_credentials_or_service() -> None:
    fc3 = SimpleNamespace(
        request_id="req-fc3",
        function=SimpleNamespace(name="rollout", timeout=30),
        region="cn-shanghai",
        account_id="1",
    )
    ctx = adapt_context(fc3)
    assert ctx.credentials is None and ctx.function_name == "rollout"
    assert ctx.get_remaining_time_in_millis() <= 30_000


def test_no_context_is_a_local_invocation() -> None:
    ctx = adapt_context(None)
    assert ctx.aws_request_id and ctx.credentials is None and ctx.get_remaining_time_in_millis() > 0
    assert adapt_context(ctx) is ctx
