"""``dbupgrade invoke``: call a deployed FC 2.0 function with an event file, through aliyun-fc2.

The endpoint is DBUPGRADE_FC_ENDPOINT, else ``https://{account}.{region}.fc.aliyuncs.com``;
credentials are ALIBABA_CLOUD_ACCESS_KEY_ID / _SECRET / _SECURITY_TOKEN (the variables the
functions read too), so DBUPGRADE_LOCAL points it at localcloud like every other command.

aliyun-fc2 has two habits this module works around: it logs every failed request's headers (the STS
token among them) with ``logging.error`` on the root logger, and it calls ``r.json()`` on any 4xx/5xx
body, so a gateway's HTML error page surfaces as a ``JSONDecodeError`` instead of an ``FcError``.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import click

from dbupgrade.config import Config
from dbupgrade.errors import ConfigError

DEFAULT_SERVICE = "dbupgrade"
# FC 2.0 sync invocations last as long as the function may run (template.yml's longest is 600 s).
DEFAULT_TIMEOUT_SECONDS = 610
SNIPPET_CHARS = 200


@dataclass(frozen=True)
class Invocation:
    """What FC answered: the function's reply (sync) or just the accepted request (async)."""

    request_id: str | None
    body: bytes | None = None


class FunctionFailed(click.ClickException):
    """The function ran and raised (exit status 1); ``error_type`` is its exception's type."""

    def __init__(self, function: str, error: dict[str, Any], request_id: str | None) -> None:
        from dbupgrade.logging import mask

        self.error_type = str(error.get("errorType") or "UnhandledInvocationError")
        message = mask(str(error.get("errorMessage", "")))
        super().__init__(f"{function} failed: {self.error_type}: {message} [request id {request_id}]")


def fc_endpoint(config: Config, account_id: str | None) -> str:
    if config.fc_endpoint:
        return config.fc_endpoint
    if not (account_id and config.region):
        raise ConfigError(
            "DBUPGRADE_FC_ENDPOINT", "is not set: set it, or give --account-id and DBUPGRADE_REGION"
        )
    return f"https://{account_id}.{config.region}.fc.aliyuncs.com"


@contextlib.contextmanager
def sdk_logging_silenced() -> Iterator[None]:
    """aliyun-fc2 logs failed requests with their headers (the security token): keep them off stderr."""
    previous = logging.root.manager.disable
    logging.disable(logging.CRITICAL)
    try:
        yield
    finally:
        logging.disable(previous)


def invoke(
    service: str,
    function: str,
    event: bytes,
    *,
    asynchronous: bool,
    account_id: str | None = None,
    qualifier: str | None = None,
    timeout: float = DEFAULT_TIMEOUT_SECONDS,
    config: Config | None = None,
) -> Invocation:
    """Invoke ``service/function`` with ``event``; raises FunctionFailed or click.ClickException."""
    import fc2
    from fc2.fc_exceptions import FcError

    from dbupgrade.logging import mask, register_secret

    config = config or Config.from_env()
    if not (config.access_key_id and config.access_key_secret):
        raise ConfigError(
            "ALIBABA_CLOUD_ACCESS_KEY_ID", "set it and ALIBABA_CLOUD_ACCESS_KEY_SECRET to invoke"
        )
    endpoint = fc_endpoint(config, account_id)
    register_secret(config.access_key_secret)
    register_secret(config.security_token)
    client = fc2.Client(
        endpoint=endpoint,
        accessKeyID=config.access_key_id,
        accessKeySecret=config.access_key_secret,
        securityToken=config.security_token or "",
        Timeout=timeout,
    )
    headers = {"x-fc-invocation-type": "Async" if asynchronous else "Sync"}
    try:
        with sdk_logging_silenced():
            reply = client.invoke_function(
                service, function, payload=event, headers=headers, qualifier=qualifier
            )
    except FcError as error:
        raise _refusal(function, error) from None
    except ValueError as error:  # requests' JSONDecodeError: a 4xx/5xx whose body is not FC's JSON
        snippet = mask(str(getattr(error, "doc", "")).strip()[:SNIPPET_CHARS])
        raise click.ClickException(
            f"{endpoint} answered with an error that is not FC's (a proxy or gateway in the way?): {snippet!r}"
        ) from None
    except OSError as error:  # requests' connection errors and timeouts
        raise click.ClickException(f"{endpoint} could not be reached: {type(error).__name__}") from None
    request_id = reply.headers.get("x-fc-request-id") or reply.headers.get("X-Fc-Request-Id")
    return Invocation(request_id, None if asynchronous else reply.data)


def _refusal(function: str, error: Any) -> click.ClickException:
    """FcError means both "the function raised" (200 with x-fc-error-type) and "FC refused" (4xx/5xx)."""
    from dbupgrade.logging import mask

    try:
        body = json.loads(error.message)
    except ValueError:
        body = {}
    if error.status_code == 200:
        return FunctionFailed(function, body, error.request_id)
    code = error.err_code or body.get("ErrorCode") or f"HTTP {error.status_code}"
    message = mask(str(body.get("ErrorMessage", "")))
    return click.ClickException(f"FC refused the call: {code} {message} [request id {error.request_id}]")


@click.command("invoke")
@click.argument("function")
@click.option(
    "--event",
    "event_file",
    type=click.File("rb"),
    required=True,
    help="Event file (see events/), or - for stdin.",
)
@click.option(
    "--async", "asynchronous", is_flag=True, help="Queue the invocation (FC answers 202) and return."
)
@click.option("--service", default=DEFAULT_SERVICE, show_default=True, help="FC 2.0 service of the function.")
@click.option("--qualifier", help="Version or alias (default: LATEST).")
@click.option(
    "--account-id",
    envvar="ALIBABA_CLOUD_ACCOUNT_ID",
    help="Account that owns the function, to derive the endpoint (env ALIBABA_CLOUD_ACCOUNT_ID).",
)
@click.option(
    "--timeout",
    type=float,
    default=DEFAULT_TIMEOUT_SECONDS,
    show_default=True,
    help="Seconds to wait for a reply.",
)
def invoke_command(
    function: str,
    event_file: Any,
    asynchronous: bool,
    service: str,
    qualifier: str | None,
    account_id: str | None,
    timeout: float,
) -> None:
    """Invoke the deployed FC 2.0 FUNCTION with an event and print its reply.

    Sync: the function's reply on stdout (exit 0), or its error type and message (exit 1).
    --async: the request id FC accepted the event under. The endpoint is DBUPGRADE_FC_ENDPOINT, else
    https://{account}.{DBUPGRADE_REGION}.fc.aliyuncs.com; keys come from ALIBABA_CLOUD_ACCESS_KEY_*.
    """
    try:
        result = invoke(
            service,
            function,
            event_file.read(),
            asynchronous=asynchronous,
            account_id=account_id,
            qualifier=qualifier,
            timeout=timeout,
        )
    except ConfigError as error:
        raise click.ClickException(str(error)) from None
    if asynchronous:
        click.echo(json.dumps({"accepted": True, "request_id": result.request_id}))
        return
    click.echo(f"request id {result.request_id}", err=True)
    body = result.body or b""
    try:
        click.echo(json.dumps(json.loads(body), indent=2))
    except ValueError:
        click.echo(body.decode(errors="replace"))
